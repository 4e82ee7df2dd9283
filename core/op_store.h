// OpStore: the op log of a keyless storage peer. It holds every origin's
// sealed ops (core/op_replica.h) in sequence, without gaps, in an SQLite
// database (DIR/ops.db, WAL, synchronous=FULL), and serves them to peers
// that lack them. It cannot open them: it never has the volume key.
//
// Thread safety: all methods may be called from any thread.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>

#include "core/op_replica.h"

struct sqlite3;

namespace dfs::core {

class OpStore final : public OpReplica {
 public:
  // Errors: kCorrupt (not a database), kPermission, kNoSpace, kIo.
  static Result<std::unique_ptr<OpStore>> Open(const std::filesystem::path& path);
  ~OpStore() override;

  Result<VersionVector> Vector() override;
  // Looks at each origin's first op: its envelope carries the key check.
  Result<VersionVector> VectorFor(const KeyCheck& key_check) override;
  // Stores the blob as it is; only its framing is checked (a blob too short
  // to be a sealed op is kCorrupt).
  Result<AcceptResult> Accept(const SealedOp& op) override;
  // Nothing to do: Accept commits with synchronous=FULL.
  Status Sync() override { return Status::Ok(); }
  Result<std::vector<SealedOp>> Since(const NodeId& origin, std::uint64_t from_seq,
                                      std::size_t max_bytes) override;

 private:
  explicit OpStore(sqlite3* db) : db_(db) {}

  std::mutex mu_;
  sqlite3* db_;
};

}  // namespace dfs::core
