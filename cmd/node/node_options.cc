#include "cmd/node/node_options.h"

#include <cstdio>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "core/key_file.h"

namespace dfs::node {
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

void AddNodeFlags(CLI::App& app, NodeFlags& f) {
  app.add_option("--data", f.data, "data directory")->required();
  app.add_option("--listen", f.listen, "address and port to accept peers on (port 0: any)")
      ->capture_default_str();
  app.add_option("--peer", f.peers, "a member to join (HOST:PORT), repeatable");
  app.add_option("--network-key", f.network_key,
                 "membership secret shared by all nodes (make one with: dfs keygen FILE)")
      ->required();
  app.add_option("--key", f.key, "volume key (omit for a keyless storage peer)");
  app.add_option("--replicas", f.replicas, "copies of every chunk")->capture_default_str()
      ->check(CLI::Range(1, 16));
  app.add_option("--dead-time", f.dead_time,
                 "seconds a member may be unreachable before its chunks are re-replicated")
      ->capture_default_str()->check(CLI::Range(1, 86400 * 30));
  app.add_option("--repair-interval", f.repair_interval,
                 "seconds between repair passes besides those on membership changes (0: none)")
      ->capture_default_str()->check(CLI::Range(std::int64_t{0}, std::int64_t{86400} * 365));
  app.add_option("--gc-interval", f.gc_interval,
                 "seconds between passes that remove chunks no file needs (0: only on `dfs gc`)")
      ->capture_default_str()->check(CLI::Range(std::int64_t{0}, std::int64_t{86400} * 365));
  app.add_option("--gc-grace", f.gc_grace,
                 "seconds a chunk is kept after it was last stored, referenced or not")
      ->capture_default_str()->check(CLI::Range(std::int64_t{0}, std::int64_t{86400} * 365));
  app.add_option("--metrics", f.metrics,
                 "serve Prometheus metrics over HTTP at ADDR:PORT/metrics (port 0: any)");
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error")->capture_default_str();
}

void SetUpLogging(const NodeFlags& flags, const char* program) {
  auto logger = spdlog::stderr_color_mt(program);
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(flags.log_level));
}

int MakeNodeConfig(const NodeFlags& f, const char* program, NodeConfig* config) {
  config->data_dir = f.data;
  config->replicas = f.replicas;
  config->dead_time = std::chrono::seconds(f.dead_time);
  config->repair_interval = std::chrono::seconds(f.repair_interval);
  config->gc_interval = std::chrono::seconds(f.gc_interval);
  config->gc_grace = std::chrono::seconds(f.gc_grace);
  if (!ParseHostPort(f.listen, 3000, &config->listen_host, &config->listen_port)) {
    fmt::print(stderr, "{}: --listen {}: expected ADDR:PORT\n", program, f.listen);
    return 2;
  }
  if (!f.metrics.empty()) {
    std::pair<std::string, std::uint16_t> address;
    if (!ParseHostPort(f.metrics, 0, &address.first, &address.second) || f.metrics.back() == ':' ||
        f.metrics.find(':') == std::string::npos) {
      fmt::print(stderr, "{}: --metrics {}: expected ADDR:PORT\n", program, f.metrics);
      return 2;
    }
    config->metrics_address = address;
  }
  for (const std::string& p : f.peers) {
    std::string host;
    std::uint16_t port;
    if (!ParseHostPort(p, 3000, &host, &port) || port == 0) {
      fmt::print(stderr, "{}: --peer {}: expected HOST:PORT\n", program, p);
      return 2;
    }
    config->peers.emplace_back(host, port);
  }
  auto nk = core::ReadKeyFile(f.network_key);
  if (!nk.ok()) {
    fmt::print(stderr, "{}: network key: {}\n", program, nk.status().ToString());
    return 1;
  }
  std::copy(nk->secret().begin(), nk->secret().end(), config->network_key.begin());
  if (!f.key.empty()) {
    auto vk = core::ReadKeyFile(f.key);
    if (!vk.ok()) {
      fmt::print(stderr, "{}: volume key: {}\n", program, vk.status().ToString());
      return 1;
    }
    config->volume_key = *vk;
  }
  return 0;
}

}  // namespace dfs::node
