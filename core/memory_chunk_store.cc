// MemoryChunkStore: chunks in a hash map under one mutex.
#include "core/memory_chunk_store.h"

#include <algorithm>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/encoding.h"

namespace dfs::core {
namespace {

// Each entry is the chunk's bytes followed by their CRC32C (u32 LE), so that
// damage (CorruptForTest) is reported as kCorrupt exactly as the disk store
// reports it. Get always checks it, whatever the ReadCheck: memory is not
// the hot path.
constexpr std::size_t kCrcSize = 4;

std::uint64_t PayloadSize(const Bytes& entry) { return entry.size() - kCrcSize; }

bool CrcMatches(const Bytes& entry) {
  const std::size_t n = PayloadSize(entry);
  return Crc32c(entry.data(), n) == LoadLe(entry.data() + n, kCrcSize);
}

Status NotFound(const ChunkId& id) {
  return Status::NotFound(fmt::format("chunk {} not found", id.ToHex()));
}

}  // namespace

Status MemoryChunkStore::Put(const ChunkId& id, ByteSpan data) {
  {
    std::lock_guard lock(mu_);
    if (chunks_.count(id) > 0) {  // idempotent, not rewritten
      stored_[id] = std::chrono::system_clock::now();
      return Status::Ok();
    }
  }
  // Copy and checksum outside the lock.
  Bytes entry;
  entry.reserve(data.size() + kCrcSize);
  entry.assign(data.begin(), data.end());
  entry.resize(data.size() + kCrcSize);
  StoreLe(entry.data() + data.size(), Crc32c(data.data(), data.size()), kCrcSize);
  std::lock_guard lock(mu_);
  chunks_.try_emplace(id, std::move(entry));  // a concurrent Put may have won: same bytes
  stored_[id] = std::chrono::system_clock::now();
  return Status::Ok();
}

Status MemoryChunkStore::Get(const ChunkId& id, Bytes* out, ReadCheck /*check*/) {
  std::lock_guard lock(mu_);
  auto it = chunks_.find(id);
  if (it == chunks_.end()) {
    out->clear();
    return NotFound(id);
  }
  if (!CrcMatches(it->second)) {
    out->clear();
    return Status::Corrupt(fmt::format("chunk {}: checksum mismatch", id.ToHex()));
  }
  out->assign(it->second.begin(), it->second.end() - kCrcSize);
  return Status::Ok();
}

Result<bool> MemoryChunkStore::Has(const ChunkId& id) {
  std::lock_guard lock(mu_);
  return chunks_.count(id) > 0;
}

Status MemoryChunkStore::Remove(const ChunkId& id) {
  std::lock_guard lock(mu_);
  if (chunks_.erase(id) == 0) return NotFound(id);
  stored_.erase(id);
  return Status::Ok();
}

Result<ChunkStat> MemoryChunkStore::Stat(const ChunkId& id) {
  std::lock_guard lock(mu_);
  auto it = chunks_.find(id);
  if (it == chunks_.end()) return NotFound(id);
  ChunkStat st;
  st.size = PayloadSize(it->second);
  st.stored = stored_[id];
  std::copy_n(it->second.begin(), std::min<std::size_t>(st.head.size(), st.size), st.head.begin());
  return st;
}

Result<bool> MemoryChunkStore::RemoveIfStoredBefore(const ChunkId& id,
                                                    std::chrono::system_clock::time_point cutoff) {
  std::lock_guard lock(mu_);
  if (chunks_.count(id) == 0) return NotFound(id);
  if (stored_[id] >= cutoff) return false;
  chunks_.erase(id);
  stored_.erase(id);
  return true;
}

Status MemoryChunkStore::ForEach(const std::function<bool(const ChunkId&, std::uint64_t)>& fn) {
  // fn runs without the lock (it may call back into the store), so the ids
  // are copied first: 40 bytes per chunk, small beside the chunks themselves.
  std::vector<std::pair<ChunkId, std::uint64_t>> all;
  {
    std::lock_guard lock(mu_);
    all.reserve(chunks_.size());
    for (const auto& [id, entry] : chunks_) all.emplace_back(id, PayloadSize(entry));
  }
  for (const auto& [id, size] : all) {
    if (!fn(id, size)) break;
  }
  return Status::Ok();
}

Result<StoreUsage> MemoryChunkStore::Usage() {
  std::lock_guard lock(mu_);
  StoreUsage u;
  for (const auto& [id, entry] : chunks_) {
    ++u.chunks;
    u.bytes += PayloadSize(entry);
  }
  return u;
}

bool MemoryChunkStore::CorruptForTest(const ChunkId& id) {
  std::lock_guard lock(mu_);
  auto it = chunks_.find(id);
  if (it == chunks_.end()) return false;
  it->second[0] ^= 0x01;  // the first payload byte, or the CRC of an empty chunk
  return true;
}

}  // namespace dfs::core
