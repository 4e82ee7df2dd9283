// dfsd: a dfs node in the foreground (cmd/node/node.h) — a member of the
// peer mesh with a local control socket (DIR/control.sock) through which
// `dfs --data DIR ...` works. Logs go to stderr; SIGINT and SIGTERM stop it
// cleanly. `--config FILE` reads options from FILE (`KEY = VALUE` lines,
// KEY a long option name: the dfsd.service unit passes /etc/dfs/dfsd.conf).
#include <pthread.h>

#include <csignal>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cmd/node/node.h"
#include "cmd/node/node_options.h"

int main(int argc, char** argv) {
  CLI::App app{"dfsd: run a dfs node in the foreground (a member of the peer mesh)"};
  app.set_config("--config", "", "read options from FILE: lines `KEY = VALUE`, KEY a long option name");
  app.allow_config_extras(CLI::config_extras_mode::error);
  dfs::node::NodeFlags flags;
  dfs::node::AddNodeFlags(app, flags);
  CLI11_PARSE(app, argc, argv);
  dfs::node::SetUpLogging(flags, "dfsd");
  dfs::node::NodeConfig config;
  if (int rc = dfs::node::MakeNodeConfig(flags, "dfsd", &config); rc != 0) return rc;

  // Signals are taken by sigwait below, never by a handler on another
  // thread; a client that goes away mid-write is an error, not a SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // inherited by every thread

  dfs::node::Node node(std::move(config));
  if (dfs::core::Status s = node.Start(); !s.ok()) {
    fmt::print(stderr, "dfsd: {}\n", s.ToString());
    return 1;
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("signal {}: stopping", sig);
  node.Stop();
  spdlog::info("stopped");
  return 0;
}
