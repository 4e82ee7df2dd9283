// dfsmount: a whole dfs node (as dfsd) plus its FUSE mount.
//
//   dfsmount MOUNTPOINT --data DIR --network-key FILE --key FILE [node options] [-f] [-o OPT]...
//
// The volume's file tree is mounted read-write (fuse/tree_mount.h); a key
// a/b/c of `dfs put` is the file MOUNTPOINT/a/b/c. Without -f it goes to the background
// once the mount is up (startup errors still reach the terminal). SIGINT,
// SIGTERM and `fusermount3 -u MOUNTPOINT` unmount and stop the node.
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <cstdio>
#include <string>
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dfsmount: run a dfs node and mount its volume as a directory"};
  dfs::node::NodeFlags flags;
  std::string mountpoint;
  std::vector<std::string> fuse_options;
  bool foreground = false, debug = false;
  app.add_option("MOUNTPOINT", mountpoint, "where to mount (an existing directory)")->required();
  dfs::node::AddNodeFlags(app, flags);
  app.add_flag("-f,--foreground", foreground, "stay in the foreground (logs to stderr)");
  app.add_flag("-d,--fuse-debug", debug, "log every FUSE request (implies nothing else)");
  app.add_option("-o", fuse_options, "FUSE mount options, e.g. allow_other, auto_unmount");
  CLI11_PARSE(app, argc, argv);
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
