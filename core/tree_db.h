// The file tree's tables in the index database (docs/format.md, "index
// database", schema version 2), and the SQL that applies tree ops to them
// and answers the mount's questions. Index owns the connection and calls
// these under its lock, inside its transactions; nothing here locks.
//
//   inodes   one row per inode: immutable fields (type, rdev, symlink), and
//            last-writer-wins registers (mode, owner, atime, mtime,
//            content), each with the order key of the op step that wrote it
//   entries  the tree: entry -> (parent, name, inode, is_dir, placed_by)
//   moves    the move log of Kleppmann et al.: every move with what it undid
//            (the places it changed), so that a late op can be slotted in by
//            undoing newer moves, applying it, and redoing them
//   xattrs   (inode, name) -> value or tombstone, last writer wins
//
// Rules that make every replica converge on one tree that loses nothing
// (docs/consistency.md):
//   - a move that would put an entry under itself is skipped;
//   - a move of a directory to the trash is skipped while it has children
//     (a concurrent create in a directory another node removed keeps both);
//   - a move into a directory that is in the trash first brings that
//     directory back to where it was before it was removed.
// Each rule reads only the state left by the moves before it in the total
// order, so undo/redo yields the same tree whatever order ops arrive in.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/manifest.h"
#include "core/namespace.h"
#include "core/op_log.h"
#include "core/status.h"

struct sqlite3;

namespace dfs::core::treedb {

Status CreateSchema(sqlite3* db);

// Chunk reference counting, provided by the index.
struct ChunkRefs {
  std::function<Status(const Manifest&)> ref;
  std::function<Status(const Manifest&)> unref;
};

// Applies the steps of `tree` (the value of `op`) in order.
Status Apply(sqlite3* db, const Op& op, const TreeOp& tree, const ChunkRefs& refs);

struct EntryRow {
  FileId entry;
  FileId parent;
  std::string name;
  FileId inode;
  bool is_dir = false;
};

Result<std::optional<EntryRow>> GetEntry(sqlite3* db, const FileId& entry);
Result<std::optional<Attr>> GetAttr(sqlite3* db, const FileId& inode);
// One path of `inode` from the root ("/dir/name", through one of its names;
// ".../" past 64 levels), for messages; "" when it has no name.
Result<std::string> PathOf(sqlite3* db, const FileId& inode);
// The live entry of `dir` listed as `name` (resolving "name~<8 hex>").
Result<std::optional<DirEntry>> Lookup(sqlite3* db, const FileId& dir, std::string_view name);
// One name of a directory listing, without its attributes.
struct DirRow {
  std::string name;  // as listed ("~<8 hex>" on the older of two that share a name)
  FileId entry;
  FileId inode;
  std::uint64_t next = 0;  // where to go on from after it
  std::string raw_name;    // ReadDirByName: the stored name and
  Bytes placed_by;         // order key, its cursor
};
// Up to `limit` names of `dir` after position `offset` (0: from the start).
// Positions are local and fixed while an entry stays where it is: names
// removed or added while a directory is listed in pieces never make the
// listing skip or repeat the others. (Not in name order; `ls` sorts.)
Result<std::vector<DirRow>> ReadDir(sqlite3* db, const FileId& dir, std::uint64_t offset,
                                    std::size_t limit);
// Up to `limit` names of `dir` in name order, after `after` (a row this
// returned; nullptr: from the start). Stable under concurrent changes.
Result<std::vector<DirRow>> ReadDirByName(sqlite3* db, const FileId& dir, const DirRow* after,
                                          std::size_t limit);
Result<bool> HasChildren(sqlite3* db, const FileId& dir);
// Whether `ancestor` is `node` or above it.
Result<bool> IsAncestor(sqlite3* db, const FileId& ancestor, const FileId& node);
// Whether the inode has a name under the root.
Result<bool> IsLinked(sqlite3* db, const FileId& inode);
Result<std::optional<Manifest>> Content(sqlite3* db, const FileId& inode);
Result<std::optional<std::string>> Symlink(sqlite3* db, const FileId& inode);
Result<std::optional<Bytes>> GetXattr(sqlite3* db, const FileId& inode, std::string_view name);
Result<std::vector<std::string>> ListXattr(sqlite3* db, const FileId& inode);
// The number of entries, for totals.
Result<std::uint64_t> CountLiveEntries(sqlite3* db);

}  // namespace dfs::core::treedb
