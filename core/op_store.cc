#include "core/op_store.h"

#include "core/sqlite_util.h"

namespace dfs::core {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS sealed_ops(
  origin BLOB NOT NULL,
  seq INTEGER NOT NULL,
  blob BLOB NOT NULL,
  PRIMARY KEY(origin, seq)
) WITHOUT ROWID;
)sql";

constexpr std::string_view kWhat = "op store";

}  // namespace

Result<std::unique_ptr<OpStore>> OpStore::Open(const std::filesystem::path& path) {
  DFS_ASSIGN_OR_RETURN(sqlite3 * db, OpenSqlite(path, kWhat));
  std::unique_ptr<OpStore> store(new OpStore(db));
  DFS_RETURN_IF_ERROR(ExecSql(db, kSchema, kWhat));
  return store;
}

OpStore::~OpStore() {
  StmtCache::Drop(db_);
  sqlite3_close(db_);
}

namespace {

// (origin, highest seq) rows into a vector: Accept admits no gaps, so the
// highest held is the highest contiguous.
Result<VersionVector> ReadVector(Stmt& s) {
  DFS_RETURN_IF_ERROR(s.status(kWhat));
  VersionVector v;
  for (;;) {
    DFS_ASSIGN_OR_RETURN(bool row, s.Step(kWhat));
    if (!row) break;
    Result<NodeId> origin = NodeId::FromBytes(s.Blob(0));
    if (!origin.ok()) return Status::Corrupt("op store: a malformed origin");
    v.Raise(*origin, static_cast<std::uint64_t>(s.Int(1)));
  }
  return v;
}

}  // namespace

Result<VersionVector> OpStore::Vector() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT origin, max(seq) FROM sealed_ops GROUP BY origin");
  return ReadVector(s);
}

Result<VersionVector> OpStore::VectorFor(const KeyCheck& key_check) {
  std::lock_guard lock(mu_);
  // Bytes 9..16 (1-based) of a sealed op are its key check; seq 1 is every
  // held origin's first op.
  Stmt s(db_,
         "SELECT origin, (SELECT max(seq) FROM sealed_ops m WHERE m.origin = f.origin) "
         "FROM sealed_ops f WHERE seq = 1 AND substr(blob, 9, 8) = ?1");
  DFS_RETURN_IF_ERROR(s.status(kWhat));
  s.Bind(1, ByteSpan(key_check.data(), key_check.size()));
  return ReadVector(s);
}

Result<AcceptResult> OpStore::Accept(const SealedOp& op) {
  if (op.blob.size() < OpSealer::kOverhead) {
    return Status::Corrupt("op store: a sealed op too short to be one");
  }
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  DFS_RETURN_IF_ERROR(tx.Begin());
  DFS_ASSIGN_OR_RETURN(
      std::int64_t last,
      QueryInt(db_, "SELECT coalesce(max(seq), 0) FROM sealed_ops WHERE origin = ?1",
               op.origin.bytes(), kWhat));
  auto have = static_cast<std::uint64_t>(last);
  if (op.seq <= have) return AcceptResult::kDuplicate;
  if (op.seq != have + 1) return AcceptResult::kGap;
  Stmt ins(db_, "INSERT INTO sealed_ops(origin, seq, blob) VALUES(?1, ?2, ?3)");
  DFS_RETURN_IF_ERROR(ins.status(kWhat));
  ins.Bind(1, op.origin.bytes());
  ins.Bind(2, static_cast<std::int64_t>(op.seq));
  ins.Bind(3, ByteSpan(op.blob));
  DFS_ASSIGN_OR_RETURN(bool done, ins.Step(kWhat));
  (void)done;
  DFS_RETURN_IF_ERROR(tx.Commit());
  return AcceptResult::kApplied;
}

Result<std::vector<SealedOp>> OpStore::Since(const NodeId& origin, std::uint64_t from_seq,
                                             std::size_t max_bytes) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT seq, blob FROM sealed_ops WHERE origin = ?1 AND seq >= ?2 ORDER BY seq");
  DFS_RETURN_IF_ERROR(s.status(kWhat));
  s.Bind(1, origin.bytes());
  s.Bind(2, static_cast<std::int64_t>(from_seq));
  std::vector<SealedOp> out;
  std::size_t bytes = 0;
  while (bytes < max_bytes) {
    DFS_ASSIGN_OR_RETURN(bool row, s.Step(kWhat));
    if (!row) break;
    ByteSpan blob = s.Blob(1);
    out.push_back(SealedOp{origin, static_cast<std::uint64_t>(s.Int(0)),
                           Bytes(blob.begin(), blob.end())});
    bytes += blob.size();
  }
  return out;
}

}  // namespace dfs::core
