// PeerNetwork: what core needs from the network, and nothing more. net/
// implements it over the mesh (next step); InMemoryNetwork implements it for
// tests of the layers above, with nodes that can be taken down.
//
// Calls block until answered or until their deadline, so they are made from
// worker threads, never from a network io thread. Thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "core/chunk_store.h"
#include "core/node_id.h"

namespace dfs::core {

class PeerNetwork {
 public:
  virtual ~PeerNetwork() = default;

  virtual NodeId self() const = 0;
  // Members believed alive now, this node included.
  virtual std::vector<NodeId> LiveMembers() = 0;

  // Asks `to` to store a sealed chunk durably. Errors: kUnavailable (down,
  // or no answer by the deadline), kNoSpace, kIo.
  virtual Status PutChunk(const NodeId& to, const ChunkId& id, ByteSpan sealed,
                          std::chrono::milliseconds deadline) = 0;
  // PutChunk to each of `to`, all at once where the network can (the
  // default asks one after the other); each one's status, in order.
  virtual std::vector<Status> PutChunkToAll(const std::vector<NodeId>& to, const ChunkId& id,
                                            ByteSpan sealed, std::chrono::milliseconds deadline) {
    std::vector<Status> out;
    out.reserve(to.size());
    for (const NodeId& n : to) out.push_back(PutChunk(n, id, sealed, deadline));
    return out;
  }
  // Fetches a sealed chunk from `from`. Errors: kNotFound, kUnavailable, kIo.
  virtual Status GetChunk(const NodeId& from, const ChunkId& id, Bytes* sealed,
                          std::chrono::milliseconds deadline) = 0;
  // Whether `on` holds a copy. Errors: kUnavailable, kIo.
  virtual Result<bool> HasChunk(const NodeId& on, const ChunkId& id,
                                std::chrono::milliseconds deadline) = 0;
};

// Nodes in one process, each with its own ChunkStore. Tests take nodes down
// and up, and count the calls each node serves.
class InMemoryNetwork {
 public:
  void Join(const NodeId& node, ChunkStore* store);
  void SetAlive(const NodeId& node, bool alive);
  std::unique_ptr<PeerNetwork> ViewFor(const NodeId& node);
  int served_gets(const NodeId& node);

 private:
  class View;
  struct Member {
    ChunkStore* store = nullptr;
    bool alive = true;
    int gets = 0;
  };
  std::mutex mu_;
  std::map<NodeId, Member> members_;
};

}  // namespace dfs::core
