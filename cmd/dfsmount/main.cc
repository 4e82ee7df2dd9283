// dfsmount: a whole dfs node (as dfsd) plus its FUSE mount.
//
//   dfsmount MOUNTPOINT --data DIR --network-key FILE --key FILE [node options] [-f] [-o OPT]...
//   dfsmount [--config FILE] MOUNTPOINT [-f] [-o OPT]...
//   dfsmount SOURCE MOUNTPOINT -o OPT[,OPT]...      (as mount(8) and mount.fuse3 run it)
//
// The volume's file tree is mounted read-write (fuse/tree_mount.h); a key
// a/b/c of `dfs put` is the file MOUNTPOINT/a/b/c. Without -f it goes to the background
// once the mount is up (startup errors still reach the terminal). SIGINT,
// SIGTERM and `fusermount3 -u MOUNTPOINT` unmount and stop the node.
//
// From /etc/fstab (`SOURCE MOUNTPOINT fuse.dfsmount OPTS 0 0`) mount.fuse3
// runs `dfsmount SOURCE MOUNTPOINT -o OPTS`: a SOURCE with a '/' is a config
// file (as --config), any other is only a name; an -o item KEY=VALUE (or
// KEY) whose KEY is a long option of dfsmount (data, network-key, key,
// peer, ...) is that option, the options mount(8) keeps for itself
// (_netdev, noauto, x-*, ...) are dropped, and the rest go to FUSE.
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cmd/node/node.h"
#include "cmd/node/node_options.h"
#include "fuse/tree_mount.h"

namespace {

// Tells the waiting parent how startup went: "" for success, else the error.
void Report(int fd, const std::string& error) {
  if (fd < 0) return;
  std::string msg = error.empty() ? "ok" : error;
  (void)!::write(fd, msg.data(), msg.size());
  ::close(fd);
}

// Mount options that mount(8), mount.fuse3 or systemd act on and that mean
// nothing to FUSE (which refuses what it does not know).
bool IsMountToolOption(std::string_view opt) {
  static constexpr std::string_view kNames[] = {
      "defaults", "auto", "noauto", "_netdev", "nofail", "user", "users", "nouser", "owner",
      "group",    "nogroup", "atime", "relatime", "norelatime", "strictatime", "diratime",
      "nodiratime", "iversion", "noiversion", "loud", "silent", "lazytime", "nolazytime", "nosymfollow"};
  for (std::string_view n : kNames) {
    if (opt == n) return true;
  }
  return opt.starts_with("x-") || opt.starts_with("comment=") || opt.starts_with("_");
}

// Rewrites the command line mount.fuse3 builds (`dfsmount SOURCE MOUNTPOINT
// -o OPTS`) into dfsmount's own: SOURCE becomes --config SOURCE (when it is
// a path) and a FUSE fsname; -o items naming a long option of `app` become
// that option; mount tool options are dropped; the rest stay -o for FUSE.
std::vector<std::string> RewriteArgs(const CLI::App& app, int argc, char** argv) {
  std::vector<std::string> in(argv, argv + argc), out = {in[0]}, fuse;
  std::size_t i = 1;
  if (in.size() >= 3 && !in[1].starts_with('-') && !in[2].starts_with('-')) {
    const std::string& source = in[1];
    if (source.find('/') != std::string::npos) out.insert(out.end(), {"--config", source});
    fuse.push_back("fsname=" + source);
    fuse.push_back("subtype=dfsmount");
    i = 2;
  }
  for (; i < in.size(); ++i) {
    std::string items;
    if (in[i] == "-o" && i + 1 < in.size()) {
      items = in[++i];
    } else if (in[i].starts_with("-o") && in[i] != "-o") {
      items = in[i].substr(2);
    } else {
      out.push_back(in[i]);
      continue;
    }
    std::size_t start = 0;
    while (start <= items.size()) {
      std::size_t comma = items.find(',', start);
      if (comma == std::string::npos) comma = items.size();
      std::string item = items.substr(start, comma - start);
      start = comma + 1;
      if (item.empty() || IsMountToolOption(item)) continue;
      std::size_t eq = item.find('=');
      std::string name = "--" + item.substr(0, eq);
      if (app.get_option_no_throw(name) != nullptr) {
        out.push_back(name);
        if (eq != std::string::npos) out.push_back(item.substr(eq + 1));
      } else {
        fuse.push_back(item);
      }
    }
  }
  for (const std::string& f : fuse) out.insert(out.end(), {"-o", f});
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dfsmount: run a dfs node and mount its volume as a directory"};
  app.footer("As mount.fuse3 runs it (fstab type fuse.dfsmount): dfsmount SOURCE MOUNTPOINT -o OPTS.\n"
             "SOURCE is a config file (as --config) when it has a '/', else only a name; an -o\n"
             "item KEY=VALUE whose KEY is a long option above (data, network-key, key, peer, ...)\n"
             "is that option, mount(8)'s own (_netdev, noauto, x-*, ...) are dropped, and the\n"
             "rest go to FUSE (allow_other, ro, nosuid, ...).");
  app.set_config("--config", "", "read options from FILE: lines `KEY = VALUE`, KEY a long option name");
  app.allow_config_extras(CLI::config_extras_mode::error);
  dfs::node::NodeFlags flags;
  std::string mountpoint;
  std::vector<std::string> fuse_options, config_fuse_options;
  bool foreground = false, debug = false;
  app.add_option("MOUNTPOINT", mountpoint, "where to mount (an existing directory)")->required();
  dfs::node::AddNodeFlags(app, flags);
  app.add_flag("-f,--foreground", foreground, "stay in the foreground (logs to stderr)");
  app.add_flag("-d,--fuse-debug", debug, "log every FUSE request (implies nothing else)");
  app.add_option("-o", fuse_options, "mount options: FUSE's (allow_other, ro, ...) and KEY=VALUE node options")
      ->configurable(false);
  app.add_option("--fuse-options", config_fuse_options,
                 "FUSE mount options, comma-separated (for a config file; -o adds to them)")
      ->delimiter(',');
  std::vector<std::string> args = RewriteArgs(app, argc, argv);
  std::vector<char*> arg_ptrs;
  for (std::string& a : args) arg_ptrs.push_back(a.data());
  CLI11_PARSE(app, static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  fuse_options.insert(fuse_options.begin(), config_fuse_options.begin(), config_fuse_options.end());
  dfs::node::NodeConfig config;
  if (int rc = dfs::node::MakeNodeConfig(flags, "dfsmount", &config); rc != 0) return rc;
  if (!config.volume_key) {
    std::fputs("dfsmount: --key is required: a mount reads the volume\n", stderr);
    return 2;
  }

  // Background before any thread starts; the parent waits for the child's report.
  int report_fd = -1;
  if (!foreground) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
      std::perror("dfsmount: pipe");
      return 1;
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("dfsmount: fork");
      return 1;
    }
    if (pid > 0) {
      ::close(pipe_fds[1]);
      std::string answer;
      char buf[512];
      ssize_t n;
      while ((n = ::read(pipe_fds[0], buf, sizeof(buf))) > 0) answer.append(buf, static_cast<std::size_t>(n));
      if (answer == "ok") return 0;
      fmt::print(stderr, "dfsmount: {}\n", answer.empty() ? "the node exited during startup" : answer);
      return 1;
    }
    ::close(pipe_fds[0]);
    report_fd = pipe_fds[1];
    ::setsid();
  }
  std::signal(SIGPIPE, SIG_IGN);
  dfs::node::SetUpLogging(flags, "dfsmount");

