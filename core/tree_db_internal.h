// Helpers shared by the tree database's sources (core/tree_db.cc: schema,
// moves, attributes, queries; core/tree_db_content.cc: content, whole or
// pieced). Not part of the tree database's interface (core/tree_db.h).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <span>
#include <string_view>

#include "core/bytes.h"
#include "core/manifest.h"
#include "core/namespace.h"
#include "core/op_log.h"
#include "core/sqlite_util.h"
#include "core/status.h"
#include "core/tree_db.h"

namespace dfs::core::treedb::internal {

ByteSpan IdSpan(const FileId& id);
// Errors: kCorrupt (not 16 bytes).
Result<FileId> IdFrom(ByteSpan b);
// Steps `s` once (a statement without rows to read).
Status Done(Stmt& s, std::string_view what);
// The inode's row, created (type 0) if it is not there yet.
Status EnsureInode(sqlite3* db, const FileId& inode);
// Last writer wins: sets register `col` if `ord` is after the one that set it.
struct Register {
  const char* col;
  std::int64_t value;
};
// Each of `regs` as SetRegister would, in one UPDATE of the inode's row.
Status SetRegisters(sqlite3* db, const FileId& inode, std::span<const Register> regs,
                    ByteSpan ord);
inline Status SetRegister(sqlite3* db, const FileId& inode, const char* col, std::int64_t value,
                          ByteSpan ord) {
  const Register one[] = {{col, value}};
  return SetRegisters(db, inode, one, ord);
}

// Content steps (core/tree_db_content.cc).
Status ApplyContent(sqlite3* db, const FileId& inode, const Manifest& manifest,
                    std::int64_t mtime_ns, ByteSpan ord, const ChunkRefs& refs);
Status ApplyContentPart(sqlite3* db, const Op& op, const TreeStep& st);
Status DropAbandonedPieces(sqlite3* db, const Op& op, const TreeOp& tree);
Status ApplyContentParts(sqlite3* db, const TreeStep& st, ByteSpan ord, const ChunkRefs& refs);

}  // namespace dfs::core::treedb::internal
