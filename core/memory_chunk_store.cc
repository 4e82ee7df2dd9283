#include "core/memory_chunk_store.h"

#include <fmt/format.h>

#include "core/encoding.h"

namespace dfs::core {
namespace {

// Entries carry a CRC32C of their bytes so that corruption (CorruptForTest)
// is detected on Get exactly as the disk store detects it.
constexpr std::size_t kCrcSize = 4;

void AppendCrc(Bytes* b) {
  std::uint8_t d[kCrcSize];
  StoreLe(d, Crc32c(b->data(), b->size()), kCrcSize);
  b->insert(b->end(), d, d + kCrcSize);
}

bool CrcMatches(const Bytes& b) {
  return Crc32c(b.data(), b.size() - kCrcSize) == LoadLe(b.data() + b.size() - kCrcSize, kCrcSize);
}

}  // namespace

Status MemoryChunkStore::Put(const ChunkId& id, ByteSpan data) {
  Bytes entry(data.begin(), data.end());
  AppendCrc(&entry);
  std::lock_guard lock(mu_);
  chunks_.try_emplace(id, std::move(entry));
  return Status::Ok();
}

Status MemoryChunkStore::Get(const ChunkId& id, Bytes* out, ReadCheck) {
  std::lock_guard lock(mu_);
  auto it = chunks_.find(id);
  if (it == chunks_.end()) return Status::NotFound(fmt::format("chunk {} not found", id.ToHex()));
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
  if (chunks_.erase(id) == 0) {
    return Status::NotFound(fmt::format("chunk {} not found", id.ToHex()));
  }
  return Status::Ok();
}

Status MemoryChunkStore::ForEach(const std::function<bool(const ChunkId&, std::uint64_t)>& fn) {
  // Snapshot the ids so that fn may call back into the store.
  std::vector<std::pair<ChunkId, std::uint64_t>> all;
  {
    std::lock_guard lock(mu_);
    all.reserve(chunks_.size());
    for (const auto& [id, bytes] : chunks_) all.emplace_back(id, bytes.size() - kCrcSize);
  }
  for (const auto& [id, size] : all) {
    if (!fn(id, size)) break;
  }
  return Status::Ok();
}

Result<StoreUsage> MemoryChunkStore::Usage() {
  std::lock_guard lock(mu_);
  StoreUsage u;
  for (const auto& [id, bytes] : chunks_) {
    ++u.chunks;
    u.bytes += bytes.size() - kCrcSize;
  }
  return u;
}

bool MemoryChunkStore::CorruptForTest(const ChunkId& id) {
  std::lock_guard lock(mu_);
  auto it = chunks_.find(id);
  if (it == chunks_.end()) return false;
  it->second[0] ^= 0x01;
  return true;
}

}  // namespace dfs::core
