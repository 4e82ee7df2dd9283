// Chunk exchange over the mesh: both sides of core::PeerNetwork.
//
//   ChunkRequest  payload: op (1 put, 2 get, 3 has) || chunk id (32) || [sealed bytes, put]
//                      or: op 4 (refs) || key check (8) || count (u32) || count x chunk id
//                          || the asker's version vector for that volume (as OpPull's)
//   ChunkResponse payload: sealed bytes (get) or 1 byte 0/1 (has) or, for refs,
//                          code (u8) || count (u32) || count x 0/1 || the answerer's
//                          vector; or an error message — then the status code
//                          (0 ok, else core::ErrorCode) as the last byte
//
// Refs is the chunk collector's question (core/chunk_gc.h): which of these
// chunks of that volume does a file reference?
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
#include <future>
#include <memory>

#include "core/chunk_gc.h"
#include "core/chunk_store.h"
#include "core/peer_network.h"
#include "core/worker_pool.h"
#include "net/mesh.h"

namespace dfs::net {

// A refs question, taken apart (codecs exposed for tests).
struct RefsQuery {
  core::KeyCheck volume{};
  std::vector<core::ChunkId> ids;
  core::VersionVector vector;
};
Bytes EncodeRefsQuery(const RefsQuery& q);  // with the op byte
core::Result<RefsQuery> DecodeRefsQuery(ByteSpan payload);
Bytes EncodeRefsAnswer(const core::RefsAnswer& a);  // without the status byte
// Errors: kCorrupt, also when it does not answer `asked` ids.
core::Result<core::RefsAnswer> DecodeRefsAnswer(ByteSpan payload, std::size_t asked);

class ChunkServer {
 public:
  using RefsAnswerer = std::function<core::Result<core::RefsAnswer>(const RefsQuery&)>;

  // Serves requests arriving through `mesh` (installs its frame handler).
  // Refs questions go to `refs` (none: answered "no key").
  ChunkServer(asio::io_context& io, Mesh& mesh, core::ChunkStore& store, RefsAnswerer refs = {},
              std::size_t threads = 2);

 private:
  void Handle(Connection& conn, Frame frame);

  asio::io_context& io_;
  core::ChunkStore& store_;
  RefsAnswerer refs_;
  core::WorkerPool pool_;
};

class MeshPeerNetwork final : public core::PeerNetwork, public core::GcPeers {
 public:
  MeshPeerNetwork(asio::io_context& io, Mesh& mesh) : io_(io), mesh_(mesh) {}

  core::NodeId self() const override { return mesh_.self(); }
  std::vector<core::NodeId> LiveMembers() override;
  core::Status PutChunk(const core::NodeId& to, const core::ChunkId& id, core::ByteSpan sealed,
                        std::chrono::milliseconds deadline) override;
  // Every request sent before the first answer is awaited.
  std::vector<core::Status> PutChunkToAll(const std::vector<core::NodeId>& to,
                                          const core::ChunkId& id, core::ByteSpan sealed,
                                          std::chrono::milliseconds deadline) override;
  core::Status GetChunk(const core::NodeId& from, const core::ChunkId& id, core::Bytes* sealed,
                        std::chrono::milliseconds deadline) override;
  core::Result<bool> HasChunk(const core::NodeId& on, const core::ChunkId& id,
                              std::chrono::milliseconds deadline) override;
  // GcPeers (30 s per question).
  std::vector<core::NodeId> LivePeers() override;
  core::Result<core::RefsAnswer> AskRefs(const core::NodeId& peer, const core::KeyCheck& volume,
                                         const core::VersionVector& mine,
                                         const std::vector<core::ChunkId>& ids) override;

 private:
  struct Answer {
    core::Status status;
    core::Bytes payload = {};
    std::string from = {};  // the peer's address
  };
  // Sends `request` to `peer` through the io thread; the future holds its answer.
  std::future<Answer> Start(const core::NodeId& peer, Frame request,
                            std::chrono::milliseconds deadline);
  // Waits for a started request's answer: the chunk (or nothing) in
  // *reply, or the peer's error with its code.
  static core::Status Finish(std::future<Answer>& answer, std::chrono::milliseconds deadline,
                             core::Bytes* reply);
  core::Status Call(const core::NodeId& peer, Frame request, std::chrono::milliseconds deadline,
                    core::Bytes* reply);

  asio::io_context& io_;
  Mesh& mesh_;
};

}  // namespace dfs::net
