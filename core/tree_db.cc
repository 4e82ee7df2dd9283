#include "core/tree_db.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/encoding.h"
#include "core/sqlite_util.h"
#include "core/tree_db_internal.h"

namespace dfs::core::treedb {

namespace internal {

ByteSpan IdSpan(const FileId& id) { return {id.bytes.data(), id.bytes.size()}; }

Result<FileId> IdFrom(ByteSpan b) {
  FileId id;
  if (b.size() != id.bytes.size()) return Status::Corrupt("index database: bad file id");
  std::memcpy(id.bytes.data(), b.data(), b.size());
  return id;
}

Status Done(Stmt& s, std::string_view what) {
  DFS_ASSIGN_OR_RETURN(bool row, s.Step(what));
  (void)row;
  return Status::Ok();
}

Status EnsureInode(sqlite3* db, const FileId& inode) {
  Stmt s(db, "INSERT OR IGNORE INTO inodes(id, type) VALUES(?1, 0)");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(inode));
  return Done(s, "tree");
}

// Every register of a row in one statement: rewriting the row (a b-tree
// update) once instead of once per register. Each CASE reads the row as it
// was, so the registers stay independent.
Status SetRegisters(sqlite3* db, const FileId& inode, std::span<const Register> regs,
                    ByteSpan ord) {
  if (regs.empty()) return Status::Ok();
  std::string sql = "UPDATE inodes SET ";
  int arg = 3;
  for (const Register& r : regs) {
    if (arg > 3) sql += ", ";
    fmt::format_to(std::back_inserter(sql),
                   "{0} = CASE WHEN {0}_by IS NULL OR {0}_by < ?2 THEN ?{1} ELSE {0} END, "
                   "{0}_by = CASE WHEN {0}_by IS NULL OR {0}_by < ?2 THEN ?2 ELSE {0}_by END",
                   r.col, arg++);
  }
  sql += " WHERE id = ?1";
  Stmt s(db, sql.c_str());
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(inode));
  s.Bind(2, ord);
  arg = 3;
  for (const Register& r : regs) s.Bind(arg++, r.value);
  return Done(s, "tree");
}

}  // namespace internal

