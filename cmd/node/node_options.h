// The options every program that runs a node takes (dfsd, dfsmount), and
// how they become a NodeConfig.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cmd/node/node.h"

namespace dfs::node {

struct NodeFlags {
  std::string data, listen = "0.0.0.0:3000", network_key, key, log_level = "info";
  std::vector<std::string> peers;
  int replicas = 3;
  int dead_time = 300;
  std::int64_t repair_interval = 24 * 3600;  // seconds; 0: on membership changes only
  std::int64_t gc_interval = 6 * 3600;  // seconds; 0: only `dfs gc`
  std::int64_t gc_grace = 24 * 3600;
  std::string metrics;  // ADDR:PORT to serve Prometheus metrics on; empty: none
};

// --data, --listen, --peer, --network-key, --key, --replicas, --dead-time,
// --repair-interval, --gc-interval, --gc-grace, --metrics, --log-level.
void AddNodeFlags(CLI::App& app, NodeFlags& flags);

// Reads the key files and checks addresses. On failure prints one line
// "PROGRAM: ..." to stderr and returns the exit status (2: usage, 1: other);
// 0 on success.
int MakeNodeConfig(const NodeFlags& flags, const char* program, NodeConfig* out);

// Logs to stderr at --log-level, named `program`.
void SetUpLogging(const NodeFlags& flags, const char* program);

}  // namespace dfs::node
