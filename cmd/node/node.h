// Node: what dfsd runs — this node's identity, its place in the mesh, and
// the local control socket through which `dfs status` and `dfs peers` ask
// about it. A keyless node (no --key) is a storage peer: it stores and
// serves members' sealed chunks, which it cannot read. A node with the key
// does not serve chunks yet: its local FileServer's orphan sweep would not
// know chunks held for others until the op log replicates (next step).
//
// Threading: one io_context thread drives everything.
#pragma once

#include <utility>  // before Asio, for GCC 12

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/disk_chunk_store.h"
#include "core/node_id.h"
#include "core/status.h"
#include "net/chunk_exchange.h"
#include "net/mesh.h"

namespace dfs::node {

struct NodeConfig {
  std::filesystem::path data_dir;
  std::string listen_host = "0.0.0.0";
  std::uint16_t listen_port = 3000;
  std::vector<std::pair<std::string, std::uint16_t>> peers;
  net::NetworkKey network_key{};
  bool has_volume_key = false;
  int replicas = 3;
};

class Node {
 public:
  Node(boost::asio::io_context& io, NodeConfig config);
  ~Node();

  // Loads or creates DIR/node-id, opens the chunk store, listens, dials the
  // peers, serves DIR/control.sock. Errors name what failed.
  core::Status Start();
  void Stop();

  // The JSON `dfs status` prints.
  std::string StatusJson();
  // The JSON `dfs peers` prints.
  std::string PeersJson();

 private:
  void AcceptControl();

  boost::asio::io_context& io_;
  NodeConfig config_;
  core::NodeId id_;
  std::unique_ptr<core::DiskChunkStore> store_;
  std::unique_ptr<net::Mesh> mesh_;
  std::unique_ptr<net::ChunkServer> chunk_server_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> control_;
  std::filesystem::path control_path_;
};

}  // namespace dfs::node