namespace {

using namespace internal;


constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS inodes(
  id BLOB PRIMARY KEY,
  type INTEGER NOT NULL,           -- FileType; 0 while only attributes have arrived
  rdev INTEGER NOT NULL DEFAULT 0,
  symlink BLOB,
  mode INTEGER NOT NULL DEFAULT 0, mode_by BLOB,
  uid INTEGER NOT NULL DEFAULT 0, uid_by BLOB,
  gid INTEGER NOT NULL DEFAULT 0, gid_by BLOB,
  atime INTEGER NOT NULL DEFAULT 0, atime_by BLOB,
  mtime INTEGER NOT NULL DEFAULT 0, mtime_by BLOB,
  ctime INTEGER NOT NULL DEFAULT 0,
  size INTEGER NOT NULL DEFAULT 0,
  manifest BLOB, content_by BLOB,
  held INTEGER NOT NULL DEFAULT 1  -- 1: the content's chunks are referenced (the inode has a name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries(
  id BLOB PRIMARY KEY,
  parent BLOB NOT NULL,
  name BLOB NOT NULL,
  inode BLOB NOT NULL,
  is_dir INTEGER NOT NULL,
  placed_by BLOB NOT NULL,
  pos INTEGER NOT NULL DEFAULT 0  -- local listing position: fixed while the entry stays put
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_pos ON entries(parent, pos);
CREATE INDEX IF NOT EXISTS entries_pos ON entries(pos);
CREATE INDEX IF NOT EXISTS entries_by_name ON entries(parent, name, placed_by DESC);
CREATE INDEX IF NOT EXISTS entries_subdirs ON entries(parent) WHERE is_dir = 1;
CREATE INDEX IF NOT EXISTS entries_by_inode ON entries(inode);
CREATE TABLE IF NOT EXISTS moves(
  ord BLOB PRIMARY KEY,
  entry BLOB NOT NULL,
  parent BLOB NOT NULL,
  name BLOB NOT NULL,
  inode BLOB NOT NULL,
  is_dir INTEGER NOT NULL,
  undo BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS xattrs(
  inode BLOB NOT NULL,
  name BLOB NOT NULL,
  value BLOB NOT NULL,
  present INTEGER NOT NULL,
  by BLOB NOT NULL,
  PRIMARY KEY(inode, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS content_parts(
  content BLOB NOT NULL,           -- the pieced content's id (TreeStep::content)
  part INTEGER NOT NULL,
  origin BLOB NOT NULL,            -- the node whose ops carry it
  inode BLOB NOT NULL,
  piece BLOB NOT NULL,             -- an encoded manifest of the piece's refs
  PRIMARY KEY(content, part)
) WITHOUT ROWID;
INSERT OR IGNORE INTO inodes(id, type, mode) VALUES(zeroblob(16), 2, 493);
)sql";

constexpr int kMaxDepth = 100000;  // a guard against a corrupt database, never reached by a tree

ByteSpan NameSpan(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
std::string BlobString(ByteSpan b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

// The total order of op steps: HLC time, origin, seq, step index, big-endian
// so that byte order (SQLite's blob order) is the order.
Bytes Ord(const Op& op, std::size_t step) {
  Bytes b(HlcTime::kEncodedSize + NodeId::kSize + 8 + 2);
  op.time.EncodeTo(b.data());
  std::memcpy(b.data() + HlcTime::kEncodedSize, op.origin.bytes().data(), NodeId::kSize);
  std::uint8_t* p = b.data() + HlcTime::kEncodedSize + NodeId::kSize;
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(op.seq >> (8 * (7 - i)));
  p[8] = static_cast<std::uint8_t>(step >> 8);
  p[9] = static_cast<std::uint8_t>(step);
  return b;
}

// Where an entry is: absent, or (parent, name, inode, is_dir, placed_by).
struct Placement {
  bool present = false;
  FileId parent;
  std::string name;
  FileId inode;
  bool is_dir = false;
  Bytes by;
};

Result<Placement> ReadPlacement(sqlite3* db, const FileId& entry) {
  Stmt s(db, "SELECT parent, name, inode, is_dir, placed_by FROM entries WHERE id = ?1");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(entry));
  DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
  Placement p;
  if (!row) return p;
  p.present = true;
  DFS_ASSIGN_OR_RETURN(p.parent, IdFrom(s.Blob(0)));
  p.name = BlobString(s.Blob(1));
  DFS_ASSIGN_OR_RETURN(p.inode, IdFrom(s.Blob(2)));
  p.is_dir = s.Int(3) != 0;
  ByteSpan by = s.Blob(4);
  p.by.assign(by.begin(), by.end());
  return p;
}

Status WritePlacement(sqlite3* db, const FileId& entry, const Placement& p) {
  if (!p.present) {
    Stmt s(db, "DELETE FROM entries WHERE id = ?1");
    DFS_RETURN_IF_ERROR(s.status("tree"));
    s.Bind(1, IdSpan(entry));
    return Done(s, "tree");
  }
  // Every placement gets the next listing position, so a directory listed
  // in pieces neither skips nor repeats names that stay while it is read.
  Stmt s(db, "INSERT OR REPLACE INTO entries(id, parent, name, inode, is_dir, placed_by, pos) "
             "VALUES(?1, ?2, ?3, ?4, ?5, ?6, (SELECT coalesce(max(pos), 0) + 1 FROM entries))");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(entry));
  s.Bind(2, IdSpan(p.parent));
  s.Bind(3, NameSpan(p.name));
  s.Bind(4, IdSpan(p.inode));
  s.Bind(5, std::int64_t{p.is_dir ? 1 : 0});
  s.Bind(6, ByteSpan(p.by));
  return Done(s, "tree");
}

// The undo record of a move: the places it changed, in the order it changed
// them (entry, placement before).
using UndoList = std::vector<std::pair<FileId, Placement>>;

Bytes EncodeUndo(const UndoList& list) {
  Bytes out;
  auto put = [&](const void* p, std::size_t n) {
    std::size_t at = out.size();
    out.resize(at + n);
    if (n > 0) std::memcpy(out.data() + at, p, n);
  };
  for (const auto& [entry, p] : list) {
    put(entry.bytes.data(), 16);
    std::uint8_t present = p.present ? 1 : 0;
    put(&present, 1);
    if (!p.present) continue;
    put(p.parent.bytes.data(), 16);
    put(p.inode.bytes.data(), 16);
    std::uint8_t hdr[4] = {static_cast<std::uint8_t>(p.is_dir ? 1 : 0),
                           static_cast<std::uint8_t>(p.name.size()),
                           static_cast<std::uint8_t>(p.name.size() >> 8),
                           static_cast<std::uint8_t>(p.by.size())};
    put(hdr, 4);
    put(p.name.data(), p.name.size());
    put(p.by.data(), p.by.size());
  }
  return out;
}

Result<UndoList> DecodeUndo(ByteSpan b) {
  UndoList list;
  std::size_t at = 0;
  auto need = [&](std::size_t n) { return n <= b.size() - at; };
  while (at < b.size()) {
    if (!need(17)) return Status::Corrupt("index database: bad undo record");
    std::pair<FileId, Placement> item;
    std::memcpy(item.first.bytes.data(), b.data() + at, 16);
    item.second.present = b[at + 16] != 0;
    at += 17;
    if (item.second.present) {
      if (!need(36)) return Status::Corrupt("index database: bad undo record");
      Placement& p = item.second;
      std::memcpy(p.parent.bytes.data(), b.data() + at, 16);
      std::memcpy(p.inode.bytes.data(), b.data() + at + 16, 16);
      p.is_dir = b[at + 32] != 0;
      std::size_t name_len = b[at + 33] | (std::size_t{b[at + 34]} << 8);
      std::size_t by_len = b[at + 35];
      at += 36;
      if (!need(name_len + by_len)) return Status::Corrupt("index database: bad undo record");
      p.name.assign(reinterpret_cast<const char*>(b.data() + at), name_len);
      p.by.assign(b.data() + at + name_len, b.data() + at + name_len + by_len);
      at += name_len + by_len;
    }
    list.push_back(std::move(item));
  }
  return list;
}

struct MoveRow {
  Bytes ord;
  FileId entry;
  FileId parent;
  std::string name;
  FileId inode;
  bool is_dir = false;
};

Result<bool> HasChildrenImpl(sqlite3* db, const FileId& dir) {
  Stmt s(db, "SELECT 1 FROM entries WHERE parent = ?1 LIMIT 1");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(dir));
  return s.Step("tree");
}

Result<bool> IsAncestorImpl(sqlite3* db, const FileId& ancestor, FileId node) {
  for (int depth = 0; depth < kMaxDepth; ++depth) {
    if (node == ancestor) return true;
    if (node == FileId::Root() || node == FileId::Trash()) return false;
    DFS_ASSIGN_OR_RETURN(Placement p, ReadPlacement(db, node));
    if (!p.present) return false;
    node = p.parent;
  }
  return Status::Corrupt("index database: the tree has a cycle");
}

// Brings the directories on the way up from `dir` that sit in the trash back
// to where they were before they were removed.
Status Resurrect(sqlite3* db, FileId dir, UndoList* undo) {
  for (int depth = 0; depth < kMaxDepth; ++depth) {
    if (dir == FileId::Root() || dir == FileId::Trash()) return Status::Ok();
    DFS_ASSIGN_OR_RETURN(Placement p, ReadPlacement(db, dir));
    if (!p.present) return Status::Ok();  // not created yet here: the child waits with it
    if (p.parent == FileId::Trash()) {
      Stmt s(db, "SELECT undo FROM moves WHERE ord = ?1");
      DFS_RETURN_IF_ERROR(s.status("tree"));
      s.Bind(1, ByteSpan(p.by));
      DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
      if (!row) return Status::Ok();
      DFS_ASSIGN_OR_RETURN(UndoList removal, DecodeUndo(s.Blob(0)));
      if (removal.empty() || !removal.front().second.present ||
          removal.front().second.parent == FileId::Trash()) {
        return Status::Ok();
      }
      Placement back = removal.front().second;
      undo->emplace_back(dir, p);
      DFS_RETURN_IF_ERROR(WritePlacement(db, dir, back));
      dir = back.parent;
      continue;
    }
    dir = p.parent;
  }
  return Status::Corrupt("index database: the tree has a cycle");
}

Status UndoMove(sqlite3* db, const UndoList& undo) {
  for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
    DFS_RETURN_IF_ERROR(WritePlacement(db, it->first, it->second));
  }
  return Status::Ok();
}

// Does one move at its place in the order; returns its undo record.
Result<UndoList> DoMove(sqlite3* db, const MoveRow& m) {
  UndoList undo;
  DFS_ASSIGN_OR_RETURN(Placement before, ReadPlacement(db, m.entry));
  undo.emplace_back(m.entry, before);
  if (m.parent == FileId::Trash()) {
    // Already in the trash (removed concurrently by another node): skipped,
    // so that the move that put it there, whose undo record says where it
    // was, stays the one Resurrect reads.
    if (before.present && before.parent == FileId::Trash()) return undo;
    if (m.is_dir) {
      DFS_ASSIGN_OR_RETURN(bool busy, HasChildrenImpl(db, m.entry));
      if (busy) return undo;
    }
  } else {
    // Removed directories above the target come back first: a directory
    // comes back where it was removed from, which may be under the entry,
    // so only then does the cycle check see the tree the move would make.
    DFS_RETURN_IF_ERROR(Resurrect(db, m.parent, &undo));
    DFS_ASSIGN_OR_RETURN(bool cycle, IsAncestorImpl(db, m.entry, m.parent));
    if (cycle) {  // skipped, and so are the resurrections made for it
      DFS_RETURN_IF_ERROR(UndoMove(db, undo));
      undo.resize(1);
      return undo;
    }
  }
  Placement to;
  to.present = true;
  to.parent = m.parent;
  to.name = m.name;
  to.inode = m.inode;
  to.is_dir = m.is_dir;
  to.by = m.ord;
  DFS_RETURN_IF_ERROR(WritePlacement(db, m.entry, to));
  return undo;
}

Status SaveMove(sqlite3* db, const MoveRow& m, const UndoList& undo) {
  Stmt s(db, "INSERT OR REPLACE INTO moves(ord, entry, parent, name, inode, is_dir, undo) "
             "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  Bytes u = EncodeUndo(undo);
  s.Bind(1, ByteSpan(m.ord));
  s.Bind(2, IdSpan(m.entry));
  s.Bind(3, IdSpan(m.parent));
  s.Bind(4, NameSpan(m.name));
  s.Bind(5, IdSpan(m.inode));
  s.Bind(6, std::int64_t{m.is_dir ? 1 : 0});
  s.Bind(7, ByteSpan(u));
  return Done(s, "tree");
}

// An inode's content holds chunk references while the inode has a name:
// removing the last name frees its chunks (space comes back at unlink), a
// later move that names it again takes them back.
Status SyncHeld(sqlite3* db, const FileId& inode, const ChunkRefs& refs) {
  Stmt cur(db, "SELECT held, manifest, EXISTS (SELECT 1 FROM entries WHERE inode = ?1 AND parent != ?2) "
               "FROM inodes WHERE id = ?1");
  DFS_RETURN_IF_ERROR(cur.status("tree"));
  cur.Bind(1, IdSpan(inode));
  cur.Bind(2, IdSpan(FileId::Trash()));
  DFS_ASSIGN_OR_RETURN(bool row, cur.Step("tree"));
  if (!row) return Status::Ok();
  bool held = cur.Int(0) != 0;
  bool named = cur.Int(2) != 0;
  if (held == named) return Status::Ok();
  if (!cur.Blob(1).empty()) {
    DFS_ASSIGN_OR_RETURN(Manifest m, Manifest::Decode(cur.Blob(1)));
    DFS_RETURN_IF_ERROR(named ? refs.ref(m) : refs.unref(m));
  }
  Stmt up(db, "UPDATE inodes SET held = ?2 WHERE id = ?1");
  DFS_RETURN_IF_ERROR(up.status("tree"));
  up.Bind(1, IdSpan(inode));
  up.Bind(2, std::int64_t{named ? 1 : 0});
  return Done(up, "tree");
}

Status ApplyMove(sqlite3* db, const MoveRow& m, const ChunkRefs& refs) {
  // Undo the moves after this one, newest first; do it; redo them.
  std::vector<MoveRow> later;
  {
    Stmt s(db, "SELECT ord, entry, parent, name, inode, is_dir, undo FROM moves "
               "WHERE ord > ?1 ORDER BY ord DESC");
    DFS_RETURN_IF_ERROR(s.status("tree"));
    s.Bind(1, ByteSpan(m.ord));
    for (;;) {
      DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
      if (!row) break;
      MoveRow r;
      ByteSpan ord = s.Blob(0);
      r.ord.assign(ord.begin(), ord.end());
      DFS_ASSIGN_OR_RETURN(r.entry, IdFrom(s.Blob(1)));
      DFS_ASSIGN_OR_RETURN(r.parent, IdFrom(s.Blob(2)));
      r.name = BlobString(s.Blob(3));
      DFS_ASSIGN_OR_RETURN(r.inode, IdFrom(s.Blob(4)));
      r.is_dir = s.Int(5) != 0;
      DFS_ASSIGN_OR_RETURN(UndoList undo, DecodeUndo(s.Blob(6)));
      DFS_RETURN_IF_ERROR(UndoMove(db, undo));
      later.push_back(std::move(r));
    }
  }
  DFS_ASSIGN_OR_RETURN(UndoList undo, DoMove(db, m));
  DFS_RETURN_IF_ERROR(SaveMove(db, m, undo));
  for (auto it = later.rbegin(); it != later.rend(); ++it) {
    DFS_ASSIGN_OR_RETURN(UndoList redo, DoMove(db, *it));
    DFS_RETURN_IF_ERROR(SaveMove(db, *it, redo));
  }
  // Only files move in and out of having a name here (directories hold no content).
  if (!m.is_dir) DFS_RETURN_IF_ERROR(SyncHeld(db, m.inode, refs));
  for (const MoveRow& r : later) {
    if (!r.is_dir) DFS_RETURN_IF_ERROR(SyncHeld(db, r.inode, refs));
  }
  return Status::Ok();
}

Status BumpCtime(sqlite3* db, const FileId& inode, std::int64_t t) {
  Stmt s(db, "UPDATE inodes SET ctime = max(ctime, ?2) WHERE id = ?1");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(inode));
  s.Bind(2, t);
  return Done(s, "tree");
}

Status ApplyCreate(sqlite3* db, const TreeStep& st, ByteSpan ord) {
  DFS_RETURN_IF_ERROR(EnsureInode(db, st.inode));
  Stmt s(db, "UPDATE inodes SET type = ?2, rdev = ?3, symlink = ?4, "
             "size = CASE WHEN ?2 = 3 THEN ?5 ELSE size END WHERE id = ?1 AND type = 0");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(st.inode));
  s.Bind(2, std::int64_t{static_cast<std::uint8_t>(st.node.type)});
  s.Bind(3, static_cast<std::int64_t>(st.node.rdev));
  s.Bind(4, NameSpan(st.node.symlink));
  s.Bind(5, static_cast<std::int64_t>(st.node.symlink.size()));
  DFS_RETURN_IF_ERROR(Done(s, "tree"));
  const Register regs[] = {{"mode", st.node.mode},
                           {"uid", st.node.uid},
                           {"gid", st.node.gid},
                           {"atime", st.time_ns},
                           {"mtime", st.time_ns}};
  DFS_RETURN_IF_ERROR(SetRegisters(db, st.inode, regs, ord));
  return BumpCtime(db, st.inode, st.time_ns);
}

Status ApplySetAttr(sqlite3* db, const TreeStep& st, ByteSpan ord) {
  DFS_RETURN_IF_ERROR(EnsureInode(db, st.inode));
  const AttrChange& a = st.attrs;
  std::vector<Register> regs;
  if (a.mode) regs.push_back({"mode", *a.mode});
  if (a.uid) regs.push_back({"uid", *a.uid});
  if (a.gid) regs.push_back({"gid", *a.gid});
  if (a.atime_ns) regs.push_back({"atime", *a.atime_ns});
  if (a.mtime_ns) regs.push_back({"mtime", *a.mtime_ns});
  return SetRegisters(db, st.inode, regs, ord);
}

Status ApplyXattr(sqlite3* db, const TreeStep& st, ByteSpan ord) {
  Stmt s(db, "INSERT INTO xattrs(inode, name, value, present, by) VALUES(?1, ?2, ?3, ?4, ?5) "
             "ON CONFLICT(inode, name) DO UPDATE SET value = excluded.value, "
             "present = excluded.present, by = excluded.by WHERE xattrs.by < excluded.by");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(st.inode));
  s.Bind(2, NameSpan(st.name));
  // An empty value is an empty blob, not NULL (which a null data pointer binds).
  static const std::uint8_t kNoBytes = 0;
  s.Bind(3, st.value.empty() ? ByteSpan(&kNoBytes, 0) : ByteSpan(st.value));
  s.Bind(4, std::int64_t{st.present ? 1 : 0});
  s.Bind(5, ord);
  return Done(s, "tree");
}

