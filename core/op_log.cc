#include "core/op_log.h"

#include <cstring>

#include <fmt/format.h>

#include "core/encoding.h"
#include "core/key_names.h"

namespace dfs::core {
namespace {

// Op v1: "DFSO", version 1, kind, HLC (12), origin (16), seq u64 LE,
// key length u16 LE, key, value length u32 LE, value, CRC32C u32 LE.
constexpr char kMagic[4] = {'D', 'F', 'S', 'O'};
constexpr std::uint8_t kVersion = 1;
constexpr std::size_t kFixed = 4 + 1 + 1 + HlcTime::kEncodedSize + NodeId::kSize + 8 + 2 + 4 + 4;
constexpr std::uint32_t kMaxValue = 64u << 20;

// Appends without vector::insert, which GCC 12 misreports as overflowing.
void Append(Bytes* out, const void* p, std::size_t n) {
  std::size_t at = out->size();
  out->resize(at + n);
  if (n > 0) std::memcpy(out->data() + at, p, n);
}
void PutLe(Bytes* out, std::uint64_t v, int n) {
  std::uint8_t b[8];
  StoreLe(b, v, n);
  Append(out, b, static_cast<std::size_t>(n));
}

}  // namespace

Bytes Op::Encode() const {
  Bytes out;
  out.reserve(kFixed + key.size() + value.size());
  Append(&out, kMagic, 4);
  const std::uint8_t version_kind[2] = {kVersion, static_cast<std::uint8_t>(kind)};
  Append(&out, version_kind, 2);
  std::uint8_t t[HlcTime::kEncodedSize];
  time.EncodeTo(t);
  Append(&out, t, sizeof(t));
  Append(&out, origin.bytes().data(), NodeId::kSize);
  PutLe(&out, seq, 8);
  PutLe(&out, key.size(), 2);
  Append(&out, key.data(), key.size());
  PutLe(&out, value.size(), 4);
  Append(&out, value.data(), value.size());
  PutLe(&out, Crc32c(out.data(), out.size()), 4);
  return out;
}

Result<Op> Op::Decode(ByteSpan data) {
  if (data.size() < kFixed) return Status::Corrupt(fmt::format("op truncated ({} bytes)", data.size()));
  const std::uint8_t* p = data.data();
  if (std::memcmp(p, kMagic, 4) != 0) return Status::Corrupt("not an op (bad magic)");
  if (Crc32c(p, data.size() - 4) != LoadLe(p + data.size() - 4, 4)) {
    return Status::Corrupt("op checksum mismatch");
  }
  if (p[4] != kVersion) return Status::InvalidArgument(fmt::format("unsupported op version {}", p[4]));
  Op op;
  if (p[5] != static_cast<std::uint8_t>(Kind::kPut) && p[5] != static_cast<std::uint8_t>(Kind::kDelete) &&
      p[5] != static_cast<std::uint8_t>(Kind::kTree)) {
    return Status::InvalidArgument(fmt::format("unknown op kind {}", p[5]));
  }
  op.kind = static_cast<Kind>(p[5]);
  std::size_t off = 6;
  op.time = HlcTime::Decode(p + off);
  off += HlcTime::kEncodedSize;
  op.origin = *NodeId::FromBytes(ByteSpan(p + off, NodeId::kSize));
  off += NodeId::kSize;
  op.seq = LoadLe(p + off, 8);
  off += 8;
  std::size_t key_len = LoadLe(p + off, 2);
  off += 2;
  if (data.size() < kFixed + key_len) return Status::Corrupt("op key runs past the end");
  op.key.assign(reinterpret_cast<const char*>(p + off), key_len);
  off += key_len;
  std::uint64_t value_len = LoadLe(p + off, 4);
  off += 4;
  if (value_len > kMaxValue || data.size() != kFixed + key_len + value_len) {
    return Status::Corrupt("op value length does not fit the op");
  }
  op.value.assign(p + off, p + off + value_len);
  if (op.seq == 0) return Status::Corrupt("op sequence number 0");
  if (op.kind == Kind::kTree) {
    if (!op.key.empty()) return Status::Corrupt("tree op with a key");
    return op;
  }
  DFS_RETURN_IF_ERROR(ValidateKey(op.key).WithContext("op"));
  if (op.kind == Kind::kDelete && !op.value.empty()) return Status::Corrupt("delete op with a value");
  return op;
}

std::uint64_t VersionVector::Get(const NodeId& origin) const {
  auto it = seen_.find(origin);
  return it == seen_.end() ? 0 : it->second;
}

bool VersionVector::Advance(const NodeId& origin, std::uint64_t seq) {
  std::uint64_t& have = seen_[origin];
  if (seq != have + 1) return false;
  have = seq;
  return true;
}

std::vector<std::pair<NodeId, std::uint64_t>> VersionVector::Missing(
    const VersionVector& other) const {
  std::vector<std::pair<NodeId, std::uint64_t>> out;
  for (const auto& [origin, seq] : seen_) {
    std::uint64_t theirs = other.Get(origin);
    if (theirs < seq) out.emplace_back(origin, theirs + 1);
  }
  return out;
}

bool KeyIndexState::Apply(const Op& op) {
  auto it = winners_.find(op.key);
  if (it == winners_.end()) {
    winners_.emplace(op.key, op);
    return true;
  }
  if (!op.WinsOver(it->second)) return false;  // older, or the same op again
  it->second = op;
  return true;
}

std::optional<Bytes> KeyIndexState::Lookup(const std::string& key) const {
  auto it = winners_.find(key);
  if (it == winners_.end() || it->second.kind == Op::Kind::kDelete) return std::nullopt;
  return it->second.value;
}

std::vector<std::string> KeyIndexState::Keys() const {
  std::vector<std::string> keys;
  for (const auto& [key, op] : winners_) {
    if (op.kind == Op::Kind::kPut) keys.push_back(key);
  }
  return keys;
}

bool KeyIndexState::operator==(const KeyIndexState& other) const {
  if (winners_.size() != other.winners_.size()) return false;
  for (auto a = winners_.begin(), b = other.winners_.begin(); a != winners_.end(); ++a, ++b) {
    if (a->first != b->first || a->second.time != b->second.time ||
        a->second.origin != b->second.origin || a->second.seq != b->second.seq) {
      return false;
    }
  }
  return true;
}

}  // namespace dfs::core
