// Chunk exchange over the mesh: both sides of core::PeerNetwork.
//
//   ChunkRequest  payload: op (1 put, 2 get, 3 has) || chunk id (32) || [sealed bytes, put]
//   ChunkResponse payload: status (0 ok, else core::ErrorCode) || sealed bytes (get)
//                          or 1 byte 0/1 (has) or an error message
//
// ChunkServer answers peers' requests from this node's ChunkStore. Store
// I/O runs on a worker pool; only the reply is posted back to the io thread,
// which never waits on disk.
//
// MeshPeerNetwork is the client: its calls block the calling worker thread
// (never the io thread) until the answer or the deadline.
#pragma once

#include <utility>  // before Asio, for GCC 12

#include <boost/asio/io_context.hpp>
#include <memory>

#include "core/chunk_store.h"
#include "core/peer_network.h"
#include "core/worker_pool.h"
#include "net/mesh.h"

namespace dfs::net {

class ChunkServer {
 public:
  // Serves requests arriving through `mesh` (installs its frame handler).
  ChunkServer(asio::io_context& io, Mesh& mesh, core::ChunkStore& store, std::size_t threads = 2);

 private:
  void Handle(Connection& conn, Frame frame);

  asio::io_context& io_;
  core::ChunkStore& store_;
  core::WorkerPool pool_;
};

class MeshPeerNetwork final : public core::PeerNetwork {
 public:
  MeshPeerNetwork(asio::io_context& io, Mesh& mesh) : io_(io), mesh_(mesh) {}

  core::NodeId self() const override { return mesh_.self(); }
  std::vector<core::NodeId> LiveMembers() override;
  core::Status PutChunk(const core::NodeId& to, const core::ChunkId& id, core::ByteSpan sealed,
                        std::chrono::milliseconds deadline) override;
  core::Status GetChunk(const core::NodeId& from, const core::ChunkId& id, core::Bytes* sealed,
                        std::chrono::milliseconds deadline) override;
  core::Result<bool> HasChunk(const core::NodeId& on, const core::ChunkId& id,
                              std::chrono::milliseconds deadline) override;

 private:
  core::Status Call(const core::NodeId& peer, Frame request, std::chrono::milliseconds deadline,
                    core::Bytes* reply);

  asio::io_context& io_;
  Mesh& mesh_;
};

}  // namespace dfs::net