// The name an entry is listed under: its own, or (an older entry sharing
// it) "name~<8 hex of the entry id>", the name cut so the whole fits NAME_MAX.
std::string ShownName(std::string name, const FileId& entry, bool keeps) {
  if (keeps) return name;
  if (name.size() > kNameMax - 9) name.resize(kNameMax - 9);
  return name + "~" + entry.ShortHex();
}

bool LoserSuffix(std::string_view name, std::string_view* base, std::string_view* hex) {
  if (name.size() < 10 || name[name.size() - 9] != '~') return false;
  *hex = name.substr(name.size() - 8);
  for (char c : *hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  *base = name.substr(0, name.size() - 9);
  return true;
}

}  // namespace

Status CreateSchema(sqlite3* db) { return ExecSql(db, kSchema, "index database"); }

Status Apply(sqlite3* db, const Op& op, const TreeOp& tree, const ChunkRefs& refs) {
  DFS_RETURN_IF_ERROR(DropAbandonedPieces(db, op, tree));
  const auto wall = static_cast<std::int64_t>(op.time.wall_ns);
  for (std::size_t i = 0; i < tree.steps.size(); ++i) {
    const TreeStep& st = tree.steps[i];
    Bytes ord = Ord(op, i);
    switch (st.kind) {
      case TreeStep::Kind::kCreate:
        DFS_RETURN_IF_ERROR(ApplyCreate(db, st, ord));
        break;
      case TreeStep::Kind::kMove: {
        MoveRow m{ord, st.entry, st.parent, st.name, st.inode,
                  st.node.type == FileType::kDirectory};
        DFS_RETURN_IF_ERROR(EnsureInode(db, st.inode));
        DFS_RETURN_IF_ERROR(ApplyMove(db, m, refs));
        break;
      }
      case TreeStep::Kind::kSetAttr:
        DFS_RETURN_IF_ERROR(ApplySetAttr(db, st, ord));
        break;
      case TreeStep::Kind::kContent:
        DFS_RETURN_IF_ERROR(ApplyContent(db, st.inode, st.manifest, st.mtime_ns, ord, refs));
        break;
      case TreeStep::Kind::kContentPart:
        DFS_RETURN_IF_ERROR(ApplyContentPart(db, op, st));
        continue;  // changes nothing a reader sees
      case TreeStep::Kind::kContentParts:
        DFS_RETURN_IF_ERROR(ApplyContentParts(db, st, ord, refs));
        break;
      case TreeStep::Kind::kXattr:
        DFS_RETURN_IF_ERROR(EnsureInode(db, st.inode));
        DFS_RETURN_IF_ERROR(ApplyXattr(db, st, ord));
        break;
    }
    DFS_RETURN_IF_ERROR(BumpCtime(db, st.inode, wall));
  }
  return Status::Ok();
}

