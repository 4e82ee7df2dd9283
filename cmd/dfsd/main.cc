// dfsd: a dfs node without a mount (a storage peer). The peer network is the
// next milestone; until it lands this program documents its options and
// exits with status 2 when asked to run.
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"dfsd: run a dfs storage node in the foreground"};
  std::string data, listen = "0.0.0.0:3000", network_key, key;
  std::vector<std::string> peers;
  int replicas = 3;
  app.add_option("--data", data, "data directory");
  app.add_option("--listen", listen, "address and port to accept peers on")->capture_default_str();
  app.add_option("--peer", peers, "a peer to join (HOST:PORT), repeatable");
  app.add_option("--network-key", network_key, "membership secret shared by all nodes");
  app.add_option("--key", key, "volume key (omit for a keyless storage peer)");
  app.add_option("--replicas", replicas, "copies of every chunk")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::fputs("dfsd: the peer network is not part of this build yet; see README.md\n", stderr);
  return 2;
}
