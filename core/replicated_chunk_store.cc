#include "core/replicated_chunk_store.h"

#include <fmt/format.h>

#include "core/placement.h"

namespace dfs::core {

ReplicatedChunkStore::ReplicatedChunkStore(ChunkStore& local, PeerNetwork& network,
                                           ReplicationOptions options, Verifier verify)
    : local_(local), network_(network), options_(options), verify_(std::move(verify)) {}

ReplicatedChunkStore::ReplicatedChunkStore(std::unique_ptr<ChunkStore> local, PeerNetwork& network,
                                           ReplicationOptions options, Verifier verify)
    : owned_(std::move(local)),
      local_(*owned_),
      network_(network),
      options_(options),
      verify_(std::move(verify)) {}

Status ReplicatedChunkStore::Put(const ChunkId& id, ByteSpan data) {
  // Our copy becomes durable with the next Sync(), which the FileServer's
  // Flush runs before any write is acknowledged (a sync per chunk here cost
  // a put R = 1 through a node half its speed); peers sync theirs before
  // they answer.
  DFS_RETURN_IF_ERROR(local_.Put(id, data));
  std::vector<NodeId> live = network_.LiveMembers();
  std::size_t quorum = WriteQuorum(options_.replicas, live.size());
  std::size_t copies = 1;  // ours
  Status last;
  std::vector<NodeId> others = Holders(id, live, options_.replicas);
  std::erase(others, network_.self());
  // All holders at once: each answers only after its own sync.
  for (Status& s : network_.PutChunkToAll(others, id, data, options_.deadline)) {
    if (s.ok()) {
      ++copies;
    } else {
      last = std::move(s);
    }
  }
  std::lock_guard lock(short_mu_);
  if (copies < quorum) {
    if (short_.size() < kMaxShort) short_.insert(id);
    return Status::Unavailable(fmt::format("chunk {}: {} of {} required copies made ({})",
                                           id.ShortHex(), copies, quorum, last.ToString()));
  }
  short_.erase(id);
  return Status::Ok();
}

Result<bool> ReplicatedChunkStore::HasAsPut(const ChunkId& id) {
  {
    std::lock_guard lock(short_mu_);
    if (short_.count(id) > 0) return false;
  }
  return local_.Has(id);
}

namespace {

// Where the local copy's failure sends a read to the cache and the peers.
bool TryElsewhere(const Status& local) {
  return local.code() == ErrorCode::kNotFound || local.code() == ErrorCode::kCorrupt;
}

}  // namespace

Status ReplicatedChunkStore::GetLocal(const ChunkId& id, Bytes* out, ReadCheck check,
                                      bool verify) {
  Status local = local_.Get(id, out, check);
  if (local.ok() && verify && !verify_(id, *out).ok()) {
    local = Status::Corrupt(fmt::format("chunk {}: the local copy fails verification", id.ToHex()));
  }
  return local;
}

Status ReplicatedChunkStore::Get(const ChunkId& id, Bytes* out, ReadCheck check) {
  // kCallerAuthenticates: the caller opens the chunk anyway (and asks again
  // with kChecksum if it fails), so copies are not verified twice.
  const bool verify = verify_ && check == ReadCheck::kChecksum;
  Status local = GetLocal(id, out, check, verify);
  if (local.ok() || !TryElsewhere(local)) return local;
  std::shared_ptr<const Bytes> got;
  Status s = Fetch(id, verify, local, &got);
  if (!s.ok()) {
    out->clear();
    return s;
  }
  *out = *got;
  return Status::Ok();
}

Status ReplicatedChunkStore::View(const ChunkId& id, ReadCheck check, ReadHint hint,
                                  Bytes* scratch, const std::function<Status(ByteSpan)>& use) {
  const bool verify = verify_ && check == ReadCheck::kChecksum;
  Status local;
  if (verify) {
    local = GetLocal(id, scratch, check, verify);
    if (local.ok()) return use(*scratch);
  } else {
    bool used = false;
    local = local_.View(id, check, hint, scratch, [&](ByteSpan bytes) {
      used = true;
      return use(bytes);
    });
    if (used) return local;
  }
  if (!TryElsewhere(local)) return local;
  // A fetched chunk is used where it landed, shared with the cache: no copy.
  std::shared_ptr<const Bytes> got;
  DFS_RETURN_IF_ERROR(Fetch(id, verify, local, &got));
  return use(*got);
}

Status ReplicatedChunkStore::Fetch(const ChunkId& id, bool verify, const Status& local,
                                   std::shared_ptr<const Bytes>* got) {
  if (std::shared_ptr<const Bytes> hit = FromCache(id)) {
    if (!verify || verify_(id, *hit).ok()) {
      *got = std::move(hit);
      return Status::Ok();
    }
    DropFromCache(id);
  }
  std::vector<NodeId> live = network_.LiveMembers();
  std::vector<NodeId> order = RankNodes(id, live);  // holders first, then everyone else
  Status last = local;
  for (const NodeId& peer : order) {
    if (peer == network_.self()) continue;
    Bytes bytes;
    Status s = network_.GetChunk(peer, id, &bytes, options_.deadline);
    if (s.ok() && verify) s = verify_(id, bytes);
    if (s.ok()) {
      if (local.code() == ErrorCode::kCorrupt && verify) {
        (void)ReplaceChunk(local_, id, bytes);  // heal our copy; a failure leaves it as it was
      }
      *got = std::make_shared<const Bytes>(std::move(bytes));
      ToCache(id, *got);
      return Status::Ok();
    }
    last = s;
  }
  if (last.code() == ErrorCode::kNotFound || last.code() == ErrorCode::kUnavailable) {
    return Status::NotFound(fmt::format("chunk {} not found on this node or {} live peer(s)",
                                        id.ToHex(), order.size() > 0 ? order.size() - 1 : 0));
  }
  return last;
}

void ReplicatedChunkStore::DropFromCache(const ChunkId& id) {
  std::lock_guard lock(cache_mu_);
  auto it = index_.find(id);
  if (it == index_.end()) return;
  cached_ -= it->second->second->size();
  lru_.erase(it->second);
  index_.erase(it);
}

std::shared_ptr<const Bytes> ReplicatedChunkStore::FromCache(const ChunkId& id) {
  std::lock_guard lock(cache_mu_);
  auto it = index_.find(id);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void ReplicatedChunkStore::ToCache(const ChunkId& id, std::shared_ptr<const Bytes> data) {
  if (data->size() > options_.cache_bytes) return;
  std::lock_guard lock(cache_mu_);
  if (index_.count(id) > 0) return;
  cached_ += data->size();
  lru_.emplace_front(id, std::move(data));
  index_[id] = lru_.begin();
  while (cached_ > options_.cache_bytes) {
    auto& [old_id, old_data] = lru_.back();
    cached_ -= old_data->size();
    index_.erase(old_id);
    lru_.pop_back();
  }
}

std::size_t ReplicatedChunkStore::cached_bytes() {
  std::lock_guard lock(cache_mu_);
  return cached_;
}

}  // namespace dfs::core