Result<std::optional<EntryRow>> GetEntry(sqlite3* db, const FileId& entry) {
  DFS_ASSIGN_OR_RETURN(Placement p, ReadPlacement(db, entry));
  if (!p.present) return std::optional<EntryRow>();
  return std::optional<EntryRow>(EntryRow{entry, p.parent, p.name, p.inode, p.is_dir});
}

Result<std::string> PathOf(sqlite3* db, const FileId& inode) {
  Stmt s(db, "SELECT id FROM entries WHERE inode = ?1 AND parent != ?2 LIMIT 1");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(inode));
  s.Bind(2, IdSpan(FileId::Trash()));
  DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
  if (!row) return std::string();
  DFS_ASSIGN_OR_RETURN(FileId entry, IdFrom(s.Blob(0)));
  std::string path;
  for (int depth = 0; depth < 64 && entry != FileId::Root(); ++depth) {
    DFS_ASSIGN_OR_RETURN(Placement p, ReadPlacement(db, entry));
    if (!p.present || p.parent == FileId::Trash()) return std::string();
    path = "/" + p.name + path;
    entry = p.parent;  // a directory's entry id is its inode id
  }
  return entry == FileId::Root() ? path : ".../" + path.substr(1);
}

Result<std::optional<Attr>> GetAttr(sqlite3* db, const FileId& inode) {
  Stmt s(db, "SELECT type, rdev, mode, uid, gid, atime, mtime, ctime, size FROM inodes "
             "WHERE id = ?1 AND type != 0");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(inode));
  DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
  if (!row) return std::optional<Attr>();
  Attr a;
  a.inode = inode;
  a.type = static_cast<FileType>(s.Int(0));
  a.rdev = static_cast<std::uint64_t>(s.Int(1));
  a.mode = static_cast<std::uint32_t>(s.Int(2));
  a.uid = static_cast<std::uint32_t>(s.Int(3));
  a.gid = static_cast<std::uint32_t>(s.Int(4));
  a.atime_ns = s.Int(5);
  a.mtime_ns = s.Int(6);
  a.ctime_ns = s.Int(7);
  a.size = static_cast<std::uint64_t>(s.Int(8));
  if (a.type == FileType::kDirectory) {
    Stmt n(db, "SELECT count(*) FROM entries INDEXED BY entries_subdirs WHERE parent = ?1 AND is_dir = 1");
    DFS_RETURN_IF_ERROR(n.status("tree"));
    n.Bind(1, IdSpan(inode));
    DFS_ASSIGN_OR_RETURN(bool r, n.Step("tree"));
    a.nlink = 2 + static_cast<std::uint32_t>(r ? n.Int(0) : 0);
  } else {
    Stmt n(db, "SELECT count(*) FROM entries WHERE inode = ?1 AND parent != ?2");
    DFS_RETURN_IF_ERROR(n.status("tree"));
    n.Bind(1, IdSpan(inode));
    n.Bind(2, IdSpan(FileId::Trash()));
    DFS_ASSIGN_OR_RETURN(bool r, n.Step("tree"));
    a.nlink = static_cast<std::uint32_t>(r ? n.Int(0) : 0);
  }
  return std::optional<Attr>(a);
}

