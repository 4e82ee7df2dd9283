// dfsd: a dfs node in the foreground (cmd/node/node.h) — a member of the
// peer mesh with a local control socket (DIR/control.sock) through which
// `dfs --data DIR ...` works. Logs go to stderr; SIGINT and SIGTERM stop it
// cleanly.
#include <utility>  // before Asio, for GCC 12

#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cmd/node/node.h"
#include "core/key_file.h"

namespace {

bool ParseHostPort(const std::string& s, std::uint16_t default_port, std::string* host,
                   std::uint16_t* port) {
  std::size_t colon = s.rfind(':');
  std::string p = colon == std::string::npos ? "" : s.substr(colon + 1);
  *host = colon == std::string::npos ? s : s.substr(0, colon);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  if (host->empty()) return false;
  if (p.empty()) {
    *port = default_port;
    return true;
  }
  try {
    std::size_t used = 0;
    unsigned long v = std::stoul(p, &used);
    if (used != p.size() || v > 65535) return false;
    *port = static_cast<std::uint16_t>(v);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dfsd: run a dfs node in the foreground (a member of the peer mesh)"};
  std::string data, listen = "0.0.0.0:3000", network_key, key, log_level = "info";
  std::vector<std::string> peers;
  int replicas = 3;
  app.add_option("--data", data, "data directory")->required();
  app.add_option("--listen", listen, "address and port to accept peers on (port 0: any)")
      ->capture_default_str();
  app.add_option("--peer", peers, "a member to join (HOST:PORT), repeatable");
  app.add_option("--network-key", network_key,
                 "membership secret shared by all nodes (make one with: dfs keygen FILE)")
      ->required();
  app.add_option("--key", key, "volume key (omit for a keyless storage peer)");
  app.add_option("--replicas", replicas, "copies of every chunk")->capture_default_str()
      ->check(CLI::Range(1, 16));
  int dead_time = 300;
  app.add_option("--dead-time", dead_time,
                 "seconds a member may be unreachable before its chunks are re-replicated")
      ->capture_default_str()->check(CLI::Range(1, 86400 * 30));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto logger = spdlog::stderr_color_mt("dfsd");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));

  dfs::node::NodeConfig config;
  config.data_dir = data;
  config.replicas = replicas;
  config.dead_time = std::chrono::seconds(dead_time);
  if (!ParseHostPort(listen, 3000, &config.listen_host, &config.listen_port)) {
    fmt::print(stderr, "dfsd: --listen {}: expected ADDR:PORT\n", listen);
    return 2;
  }
  for (const std::string& p : peers) {
    std::string host;
    std::uint16_t port;
    if (!ParseHostPort(p, 3000, &host, &port) || port == 0) {
      fmt::print(stderr, "dfsd: --peer {}: expected HOST:PORT\n", p);
      return 2;
    }
    config.peers.emplace_back(host, port);
  }
  auto nk = dfs::core::ReadKeyFile(network_key);
  if (!nk.ok()) {
    fmt::print(stderr, "dfsd: network key: {}\n", nk.status().ToString());
    return 1;
  }
  std::copy(nk->secret().begin(), nk->secret().end(), config.network_key.begin());
  if (!key.empty()) {
    auto vk = dfs::core::ReadKeyFile(key);
    if (!vk.ok()) {
      fmt::print(stderr, "dfsd: volume key: {}\n", vk.status().ToString());
      return 1;
    }
    config.volume_key = *vk;
  }

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
