// FileServer: the file tree (core/namespace.h). Each change is checked and
// committed as one tree op under op_mu_, so the checks still hold when it
// commits; queries read through Index::WithDb.
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>

#include <fmt/format.h>

#include "core/file_server.h"
#include "core/key_names.h"
#include "core/tree_db.h"

namespace dfs::core {
namespace {

// Wall-clock time for file times: the clock the op log's HLC reads.
std::int64_t NowNs() { return static_cast<std::int64_t>(core::HybridClock::SystemNs()); }

TreeStep MoveStep(const FileId& entry, const FileId& parent, std::string_view name,
                  const Attr& what) {
  TreeStep s;
  s.kind = TreeStep::Kind::kMove;
  s.entry = entry;
  s.parent = parent;
  s.name = std::string(name);
  s.inode = what.inode;
  s.node.type = what.type;
  return s;
}

TreeStep TouchDir(const FileId& dir, std::int64_t now) {
  TreeStep s;
  s.kind = TreeStep::Kind::kSetAttr;
  s.inode = dir;
  s.attrs.mtime_ns = now;
  return s;
}

std::vector<std::string_view> Components(std::string_view key) {
  std::vector<std::string_view> parts;
  std::size_t at = 0;
  while (at <= key.size()) {
    std::size_t slash = key.find('/', at);
    if (slash == std::string_view::npos) slash = key.size();
    parts.push_back(key.substr(at, slash - at));
    at = slash + 1;
  }
  return parts;
}

bool IsNotThere(const Status& s) {
  return s.code() == ErrorCode::kNotFound || s.code() == ErrorCode::kNotDirectory;
}

}  // namespace

// ---- The seed's face, by path: a key "a/b/c" is the file c in a/b ----

Result<DirEntry> FileServer::ResolvePath(std::string_view key) {
  DirEntry at;
  at.entry = FileId::Root();
  DFS_ASSIGN_OR_RETURN(at.attr, GetAttr(FileId::Root()));
  for (std::string_view part : Components(key)) {
    if (at.attr.type != FileType::kDirectory) {
      return Status::NotFound(fmt::format("no such key: {} (a parent is a file)", key));
    }
    Result<DirEntry> next = LookupName(at.attr.inode, part);
    if (!next.ok()) {
      if (IsNotThere(next.status())) return Status::NotFound(fmt::format("no such key: {}", key));
      return next.status();
    }
    at = std::move(next).value();
  }
  return at;
}

Result<FileRecord> FileServer::LookupExisting(std::string_view key) {
  DFS_RETURN_IF_ERROR(ValidateKey(key));
  DFS_ASSIGN_OR_RETURN(DirEntry e, ResolvePath(key));
  if (e.attr.type != FileType::kRegular) {
    return Status::NotFound(fmt::format("no such key: {} (not a regular file)", key));
  }
  DFS_ASSIGN_OR_RETURN(Manifest m, Content(e.attr.inode));
  return FileRecord{std::string(key), e.attr.mtime_ns, std::move(m)};
}

Status FileServer::CommitPath(std::string_view key, const Manifest& manifest) {
  std::lock_guard lock(op_mu_);
  std::int64_t now = NowNs();
  TreeOp op;
  FileId dir = FileId::Root();
  bool dir_is_new = false;  // created by this op: nothing below it exists yet
  std::vector<std::string_view> parts = Components(key);
  NewNode base;
  base.uid = ::getuid();
  base.gid = ::getgid();
  for (std::size_t i = 0; i < parts.size(); ++i) {
    bool last = i + 1 == parts.size();
    std::optional<DirEntry> found;
    if (!dir_is_new) {
      Result<DirEntry> e = LookupName(dir, parts[i]);
      if (e.ok()) {
        found = std::move(e).value();
      } else if (e.status().code() != ErrorCode::kNotFound) {
        return e.status();
      }
    }
    if (found) {
      if (!last && found->attr.type != FileType::kDirectory) {
        return Status::NotDirectory(fmt::format("'{}': a parent is a file", key));
      }
      if (last && found->attr.type != FileType::kRegular) {
        return Status::IsDirectory(fmt::format("'{}' is not a regular file", key));
      }
      if (!last) {
        dir = found->attr.inode;
        continue;
      }
      TreeStep content;
      content.kind = TreeStep::Kind::kContent;
      content.inode = found->attr.inode;
      content.manifest = manifest;
      content.mtime_ns = now;
      op.steps.push_back(std::move(content));
      break;
    }
    TreeStep create;
    create.kind = TreeStep::Kind::kCreate;
    create.inode = FileId::Random();
    create.node = base;
    create.node.type = last ? FileType::kRegular : FileType::kDirectory;
    create.node.mode = last ? 0644 : 0755;
    create.time_ns = now;
    Attr what;
    what.inode = create.inode;
    what.type = create.node.type;
    op.steps.push_back(create);
    op.steps.push_back(MoveStep(create.inode, dir, parts[i], what));
    op.steps.push_back(TouchDir(dir, now));
    if (last) {
      TreeStep content;
      content.kind = TreeStep::Kind::kContent;
      content.inode = create.inode;
      content.manifest = manifest;
      content.mtime_ns = now;
      op.steps.push_back(std::move(content));
    }
    dir = create.inode;
    dir_is_new = true;
  }
  return CommitTreeLocked(op);
}

Status FileServer::Delete(std::string_view key) {
  ScopedOpTimer timer(&delete_metric_);
  DFS_RETURN_IF_ERROR(ValidateKey(key));
  std::size_t slash = key.rfind('/');
  FileId dir = FileId::Root();
  if (slash != std::string_view::npos) {
    DFS_ASSIGN_OR_RETURN(DirEntry parent, ResolvePath(key.substr(0, slash)));
    if (parent.attr.type != FileType::kDirectory) {
      return Status::NotFound(fmt::format("no such key: {}", key));
    }
    dir = parent.attr.inode;
  }
  Status s = Unlink(dir, slash == std::string_view::npos ? key : key.substr(slash + 1));
  if (s.code() == ErrorCode::kNotFound) return Status::NotFound(fmt::format("no such key: {}", key));
  DFS_RETURN_IF_ERROR(s);
  return Flush();  // durable, and its chunks gone, when we return
}

Result<bool> FileServer::Has(std::string_view key) {
  Result<FileRecord> rec = LookupExisting(key);
  if (rec.ok()) return true;
  if (rec.status().code() == ErrorCode::kNotFound) return false;
  return rec.status();
}

Status FileServer::ListDir(const FileId& dir, const std::string& path, std::string_view prefix,
                           const std::function<bool(const FileInfo&)>& fn, bool* stop) {
  // Name order, in batches: memory does not grow with the directory.
  std::optional<treedb::DirRow> after;
  for (;;) {
    DFS_ASSIGN_OR_RETURN(std::vector<treedb::DirRow> batch, index_->WithDb([&](sqlite3* db) {
      return treedb::ReadDirByName(db, dir, after ? &*after : nullptr, 256);
    }));
    if (batch.empty()) return Status::Ok();
    for (const treedb::DirRow& row : batch) {
      DFS_ASSIGN_OR_RETURN(std::optional<Attr> attr, index_->WithDb([&](sqlite3* db) {
        return treedb::GetAttr(db, row.inode);
      }));
      if (!attr) continue;
      std::string p = path.empty() ? row.name : path + "/" + row.name;
      if (attr->type == FileType::kDirectory) {
        std::string below = p + "/";
        // Descend where keys below could start with the prefix.
        if (below.compare(0, std::min(below.size(), prefix.size()), prefix.substr(0, below.size())) == 0) {
          DFS_RETURN_IF_ERROR(ListDir(attr->inode, p, prefix, fn, stop));
        }
      } else if (attr->type == FileType::kRegular && p.compare(0, prefix.size(), prefix) == 0) {
        FileInfo info;
        info.key = p;
        info.size = attr->size;
        info.mtime_ns = attr->mtime_ns;
        Result<Manifest> m = Content(attr->inode);
        if (m.ok()) info.chunks = m->chunks.size();
        if (!fn(info)) *stop = true;
      }
      if (*stop) return Status::Ok();
    }
    after = std::move(batch.back());
  }
}

Status FileServer::List(std::string_view prefix, const std::function<bool(const FileInfo&)>& fn) {
  DFS_RETURN_IF_ERROR(ValidatePrefix(prefix));
  // Start at the deepest directory the prefix names whole.
  std::size_t slash = prefix.rfind('/');
  FileId dir = FileId::Root();
  std::string path;
  if (slash != std::string_view::npos) {
    Result<DirEntry> d = ResolvePath(prefix.substr(0, slash));
    if (!d.ok()) return d.status().code() == ErrorCode::kNotFound ? Status::Ok() : d.status();
    if (d->attr.type != FileType::kDirectory) return Status::Ok();
    dir = d->attr.inode;
    path = std::string(prefix.substr(0, slash));
  }
  bool stop = false;
  return ListDir(dir, path, prefix, fn, &stop);
}

Result<Attr> FileServer::GetAttr(const FileId& inode) {
  DFS_ASSIGN_OR_RETURN(std::optional<Attr> a,
                       index_->WithDb([&](sqlite3* db) { return treedb::GetAttr(db, inode); }));
  if (!a) return Status::NotFound(fmt::format("no inode {}", inode.ShortHex()));
  return *a;
}

// A directory that exists and has a name under the root (or is the root).
Result<Attr> FileServer::LiveDir(const FileId& dir) {
  DFS_ASSIGN_OR_RETURN(Attr a, GetAttr(dir));
  if (a.type != FileType::kDirectory) {
    return Status::NotDirectory(fmt::format("{} is not a directory", dir.ShortHex()));
  }
  DFS_ASSIGN_OR_RETURN(bool linked,
                       index_->WithDb([&](sqlite3* db) { return treedb::IsLinked(db, dir); }));
  if (!linked) return Status::NotFound(fmt::format("directory {} was removed", dir.ShortHex()));
  return a;
}

Result<DirEntry> FileServer::LookupName(const FileId& dir, std::string_view name) {
  DFS_RETURN_IF_ERROR(ValidateName(name));
  DFS_ASSIGN_OR_RETURN(std::optional<DirEntry> e, index_->WithDb([&](sqlite3* db) {
    return treedb::Lookup(db, dir, name);
  }));
  if (!e) {
    DFS_ASSIGN_OR_RETURN(Attr d, GetAttr(dir));
    if (d.type != FileType::kDirectory) return Status::NotDirectory("lookup in a non-directory");
    return Status::NotFound(fmt::format("no entry '{}'", name));
  }
  return std::move(*e);
}

Status FileServer::ReadDir(const FileId& dir, std::uint64_t offset,
                           const std::function<bool(const DirEntry&, std::uint64_t)>& fn) {
  DFS_ASSIGN_OR_RETURN(Attr d, GetAttr(dir));
  if (d.type != FileType::kDirectory) return Status::NotDirectory("readdir of a non-directory");
  // Small first batches: the kernel asks for a few dozen names at a time.
  std::size_t batch_size = 32;
  for (;;) {
    DFS_ASSIGN_OR_RETURN(std::vector<treedb::DirRow> batch, index_->WithDb([&](sqlite3* db) {
      return treedb::ReadDir(db, dir, offset, batch_size);
    }));
    if (batch.empty()) return Status::Ok();
    for (treedb::DirRow& row : batch) {
      offset = row.next;
      DFS_ASSIGN_OR_RETURN(std::optional<Attr> attr, index_->WithDb([&](sqlite3* db) {
        return treedb::GetAttr(db, row.inode);
      }));
      if (!attr) continue;  // its inode has not arrived from its origin yet
      if (!fn(DirEntry{std::move(row.name), row.entry, *attr}, row.next)) return Status::Ok();
    }
    batch_size = std::min<std::size_t>(batch_size * 4, 1024);
  }
}

Status FileServer::CommitTreeLocked(const TreeOp& op) {
  Bytes value = op.Encode();
  // Op header, tree op header, one part step and the manifest's own fixed
  // bytes: well under this.
  constexpr std::size_t kPieceOverhead = 256;
  if (value.size() + kPieceOverhead <= options_.max_op_bytes ||
      options_.max_op_bytes <= kPieceOverhead + Manifest::kRefBytes) {
    return CommitOpLocked(Op::Kind::kTree, std::string(), std::move(value));
  }
  // Too large for one op: each content's manifest goes ahead in pieces that
  // fit one op each, and this op names them (TreeStep::kContentParts).
  const std::size_t per_piece = (options_.max_op_bytes - kPieceOverhead) / Manifest::kRefBytes;
  TreeOp last = op;
  std::vector<TreeOp> pieces;
  for (TreeStep& st : last.steps) {
    if (st.kind != TreeStep::Kind::kContent || st.manifest.is_inline() ||
        st.manifest.chunks.size() <= per_piece) {
      continue;
    }
    const std::size_t bytes =
        Manifest::kFixedBytes + st.manifest.chunks.size() * Manifest::kRefBytes;
    const std::size_t count = (st.manifest.chunks.size() + per_piece - 1) / per_piece;
    if (bytes > options_.max_manifest_bytes || count > kContentPartsMax) {
      return Status::FileTooLarge(fmt::format(
          "a file of {} chunks: its manifest would be {} bytes, more than the {} a file's may be",
          st.manifest.chunks.size(), bytes, options_.max_manifest_bytes));
    }
    const FileId content = FileId::Random();
    for (std::size_t p = 0; p < count; ++p) {
      TreeStep piece;
      piece.kind = TreeStep::Kind::kContentPart;
      piece.inode = st.inode;
      piece.content = content;
      piece.part = static_cast<std::uint32_t>(p);
      auto from = st.manifest.chunks.begin() + static_cast<std::ptrdiff_t>(p * per_piece);
      auto to = st.manifest.chunks.begin() +
                static_cast<std::ptrdiff_t>(std::min((p + 1) * per_piece, st.manifest.chunks.size()));
      piece.manifest.chunks.assign(from, to);
      for (const ChunkRef& ref : piece.manifest.chunks) piece.manifest.size += ref.size;
      pieces.push_back(TreeOp{{std::move(piece)}});
    }
    st.kind = TreeStep::Kind::kContentParts;
    st.content = content;
    st.part = static_cast<std::uint32_t>(count);
    st.manifest.chunks.clear();  // the size stays: the pieces must add up to it
  }
  value = last.Encode();
  if (value.size() > options_.max_op_bytes) {  // checked before any piece commits
    return CommitOpLocked(Op::Kind::kTree, std::string(), std::move(value));
  }
  for (const TreeOp& piece : pieces) {
    DFS_RETURN_IF_ERROR(CommitOpLocked(Op::Kind::kTree, std::string(), piece.Encode()));
  }
  return CommitOpLocked(Op::Kind::kTree, std::string(), std::move(value));
}

Result<DirEntry> FileServer::MakeNode(const FileId& dir, std::string_view name,
                                      const NewNode& node) {
  DFS_RETURN_IF_ERROR(ValidateName(name));
  if (node.type == FileType::kSymlink && node.symlink.size() > kSymlinkMax) {
    return Status::NameTooLong(fmt::format("symlink target of {} bytes", node.symlink.size()));
  }
  if ((node.mode & ~07777u) != 0) return Status::InvalidArgument("mode has type bits");
  FileId inode = FileId::Random();
  {
    std::lock_guard lock(op_mu_);
    DFS_ASSIGN_OR_RETURN(Attr d, LiveDir(dir));
    (void)d;
    Result<DirEntry> existing = LookupName(dir, name);
    if (existing.ok()) return Status::Exists(fmt::format("'{}' exists", name));
    if (existing.status().code() != ErrorCode::kNotFound) return existing.status();
    std::int64_t now = NowNs();
    TreeOp op;
    TreeStep create;
    create.kind = TreeStep::Kind::kCreate;
    create.inode = inode;
    create.node = node;
    create.time_ns = now;
    op.steps.push_back(create);
    Attr what;
    what.inode = inode;
    what.type = node.type;
    op.steps.push_back(MoveStep(inode, dir, name, what));
    op.steps.push_back(TouchDir(dir, now));
    DFS_RETURN_IF_ERROR(CommitTreeLocked(op));
  }
  DFS_ASSIGN_OR_RETURN(Attr a, GetAttr(inode));
  return DirEntry{std::string(name), inode, a};
}

Result<DirEntry> FileServer::Link(const FileId& inode, const FileId& dir, std::string_view name) {
  DFS_RETURN_IF_ERROR(ValidateName(name));
  FileId entry = FileId::Random();
  {
    std::lock_guard lock(op_mu_);
    DFS_ASSIGN_OR_RETURN(Attr target, GetAttr(inode));
    if (target.type == FileType::kDirectory) return Status::IsDirectory("hard link to a directory");
    DFS_ASSIGN_OR_RETURN(Attr d, LiveDir(dir));
    (void)d;
    Result<DirEntry> existing = LookupName(dir, name);
    if (existing.ok()) return Status::Exists(fmt::format("'{}' exists", name));
    if (existing.status().code() != ErrorCode::kNotFound) return existing.status();
    TreeOp op;
    op.steps.push_back(MoveStep(entry, dir, name, target));
    op.steps.push_back(TouchDir(dir, NowNs()));
    DFS_RETURN_IF_ERROR(CommitTreeLocked(op));
  }
  DFS_ASSIGN_OR_RETURN(Attr a, GetAttr(inode));
  return DirEntry{std::string(name), entry, a};
}

Status FileServer::RemoveName(const FileId& dir, std::string_view name, bool directory) {
  {
    std::lock_guard lock(op_mu_);
    DFS_ASSIGN_OR_RETURN(DirEntry e, LookupName(dir, name));
    bool is_dir = e.attr.type == FileType::kDirectory;
    if (directory && !is_dir) return Status::NotDirectory(fmt::format("'{}' is not a directory", name));
    if (!directory && is_dir) return Status::IsDirectory(fmt::format("'{}' is a directory", name));
    if (is_dir) {
      DFS_ASSIGN_OR_RETURN(bool busy, index_->WithDb([&](sqlite3* db) {
        return treedb::HasChildren(db, e.entry);
      }));
      if (busy) return Status::NotEmpty(fmt::format("'{}' is not empty", name));
    }
    TreeOp op;
    op.steps.push_back(MoveStep(e.entry, FileId::Trash(), e.name, e.attr));
    op.steps.push_back(TouchDir(dir, NowNs()));
    DFS_RETURN_IF_ERROR(CommitTreeLocked(op));
  }
  return Status::Ok();
}

Status FileServer::Unlink(const FileId& dir, std::string_view name) {
  return RemoveName(dir, name, /*directory=*/false);
}

Status FileServer::RemoveDir(const FileId& dir, std::string_view name) {
  return RemoveName(dir, name, /*directory=*/true);
}

Status FileServer::Rename(const FileId& dir, std::string_view name, const FileId& new_dir,
                          std::string_view new_name, unsigned flags) {
  DFS_RETURN_IF_ERROR(ValidateName(new_name));
  if ((flags & kRenameNoReplace) && (flags & kRenameExchange)) {
    return Status::InvalidArgument("rename: NOREPLACE and EXCHANGE together");
  }
  std::lock_guard lock(op_mu_);
  DFS_ASSIGN_OR_RETURN(DirEntry src, LookupName(dir, name));
  DFS_ASSIGN_OR_RETURN(Attr nd, LiveDir(new_dir));
  (void)nd;
  Result<DirEntry> dst = LookupName(new_dir, new_name);
  if (!dst.ok() && dst.status().code() != ErrorCode::kNotFound) return dst.status();
  auto under_itself = [&](const DirEntry& moved, const FileId& into) -> Result<bool> {
    if (moved.attr.type != FileType::kDirectory) return false;
    return index_->WithDb([&](sqlite3* db) { return treedb::IsAncestor(db, moved.entry, into); });
  };
  DFS_ASSIGN_OR_RETURN(bool loop, under_itself(src, new_dir));
  if (loop) return Status::InvalidArgument(fmt::format("'{}' would move under itself", name));

  std::int64_t now = NowNs();
  TreeOp op;
  if (flags & kRenameExchange) {
    if (!dst.ok()) return dst.status();
    DFS_ASSIGN_OR_RETURN(bool loop2, under_itself(*dst, dir));
    if (loop2) return Status::InvalidArgument(fmt::format("'{}' would move under itself", new_name));
    if (dst->entry == src.entry) return Status::Ok();
    op.steps.push_back(MoveStep(src.entry, new_dir, new_name, src.attr));
    op.steps.push_back(MoveStep(dst->entry, dir, name, dst->attr));
  } else {
    if (dst.ok()) {
      if (flags & kRenameNoReplace) return Status::Exists(fmt::format("'{}' exists", new_name));
      // Two names of one inode: rename does nothing (POSIX).
      if (dst->entry == src.entry || dst->attr.inode == src.attr.inode) return Status::Ok();
      bool src_dir = src.attr.type == FileType::kDirectory;
      bool dst_dir = dst->attr.type == FileType::kDirectory;
      if (src_dir && !dst_dir) return Status::NotDirectory(fmt::format("'{}' is not a directory", new_name));
      if (!src_dir && dst_dir) return Status::IsDirectory(fmt::format("'{}' is a directory", new_name));
      if (dst_dir) {
        DFS_ASSIGN_OR_RETURN(bool busy, index_->WithDb([&](sqlite3* db) {
          return treedb::HasChildren(db, dst->entry);
        }));
        if (busy) return Status::NotEmpty(fmt::format("'{}' is not empty", new_name));
      }
      op.steps.push_back(MoveStep(dst->entry, FileId::Trash(), dst->name, dst->attr));
    }
    op.steps.push_back(MoveStep(src.entry, new_dir, new_name, src.attr));
  }
  op.steps.push_back(TouchDir(dir, now));
  if (new_dir != dir) op.steps.push_back(TouchDir(new_dir, now));
  DFS_RETURN_IF_ERROR(CommitTreeLocked(op));
  return Status::Ok();
}

Result<Attr> FileServer::SetAttr(const FileId& inode, const AttrChange& change) {
  if (change.mode && (*change.mode & ~07777u) != 0) return Status::InvalidArgument("mode has type bits");
  {
    std::lock_guard lock(op_mu_);
    DFS_ASSIGN_OR_RETURN(Attr a, GetAttr(inode));
    (void)a;
    TreeOp op;
    TreeStep s;
    s.kind = TreeStep::Kind::kSetAttr;
    s.inode = inode;
    s.attrs = change;
    op.steps.push_back(s);
    DFS_RETURN_IF_ERROR(CommitTreeLocked(op));
  }
  return GetAttr(inode);
}

Result<std::string> FileServer::ReadLink(const FileId& inode) {
  DFS_ASSIGN_OR_RETURN(std::optional<std::string> target,
                       index_->WithDb([&](sqlite3* db) { return treedb::Symlink(db, inode); }));
  if (!target) {
    DFS_ASSIGN_OR_RETURN(Attr a, GetAttr(inode));
    (void)a;
    return Status::InvalidArgument("not a symlink");
  }
  return std::move(*target);
}

Result<Bytes> FileServer::GetXattr(const FileId& inode, std::string_view name) {
  DFS_RETURN_IF_ERROR(ValidateXattrName(name));
  DFS_ASSIGN_OR_RETURN(std::optional<Bytes> v, index_->WithDb([&](sqlite3* db) {
    return treedb::GetXattr(db, inode, name);
  }));
  if (!v) {
    DFS_ASSIGN_OR_RETURN(Attr a, GetAttr(inode));
    (void)a;
    return Status::NoAttribute(fmt::format("no attribute '{}'", name));
  }
  return std::move(*v);
}

Status FileServer::SetXattrStep(const FileId& inode, std::string_view name, ByteSpan value,
                                int flags, bool present) {
  DFS_RETURN_IF_ERROR(ValidateXattrName(name));
  if (value.size() > kXattrValueMax) return Status::NoSpace("xattr value too large");
  std::lock_guard lock(op_mu_);
  DFS_ASSIGN_OR_RETURN(Attr a, GetAttr(inode));
  (void)a;
  DFS_ASSIGN_OR_RETURN(std::optional<Bytes> cur, index_->WithDb([&](sqlite3* db) {
    return treedb::GetXattr(db, inode, name);
  }));
  if (!present && !cur) return Status::NoAttribute(fmt::format("no attribute '{}'", name));
  if ((flags & XATTR_CREATE) && cur) return Status::Exists(fmt::format("attribute '{}' exists", name));
  if ((flags & XATTR_REPLACE) && !cur) return Status::NoAttribute(fmt::format("no attribute '{}'", name));
  TreeOp op;
  TreeStep s;
  s.kind = TreeStep::Kind::kXattr;
  s.inode = inode;
  s.name = std::string(name);
  s.value.assign(value.begin(), value.end());
  s.present = present;
  op.steps.push_back(std::move(s));
  DFS_RETURN_IF_ERROR(CommitTreeLocked(op));
  return Status::Ok();
}

Status FileServer::SetXattr(const FileId& inode, std::string_view name, ByteSpan value, int flags) {
  return SetXattrStep(inode, name, value, flags, /*present=*/true);
}

Status FileServer::RemoveXattr(const FileId& inode, std::string_view name) {
  return SetXattrStep(inode, name, {}, 0, /*present=*/false);
}

Result<std::vector<std::string>> FileServer::ListXattr(const FileId& inode) {
  DFS_ASSIGN_OR_RETURN(Attr a, GetAttr(inode));
  (void)a;
  return index_->WithDb([&](sqlite3* db) { return treedb::ListXattr(db, inode); });
}

std::string FileServer::Describe(const FileId& inode) {
  Result<std::string> path =
      index_->WithDb([&](sqlite3* db) { return treedb::PathOf(db, inode); });
  if (!path.ok() || path->empty()) return inode.ShortHex();
  return fmt::format("{} ({})", *path, inode.ShortHex());
}

Result<Manifest> FileServer::Content(const FileId& inode) {
  DFS_ASSIGN_OR_RETURN(Attr a, GetAttr(inode));
  if (a.type == FileType::kDirectory) return Status::IsDirectory("content of a directory");
  if (a.type != FileType::kRegular) return Status::InvalidArgument("content of a special file");
  DFS_ASSIGN_OR_RETURN(std::optional<Manifest> m,
                       index_->WithDb([&](sqlite3* db) { return treedb::Content(db, inode); }));
  if (!m) return Status::NotFound(fmt::format("no inode {}", inode.ShortHex()));
  return std::move(*m);
}

Status FileServer::CommitContent(const FileId& inode, const Manifest& manifest,
                                 std::int64_t mtime_ns, ChunkPins* pins) {
  {
    std::lock_guard lock(op_mu_);
    DFS_ASSIGN_OR_RETURN(Attr a, GetAttr(inode));
    if (a.type == FileType::kDirectory) return Status::IsDirectory("write to a directory");
    if (a.type != FileType::kRegular) return Status::InvalidArgument("write to a special file");
    TreeOp op;
    TreeStep s;
    s.kind = TreeStep::Kind::kContent;
    s.inode = inode;
    s.manifest = manifest;
    s.mtime_ns = mtime_ns;
    op.steps.push_back(std::move(s));
    DFS_RETURN_IF_ERROR(CommitTreeLocked(op));
    if (pins != nullptr) pins->committed_ = true;
  }
  return Status::Ok();
}

}  // namespace dfs::core