Result<std::optional<DirEntry>> Lookup(sqlite3* db, const FileId& dir, std::string_view name) {
  auto attach = [&](const FileId& entry, const FileId& inode,
                    std::string shown) -> Result<std::optional<DirEntry>> {
    DFS_ASSIGN_OR_RETURN(std::optional<Attr> attr, GetAttr(db, inode));
    if (!attr) return std::optional<DirEntry>();  // its inode has not arrived yet
    return std::optional<DirEntry>(DirEntry{std::move(shown), entry, *attr});
  };
  Stmt s(db, "SELECT id, inode FROM entries WHERE parent = ?1 AND name = ?2 "
             "ORDER BY placed_by DESC");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(dir));
  s.Bind(2, NameSpan(name));
  DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
  if (row) {
    DFS_ASSIGN_OR_RETURN(FileId entry, IdFrom(s.Blob(0)));
    DFS_ASSIGN_OR_RETURN(FileId inode, IdFrom(s.Blob(1)));
    return attach(entry, inode, std::string(name));
  }
  // "name~1a2b3c4d": one of the older entries that share a name (whose
  // start, for a name too long to take the suffix, is `base`).
  std::string_view base, hex;
  if (!LoserSuffix(name, &base, &hex)) return std::optional<DirEntry>();
  Stmt c(db, "SELECT e.id, e.inode, e.name FROM entries e WHERE e.parent = ?1 AND e.name >= ?2 "
             "AND substr(e.name, 1, ?3) = ?2 AND EXISTS (SELECT 1 FROM entries w WHERE "
             "w.parent = e.parent AND w.name = e.name AND w.placed_by > e.placed_by)");
  DFS_RETURN_IF_ERROR(c.status("tree"));
  c.Bind(1, IdSpan(dir));
  c.Bind(2, NameSpan(base));
  c.Bind(3, static_cast<std::int64_t>(base.size()));
  for (;;) {
    DFS_ASSIGN_OR_RETURN(bool more, c.Step("tree"));
    if (!more) break;
    DFS_ASSIGN_OR_RETURN(FileId entry, IdFrom(c.Blob(0)));
    if (entry.ShortHex() != hex || ShownName(BlobString(c.Blob(2)), entry, false) != name) continue;
    DFS_ASSIGN_OR_RETURN(FileId inode, IdFrom(c.Blob(1)));
    return attach(entry, inode, std::string(name));
  }
  return std::optional<DirEntry>();
}

