// The replicated key index as an op log: the pieces that do not depend on
// the network, so that convergence can be tested with nothing but memory.
//
//   - Every op carries (HLC time, origin node, per-origin sequence number).
//   - A VersionVector records, per origin, the highest contiguous sequence
//     number applied; two nodes swap vectors and each streams what the other
//     lacks (Missing()).
//   - KeyIndexState applies ops in any order, any number of times, and ends
//     in the same state: last writer wins per key, ordered by (time, origin);
//     deletes are tombstones so that a late, older put cannot resurrect a key.
//     (Ordered by WinsOver: time, origin, seq.)
//
// Thread safety: value types; callers lock.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/hlc.h"
#include "core/node_id.h"
#include "core/status.h"

namespace dfs::core {

struct Op {
  // kTree: a change of the file tree; key is empty and value is an encoded
  // TreeOp (core/namespace.h).
  enum class Kind : std::uint8_t { kPut = 1, kDelete = 2, kTree = 3 };

  HlcTime time;
  NodeId origin;
  std::uint64_t seq = 0;  // 1, 2, 3, ... per origin
  Kind kind = Kind::kPut;
  std::string key;
  Bytes value;  // the encoded manifest for kPut; empty for kDelete

  // Total order used for last-writer-wins: time, then origin, then seq (an
  // honest clock never repeats a time on one origin; seq keeps the order
  // total even for one that does).
  bool WinsOver(const Op& other) const {
    if (time != other.time) return time > other.time;
    if (origin != other.origin) return origin > other.origin;
    return seq > other.seq;
  }

  // Versioned binary encoding (docs/format.md, "op"). Decode validates every
  // field; errors: kCorrupt, kInvalidArgument (unknown version or kind).
  Bytes Encode() const;
  static Result<Op> Decode(ByteSpan data);

  // The largest encoded op a node makes: one op travels in one frame
  // (net/op_sync.cc checks that the frame holds it, sealed and batched).
  // A manifest of about 110,000 chunks: a file of about 100 GiB at the
  // average chunk size.
  static constexpr std::size_t kMaxEncodedSize = 4u << 20;
};

class VersionVector {
 public:
  // Highest contiguous seq applied from `origin` (0: none).
  std::uint64_t Get(const NodeId& origin) const;
  bool Contains(const Op& op) const { return op.seq <= Get(op.origin); }
  // Records that `seq` from `origin` was applied. Only the next seq
  // (Get(origin) + 1) advances the vector, so it never claims an op it has
  // not seen; anti-entropy streams each origin's ops in seq order. Returns
  // whether the vector moved.
  bool Advance(const NodeId& origin, std::uint64_t seq);
  // Records everything up to `seq` from `origin` as applied, for a vector
  // rebuilt from a log that is known to hold each origin's ops without gaps.
  void Raise(const NodeId& origin, std::uint64_t seq) {
    std::uint64_t& have = seen_[origin];
    if (seq > have) have = seq;
  }
  // Claims at most `seq` from `origin` (what may be shown to peers).
  void Cap(const NodeId& origin, std::uint64_t seq) {
    auto it = seen_.find(origin);
    if (it != seen_.end() && it->second > seq) it->second = seq;
  }
  // For each origin where `other` is behind us: (origin, first seq it lacks).
  std::vector<std::pair<NodeId, std::uint64_t>> Missing(const VersionVector& other) const;
  const std::map<NodeId, std::uint64_t>& entries() const { return seen_; }

 private:
  std::map<NodeId, std::uint64_t> seen_;
};

// The state the ops describe: key -> winning op (tombstones included).
class KeyIndexState {
 public:
  // Applies `op`; returns true if it changed the state. Idempotent and
  // commutative: any order of the same set of ops gives the same state.
  bool Apply(const Op& op);

  // The live value of `key`, if any.
  std::optional<Bytes> Lookup(const std::string& key) const;
  // Live keys, in order.
  std::vector<std::string> Keys() const;
  bool operator==(const KeyIndexState& other) const;

 private:
  std::map<std::string, Op> winners_;
};

}  // namespace dfs::core
