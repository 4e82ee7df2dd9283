// dfsmount: a dfs node plus its FUSE mount. The mount is a later milestone;
// until it lands this program documents its options and exits with status 2
// when asked to run.
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"dfsmount: mount a dfs volume as a directory"};
  std::string mountpoint, data, listen = "0.0.0.0:3000", network_key, key;
  std::vector<std::string> peers, fuse_options;
  bool foreground = false;
  app.add_option("MOUNTPOINT", mountpoint, "where to mount")->required();
  app.add_option("--data", data, "data directory");
  app.add_option("--listen", listen, "address and port to accept peers on")->capture_default_str();
  app.add_option("--peer", peers, "a peer to join (HOST:PORT), repeatable");
  app.add_option("--network-key", network_key, "membership secret shared by all nodes");
  app.add_option("--key", key, "volume key");
  app.add_flag("-f,--foreground", foreground, "stay in the foreground");
  app.add_option("-o", fuse_options, "FUSE mount options");
  CLI11_PARSE(app, argc, argv);
  std::fputs("dfsmount: the mount is not part of this build yet; see README.md\n", stderr);
  return 2;
}