Result<std::vector<DirRow>> ReadDir(sqlite3* db, const FileId& dir, std::uint64_t offset,
                                    std::size_t limit) {
  Stmt s(db, "SELECT e.id, e.name, e.inode, e.pos, EXISTS (SELECT 1 FROM entries w WHERE "
             "w.parent = e.parent AND w.name = e.name AND w.placed_by > e.placed_by) "
             "FROM entries e WHERE e.parent = ?1 AND e.pos > ?2 ORDER BY e.pos LIMIT ?3");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(dir));
  s.Bind(2, static_cast<std::int64_t>(offset));
  s.Bind(3, static_cast<std::int64_t>(limit));
  std::vector<DirRow> out;
  for (;;) {
    DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
    if (!row) break;
    DFS_ASSIGN_OR_RETURN(FileId entry, IdFrom(s.Blob(0)));
    DFS_ASSIGN_OR_RETURN(FileId inode, IdFrom(s.Blob(2)));
    bool keeps = s.Int(4) == 0;
    DirRow r;
    r.name = ShownName(BlobString(s.Blob(1)), entry, keeps);
    r.entry = entry;
    r.inode = inode;
    r.next = static_cast<std::uint64_t>(s.Int(3));
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<DirRow>> ReadDirByName(sqlite3* db, const FileId& dir, const DirRow* after,
                                          std::size_t limit) {
  Stmt s(db, after == nullptr
                 ? "SELECT e.id, e.name, e.inode, e.placed_by, EXISTS (SELECT 1 FROM entries w WHERE "
                   "w.parent = e.parent AND w.name = e.name AND w.placed_by > e.placed_by) "
                   "FROM entries e WHERE e.parent = ?1 ORDER BY e.name, e.placed_by DESC LIMIT ?2"
                 : "SELECT e.id, e.name, e.inode, e.placed_by, EXISTS (SELECT 1 FROM entries w WHERE "
                   "w.parent = e.parent AND w.name = e.name AND w.placed_by > e.placed_by) "
                   "FROM entries e WHERE e.parent = ?1 AND (e.name > ?3 OR (e.name = ?3 AND "
                   "e.placed_by < ?4)) ORDER BY e.name, e.placed_by DESC LIMIT ?2");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(dir));
  s.Bind(2, static_cast<std::int64_t>(limit));
  if (after != nullptr) {
    s.Bind(3, NameSpan(after->raw_name));
    s.Bind(4, ByteSpan(after->placed_by));
  }
  std::vector<DirRow> out;
  for (;;) {
    DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
    if (!row) break;
    DirRow r;
    DFS_ASSIGN_OR_RETURN(r.entry, IdFrom(s.Blob(0)));
    r.raw_name = BlobString(s.Blob(1));
    DFS_ASSIGN_OR_RETURN(r.inode, IdFrom(s.Blob(2)));
    ByteSpan by = s.Blob(3);
    r.placed_by.assign(by.begin(), by.end());
    r.name = ShownName(r.raw_name, r.entry, s.Int(4) == 0);
    out.push_back(std::move(r));
  }
  return out;
}