  std::filesystem::path staging = config.data_dir / "staging";
  dfs::node::Node node(std::move(config));
  if (dfs::core::Status s = node.Start(); !s.ok()) {
    if (report_fd < 0) fmt::print(stderr, "dfsmount: {}\n", s.ToString());
    Report(report_fd, s.ToString());
    return 1;
  }
  dfs::fuse::MountOptions options;
  options.fuse_options = fuse_options;
  options.debug = debug;
  options.staging_dir = staging;
  // What fsync acknowledges is held by the live peers too (bounded wait).
  options.after_sync = [&node] { node.WaitOpsAcked(std::chrono::seconds(2)); };
  auto mount = dfs::fuse::TreeMount::Mount(*node.files(), mountpoint, options);
  if (!mount.ok()) {
    node.Stop();  // before the report: the caller sees nothing of the node left
    if (report_fd < 0) fmt::print(stderr, "dfsmount: {}\n", mount.status().ToString());
    Report(report_fd, mount.status().ToString());
    return 1;
  }
  spdlog::info("mounted at {}", mountpoint);
  if (report_fd >= 0) {
    int null_fd = ::open("/dev/null", O_RDWR);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(null_fd, STDOUT_FILENO);
    ::dup2(null_fd, STDERR_FILENO);  // the node's logs: --foreground shows them
    if (null_fd > 2) ::close(null_fd);
    Report(report_fd, "");
  }
  dfs::fuse::TreeMount* tree = mount->get();
  node.SetRemoteOpObserver([tree](const dfs::core::Op& op) { tree->OnRemoteOp(op); });
  dfs::core::Status run = (*mount)->Run();
  node.SetRemoteOpObserver(nullptr);
  mount->reset();  // commits what is staged, unmounts, before the node stops
  node.Stop();
  if (!run.ok()) {
    spdlog::error("{}", run.ToString());
    return 1;
  }
  return 0;
}
