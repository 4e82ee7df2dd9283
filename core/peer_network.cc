#include "core/peer_network.h"

#include <fmt/format.h>

namespace dfs::core {

class InMemoryNetwork::View final : public PeerNetwork {
 public:
  View(InMemoryNetwork& net, NodeId self) : net_(net), self_(self) {}
  NodeId self() const override { return self_; }

  std::vector<NodeId> LiveMembers() override {
    std::lock_guard lock(net_.mu_);
    std::vector<NodeId> out;
    for (const auto& [id, m] : net_.members_) {
      if (m.alive) out.push_back(id);
    }
    return out;
  }

  Status PutChunk(const NodeId& to, const ChunkId& id, ByteSpan sealed,
                  std::chrono::milliseconds) override {
    DFS_ASSIGN_OR_RETURN(ChunkStore * store, Reach(to, false));
    DFS_RETURN_IF_ERROR(store->Put(id, sealed));
    return store->Sync();  // durable before the answer, as a remote node does
  }

  Status GetChunk(const NodeId& from, const ChunkId& id, Bytes* sealed,
                  std::chrono::milliseconds) override {
    DFS_ASSIGN_OR_RETURN(ChunkStore * store, Reach(from, true));
    return store->Get(id, sealed);
  }

  Result<bool> HasChunk(const NodeId& on, const ChunkId& id, std::chrono::milliseconds) override {
    DFS_ASSIGN_OR_RETURN(ChunkStore * store, Reach(on, false));
    return store->Has(id);
  }

 private:
  Result<ChunkStore*> Reach(const NodeId& node, bool counting_get) {
    std::lock_guard lock(net_.mu_);
    auto it = net_.members_.find(node);
    if (it == net_.members_.end() || !it->second.alive) {
      return Status::Unavailable(fmt::format("node {} is unreachable", node.ToHex().substr(0, 8)));
    }
    if (counting_get) ++it->second.gets;
    return it->second.store;
  }

  InMemoryNetwork& net_;
  NodeId self_;
};

void InMemoryNetwork::Join(const NodeId& node, ChunkStore* store) {
  std::lock_guard lock(mu_);
  members_[node].store = store;
  members_[node].alive = true;
}

void InMemoryNetwork::SetAlive(const NodeId& node, bool alive) {
  std::lock_guard lock(mu_);
  members_[node].alive = alive;
}

std::unique_ptr<PeerNetwork> InMemoryNetwork::ViewFor(const NodeId& node) {
  return std::make_unique<View>(*this, node);
}

int InMemoryNetwork::served_gets(const NodeId& node) {
  std::lock_guard lock(mu_);
  return members_[node].gets;
}

}  // namespace dfs::core