Result<bool> HasChildren(sqlite3* db, const FileId& dir) { return HasChildrenImpl(db, dir); }

Result<bool> IsAncestor(sqlite3* db, const FileId& ancestor, const FileId& node) {
  return IsAncestorImpl(db, ancestor, node);
}

Result<bool> IsLinked(sqlite3* db, const FileId& inode) {
  if (inode == FileId::Root()) return true;
  Stmt s(db, "SELECT id FROM entries WHERE inode = ?1 AND parent != ?2");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(inode));
  s.Bind(2, IdSpan(FileId::Trash()));
  for (;;) {
    DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
    if (!row) return false;
    DFS_ASSIGN_OR_RETURN(FileId entry, IdFrom(s.Blob(0)));
    DFS_ASSIGN_OR_RETURN(bool live, IsAncestorImpl(db, FileId::Root(), entry));
    if (live) return true;
  }
}

Result<std::optional<Manifest>> Content(sqlite3* db, const FileId& inode) {
  Stmt s(db, "SELECT manifest FROM inodes WHERE id = ?1 AND type != 0");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(inode));
  DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
  if (!row) return std::optional<Manifest>();
  if (s.Blob(0).empty()) return std::optional<Manifest>(Manifest{});
  DFS_ASSIGN_OR_RETURN(Manifest m, Manifest::Decode(s.Blob(0)));
  return std::optional<Manifest>(std::move(m));
}

