// The content register of an inode: a whole manifest (kContent) or one
// joined from pieces that earlier ops of the same origin carried
// (kContentPart, kContentParts; docs/format.md, "Tree op").
#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "core/tree_db_internal.h"

namespace dfs::core::treedb::internal {

Status ApplyContent(sqlite3* db, const FileId& inode, const Manifest& manifest,
                    std::int64_t mtime_ns, ByteSpan ord, const ChunkRefs& refs) {
  DFS_RETURN_IF_ERROR(EnsureInode(db, inode));
  Stmt cur(db, "SELECT manifest, content_by, held FROM inodes WHERE id = ?1");
  DFS_RETURN_IF_ERROR(cur.status("tree"));
  cur.Bind(1, IdSpan(inode));
  DFS_ASSIGN_OR_RETURN(bool row, cur.Step("tree"));
  if (!row) return Status::Corrupt("index database: inode vanished");
  ByteSpan by = cur.Blob(1);
  bool newer = by.empty() || std::lexicographical_compare(by.begin(), by.end(), ord.begin(), ord.end());
  if (!newer) return Status::Ok();
  std::optional<Manifest> old;
  if (!cur.Blob(0).empty()) {
    DFS_ASSIGN_OR_RETURN(Manifest m, Manifest::Decode(cur.Blob(0)));
    old = std::move(m);
  }
  // New references first: chunks shared by old and new never drop to zero.
  // An inode without a name holds no references (SyncHeld).
  if (cur.Int(2) != 0) {
    DFS_RETURN_IF_ERROR(refs.ref(manifest));
    if (old) DFS_RETURN_IF_ERROR(refs.unref(*old));
  }
  Stmt up(db, "UPDATE inodes SET manifest = ?2, size = ?3, content_by = ?4 WHERE id = ?1");
  DFS_RETURN_IF_ERROR(up.status("tree"));
  Bytes encoded = manifest.Encode();
  up.Bind(1, IdSpan(inode));
  up.Bind(2, ByteSpan(encoded));
  up.Bind(3, static_cast<std::int64_t>(manifest.size));
  up.Bind(4, ord);
  DFS_RETURN_IF_ERROR(Done(up, "tree"));
  return SetRegister(db, inode, "mtime", mtime_ns, ord);
}

// A piece of a content that a later kContentParts step of the same origin
// commits. Holds no chunk reference until then.
Status ApplyContentPart(sqlite3* db, const Op& op, const TreeStep& st) {
  Stmt s(db, "INSERT OR REPLACE INTO content_parts(content, part, origin, inode, piece) "
             "VALUES(?1, ?2, ?3, ?4, ?5)");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  Bytes piece = st.manifest.Encode();
  s.Bind(1, IdSpan(st.content));
  s.Bind(2, static_cast<std::int64_t>(st.part));
  s.Bind(3, op.origin.bytes());
  s.Bind(4, IdSpan(st.inode));
  s.Bind(5, ByteSpan(piece));
  return Done(s, "tree");
}

// A writer commits a content's pieces and its join as consecutive ops, so
// pieces of `origin` for any other content are ones whose join never came
// (the writer died or failed between them): dropped, the same on every
// replica, as soon as the origin's next op applies.
Status DropAbandonedPieces(sqlite3* db, const Op& op, const TreeOp& tree) {
  FileId current;  // all zero: no pieced content in this op
  for (const TreeStep& st : tree.steps) {
    if (st.kind == TreeStep::Kind::kContentPart || st.kind == TreeStep::Kind::kContentParts) {
      current = st.content;
    }
  }
  Stmt s(db, "DELETE FROM content_parts WHERE origin = ?1 AND content != ?2");
  DFS_RETURN_IF_ERROR(s.status("tree"));
  s.Bind(1, op.origin.bytes());
  s.Bind(2, IdSpan(current));
  return Done(s, "tree");
}

// Joins the pieces of st.content into one manifest, applies it as content
// and drops the pieces.
Status ApplyContentParts(sqlite3* db, const TreeStep& st, ByteSpan ord, const ChunkRefs& refs) {
  Manifest whole;
  {
    Stmt s(db, "SELECT part, inode, piece FROM content_parts WHERE content = ?1 ORDER BY part");
    DFS_RETURN_IF_ERROR(s.status("tree"));
    s.Bind(1, IdSpan(st.content));
    std::uint64_t bytes = 0;
    for (std::uint32_t want = 0;; ++want) {
      DFS_ASSIGN_OR_RETURN(bool row, s.Step("tree"));
      if (!row) {
        if (want == st.part) break;
        return Status::Corrupt(fmt::format("content {} of inode {}: {} of {} pieces arrived",
                                           st.content.ShortHex(), st.inode.ShortHex(), want,
                                           st.part));
      }
      DFS_ASSIGN_OR_RETURN(FileId of, IdFrom(s.Blob(1)));
      if (s.Int(0) != want || want >= st.part || of != st.inode) {
        return Status::Corrupt(fmt::format("content {} of inode {}: piece {} does not belong",
                                           st.content.ShortHex(), st.inode.ShortHex(), s.Int(0)));
      }
      bytes += s.Blob(2).size();
      if (bytes > kManifestMax) {
        return Status::Corrupt(fmt::format("content {}: its pieces pass {} bytes",
                                           st.content.ShortHex(), kManifestMax));
      }
      DFS_ASSIGN_OR_RETURN(Manifest piece, Manifest::Decode(s.Blob(2)));
      whole.size += piece.size;
      whole.chunks.insert(whole.chunks.end(), piece.chunks.begin(), piece.chunks.end());
    }
  }
  if (whole.size != st.manifest.size) {
    return Status::Corrupt(fmt::format("content {}: pieces of {} bytes for a file of {}",
                                       st.content.ShortHex(), whole.size, st.manifest.size));
  }
  DFS_RETURN_IF_ERROR(ApplyContent(db, st.inode, whole, st.mtime_ns, ord, refs));
  Stmt del(db, "DELETE FROM content_parts WHERE content = ?1");
  DFS_RETURN_IF_ERROR(del.status("tree"));
  del.Bind(1, IdSpan(st.content));
  return Done(del, "tree");
}

}  // namespace dfs::core::treedb::internal
