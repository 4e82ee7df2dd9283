// ReplicatedChunkStore: a ChunkStore layer that spreads chunks over the
// network. It wraps this node's local store:
//
//   Put  stores locally (the writer keeps a copy; durable at the next
//        Sync, which whoever acknowledges the write runs first: the
//        FileServer's Flush), then on the chunk's holders, all at once —
//        the first `replicas` live members by rendezvous hashing, each of
//        which syncs before it answers — and succeeds once a write quorum
//        of copies exists (WriteQuorum: 2, or 1 when this node is alone).
//        Fewer copies: kUnavailable, naming how many were made.
//   Get  reads the local copy; if it is missing or corrupt, asks the
//        holders in rank order, then every other live member. With
//        ReadCheck::kChecksum every copy (local, cached, fetched) must pass
//        `verify` (the node's check that the chunk authenticates) and a bad
//        local copy is replaced by the good one; with kCallerAuthenticates
//        the caller opens the chunk itself and asks again with kChecksum
//        when that fails. Fetched chunks go to a cache bounded in bytes.
//   Has, Remove, Stat, ForEach, Usage, Sync: this node's own copies.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "core/chunk_store.h"
#include "core/peer_network.h"

namespace dfs::core {

struct ReplicationOptions {
  std::size_t replicas = 3;
  std::chrono::milliseconds deadline{10000};
  std::size_t cache_bytes = 64 << 20;  // fetched chunks kept in memory
};

class ReplicatedChunkStore final : public ChunkStore {
 public:
  using Verifier = ChunkVerifier;

  ReplicatedChunkStore(ChunkStore& local, PeerNetwork& network, ReplicationOptions options,
                       Verifier verify = {});
  // The same, owning the local store.
  ReplicatedChunkStore(std::unique_ptr<ChunkStore> local, PeerNetwork& network,
                       ReplicationOptions options, Verifier verify = {});

  // This node's own store (what it serves to peers).
  ChunkStore& local() { return local_; }

  Status Put(const ChunkId& id, ByteSpan data) override;
  // The local store's: Put writes there first, then sends the same bytes.
  MutableByteSpan PutBuffer(std::size_t size) override { return local_.PutBuffer(size); }
  using ChunkStore::Get;
  Status Get(const ChunkId& id, Bytes* out, ReadCheck check) override;
  // The local copy viewed in place when it reads well; otherwise Get (cache,
  // peers) into `*scratch`.
  Status View(const ChunkId& id, ReadCheck check, ReadHint hint, Bytes* scratch,
              const std::function<Status(ByteSpan)>& use) override;
  Result<bool> Has(const ChunkId& id) override { return local_.Has(id); }
  // No while the chunk's last Put here missed its write quorum: the local
  // copy is there, but a writer must put it again (to the holders) rather
  // than take it for stored.
  Result<bool> HasAsPut(const ChunkId& id) override;
  Status Remove(const ChunkId& id) override { return local_.Remove(id); }
  Result<ChunkStat> Stat(const ChunkId& id) override { return local_.Stat(id); }
  Result<bool> RemoveIfStoredBefore(const ChunkId& id,
                                    std::chrono::system_clock::time_point cutoff) override {
    return local_.RemoveIfStoredBefore(id, cutoff);
  }
  Status ForEach(const std::function<bool(const ChunkId&, std::uint64_t)>& fn) override {
    return local_.ForEach(fn);
  }
  Result<StoreUsage> Usage() override { return local_.Usage(); }
  Status Sync() override { return local_.Sync(); }

  std::size_t cached_bytes();

 private:
  // This node's copy; kCorrupt when `verify` and it fails the verifier.
  Status GetLocal(const ChunkId& id, Bytes* out, ReadCheck check, bool verify);
  // The chunk from the cache or else from peers (holders first), verified
  // when `verify`; `local` is why this node's copy did not do (a corrupt
  // one is replaced by the good copy).
  Status Fetch(const ChunkId& id, bool verify, const Status& local,
               std::shared_ptr<const Bytes>* got);
  // Cached chunks are shared, never copied: a reader holds its chunk even
  // after the cache lets it go.
  std::shared_ptr<const Bytes> FromCache(const ChunkId& id);
  void ToCache(const ChunkId& id, std::shared_ptr<const Bytes> data);
  void DropFromCache(const ChunkId& id);

  std::unique_ptr<ChunkStore> owned_;
  ChunkStore& local_;
  PeerNetwork& network_;
  ReplicationOptions options_;
  Verifier verify_;

  // Chunks whose last Put missed its quorum (at most kMaxShort remembered;
  // a restart forgets them, and the repair pass that follows it copies
  // what holders lack).
  static constexpr std::size_t kMaxShort = 1 << 16;
  std::mutex short_mu_;
  std::unordered_set<ChunkId, ChunkIdHash> short_;

  std::mutex cache_mu_;
  using Entry = std::pair<ChunkId, std::shared_ptr<const Bytes>>;
  std::list<Entry> lru_;  // most recent first
  std::unordered_map<ChunkId, std::list<Entry>::iterator, ChunkIdHash> index_;
  std::size_t cached_ = 0;
};

}  // namespace dfs::core