Result<std::optional<std::string>> Symlink(sqlite3* db, const FileId& inode) {
  Stmt s(db, "SELECT symlink FROM inodes WHERE id = ?1 AND type = 3");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(inode));
  DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(BlobString(s.Blob(0)));
}

Result<std::optional<Bytes>> GetXattr(sqlite3* db, const FileId& inode, std::string_view name) {
  Stmt s(db, "SELECT value FROM xattrs WHERE inode = ?1 AND name = ?2 AND present = 1");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(inode));
  s.Bind(2, NameSpan(name));
  DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
  if (!row) return std::optional<Bytes>();
  ByteSpan v = s.Blob(0);
  return std::optional<Bytes>(Bytes(v.begin(), v.end()));
}

Result<std::vector<std::string>> ListXattr(sqlite3* db, const FileId& inode) {
  Stmt s(db, "SELECT name FROM xattrs WHERE inode = ?1 AND present = 1 ORDER BY name");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(inode));
  std::vector<std::string> names;
  for (;;) {
    DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
    if (!row) return names;
    names.push_back(BlobString(s.Blob(0)));
  }
}

Result<std::uint64_t> CountLiveEntries(sqlite3* db) {
  Stmt s(db, "SELECT count(*) FROM entries WHERE parent != ?1");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, IdSpan(FileId::Trash()));
  DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
  return row ? static_cast<std::uint64_t>(s.Int(0)) : 0;
}

}  // namespace dfs::core::treedb
