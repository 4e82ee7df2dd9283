// The libfuse3 low-level side of TreeMount (fuse/tree_mount.h): Errno, the
// callbacks (each one FileServer call, or a call into the TreeMount for
// open files) with their reply helpers, the table of operations (each one
// counted and timed), and TreeMount::Mount, which hands that table to
// libfuse. The class's own methods (node ids, open files, the write paths,
// invalidation) are in fuse/tree_mount.cc.
#define FUSE_USE_VERSION 312
#include "fuse/tree_mount.h"

#include "fuse/tree_mount_internal.h"

#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace dfs::fuse {

using core::Attr;
using core::DirEntry;
using core::FileId;
using core::FileType;
using core::Status;

int Errno(const Status& s) {
  switch (s.code()) {
    case core::ErrorCode::kOk: return 0;
    case core::ErrorCode::kNotFound: return ENOENT;
    case core::ErrorCode::kExists: return EEXIST;
    case core::ErrorCode::kNoSpace: return ENOSPC;
    case core::ErrorCode::kPermission: return EACCES;
    case core::ErrorCode::kInvalidArgument: return EINVAL;
    case core::ErrorCode::kNotDirectory: return ENOTDIR;
    case core::ErrorCode::kIsDirectory: return EISDIR;
    case core::ErrorCode::kNotEmpty: return ENOTEMPTY;
    case core::ErrorCode::kNameTooLong: return ENAMETOOLONG;
    case core::ErrorCode::kNoAttribute: return ENODATA;
    case core::ErrorCode::kUnsupported: return EOPNOTSUPP;
    case core::ErrorCode::kFileTooLarge: return EFBIG;
    default: return EIO;  // corrupt, wrong key, unreachable peers: never wrong bytes
  }
}

namespace {

constexpr double kTimeout = 1.0;  // attribute and entry cache, seconds

TreeMount* Self(fuse_req_t req) { return static_cast<TreeMount*>(fuse_req_userdata(req)); }

timespec Ts(std::int64_t ns) {
  timespec t{};
  t.tv_sec = static_cast<time_t>(ns / 1000000000);
  t.tv_nsec = static_cast<long>(ns % 1000000000);
  if (t.tv_nsec < 0) {
    t.tv_nsec += 1000000000;
    --t.tv_sec;
  }
  return t;
}

std::int64_t Ns(const timespec& t) {
  return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

mode_t TypeBits(FileType t) {
  switch (t) {
    case FileType::kRegular: return S_IFREG;
    case FileType::kDirectory: return S_IFDIR;
    case FileType::kSymlink: return S_IFLNK;
    case FileType::kFifo: return S_IFIFO;
    case FileType::kSocket: return S_IFSOCK;
    case FileType::kCharDevice: return S_IFCHR;
    case FileType::kBlockDevice: return S_IFBLK;
  }
  return S_IFREG;
}

void FillStat(struct stat* st, std::uint64_t ino, const Attr& a) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = ino;
  st->st_mode = TypeBits(a.type) | a.mode;
  st->st_nlink = a.nlink;
  st->st_uid = a.uid;
  st->st_gid = a.gid;
  st->st_rdev = a.rdev;
  st->st_size = static_cast<off_t>(a.size);
  // The preferred I/O size: cp and stdio then move 1 MiB per call, which
  // the kernel passes on as one FUSE write (max_write) instead of eight.
  st->st_blksize = 1 << 20;
  st->st_blocks = static_cast<blkcnt_t>((a.size + 511) / 512);
  st->st_atim = Ts(a.atime_ns);
  st->st_mtim = Ts(a.mtime_ns);
  st->st_ctim = Ts(a.ctime_ns);
}

// What the kernel should see of an inode: an open file's staged size and
// write time override the committed ones.
Attr Effective(TreeMount* m, std::uint64_t ino, Attr a) {
  if (a.type != FileType::kRegular) return a;
  std::shared_ptr<TreeMount::OpenFile> f = m->FindOpen(ino);
  if (!f) return a;
  std::lock_guard lock(f->mu);
  if (f->stream || !f->head.bytes.empty() || f->content_dirty ||
      (f->staged && (f->staged->dirty() || f->base_uncommitted))) {
    a.size = m->Size(*f);
    if (f->mtime_ns != 0) a.mtime_ns = f->mtime_ns;
  }
  return a;
}

void ReplyEntry(fuse_req_t req, TreeMount* m, fuse_ino_t parent, const DirEntry& e) {
  fuse_entry_param p{};
  p.ino = m->Remember(e.attr.inode, parent, e.name);
  p.generation = 1;
  FillStat(&p.attr, p.ino, Effective(m, p.ino, e.attr));
  p.attr_timeout = kTimeout;
  p.entry_timeout = kTimeout;
  if (fuse_reply_entry(req, &p) != 0) m->Forget(p.ino, 1);  // the kernel did not take it
}

// Resolves `ino` or replies ENOENT (returns false).
bool Resolve(fuse_req_t req, fuse_ino_t ino, FileId* out) {
  if (Self(req)->Find(ino, out)) return true;
  fuse_reply_err(req, ENOENT);
  return false;
}

void OpInit(void*, fuse_conn_info* conn) {
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  conn->max_background = 64;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_EXPORT_SUPPORT) conn->want |= FUSE_CAP_EXPORT_SUPPORT;
  if (conn->capable & FUSE_CAP_SPLICE_READ) conn->want &= ~FUSE_CAP_SPLICE_READ;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  if (conn->capable & FUSE_CAP_READDIRPLUS_AUTO) conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  TreeMount* m = Self(req);
  FileId dir;
  if (!Resolve(req, parent, &dir)) return;
  core::Result<DirEntry> e = m->files().LookupName(dir, name);
  if (!e.ok()) return (void)fuse_reply_err(req, Errno(e.status()));
  ReplyEntry(req, m, parent, *e);
}

void OpForget(fuse_req_t req, fuse_ino_t ino, std::uint64_t n) {
  Self(req)->Forget(ino, n);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, std::size_t count, fuse_forget_data* forgets) {
  for (std::size_t i = 0; i < count; ++i) Self(req)->Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  TreeMount* m = Self(req);
  FileId id;
  if (!Resolve(req, ino, &id)) return;
  core::Result<Attr> a = m->files().GetAttr(id);
  if (!a.ok()) return (void)fuse_reply_err(req, Errno(a.status()));
  struct stat st;
  FillStat(&st, ino, Effective(m, ino, *a));
  fuse_reply_attr(req, &st, kTimeout);
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  TreeMount* m = Self(req);
  FileId id;
  if (!Resolve(req, ino, &id)) return;
  core::Result<Attr> cur = m->files().GetAttr(id);
  if (!cur.ok()) return (void)fuse_reply_err(req, Errno(cur.status()));
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (cur->type == FileType::kDirectory) return (void)fuse_reply_err(req, EISDIR);
    if (cur->type != FileType::kRegular) return (void)fuse_reply_err(req, EINVAL);
    std::shared_ptr<TreeMount::OpenFile> f = m->FindOpen(ino);
    Status s;
    if (f) {
      std::lock_guard lock(f->mu);
      if (attr->st_size == 0 && !f->lost.ok()) {
        m->Empty(*f);  // what the failed upload dropped is cut anyway
      } else {
        s = m->Stage(*f);
        if (s.ok()) s = f->staged->Truncate(static_cast<std::uint64_t>(attr->st_size));
      }
      if (s.ok()) f->mtime_ns = NowNs();
      // truncate(2) by path has no handle to flush: commit now.
      if (s.ok() && fi == nullptr) s = m->Commit(*f);
    } else {
      // Not open here: stage, truncate and commit at once.
      TreeMount::OpenFile tmp;
      tmp.inode = id;
      core::Result<core::Manifest> content = m->files().Content(id);
      s = content.status();
      if (s.ok()) {
        tmp.content = std::make_shared<const core::Manifest>(std::move(content).value());
        s = m->Stage(tmp);
      }
      if (s.ok()) s = tmp.staged->Truncate(static_cast<std::uint64_t>(attr->st_size));
      tmp.mtime_ns = NowNs();
      if (s.ok()) s = m->Commit(tmp);
    }
    if (!s.ok()) return (void)fuse_reply_err(req, Errno(s));
  }
  core::AttrChange c;
  if (to_set & FUSE_SET_ATTR_MODE) c.mode = attr->st_mode & 07777;
  if (to_set & FUSE_SET_ATTR_UID) c.uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) c.gid = attr->st_gid;
  if ((to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) && !(to_set & FUSE_SET_ATTR_MODE) &&
      cur->type != FileType::kDirectory) {
    // chown clears set-user-ID, and set-group-ID when group execute is set.
    std::uint32_t mode = cur->mode;
    mode &= ~static_cast<std::uint32_t>(S_ISUID);
    if (mode & S_IXGRP) mode &= ~static_cast<std::uint32_t>(S_ISGID);
    if (mode != cur->mode) c.mode = mode;
  }
  std::int64_t now = NowNs();
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
    c.atime_ns = now;
  } else if (to_set & FUSE_SET_ATTR_ATIME) {
    c.atime_ns = Ns(attr->st_atim);
  }
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    c.mtime_ns = now;
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    c.mtime_ns = Ns(attr->st_mtim);
  }
  if (c.mtime_ns) {
    // An explicit mtime wins over the time of writes still staged.
    if (std::shared_ptr<TreeMount::OpenFile> f = m->FindOpen(ino)) {
      std::lock_guard lock(f->mu);
      f->mtime_ns = *c.mtime_ns;
    }
  }
  core::Result<Attr> a = cur;
  if (c.mode || c.uid || c.gid || c.atime_ns || c.mtime_ns) {
    a = m->files().SetAttr(id, c);
  } else if (to_set & FUSE_SET_ATTR_SIZE) {
    a = m->files().GetAttr(id);
  }
  if (!a.ok()) return (void)fuse_reply_err(req, Errno(a.status()));
  struct stat st;
  FillStat(&st, ino, Effective(m, ino, *a));
  fuse_reply_attr(req, &st, kTimeout);
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  FileId id;
  if (!Resolve(req, ino, &id)) return;
  core::Result<std::string> t = Self(req)->files().ReadLink(id);
  if (!t.ok()) return (void)fuse_reply_err(req, Errno(t.status()));
  fuse_reply_readlink(req, t->c_str());
}

// Creates a node as the caller (uid, gid; a set-group-ID directory passes on its group).
core::Result<DirEntry> MakeAs(fuse_req_t req, const FileId& dir, const char* name, core::NewNode node) {
  TreeMount* m = Self(req);
  const fuse_ctx* ctx = fuse_req_ctx(req);
  node.uid = ctx->uid;
  node.gid = ctx->gid;
  DFS_ASSIGN_OR_RETURN(Attr parent, m->files().GetAttr(dir));
  if (parent.mode & S_ISGID) {
    node.gid = parent.gid;
    if (node.type == FileType::kDirectory) node.mode |= S_ISGID;
  }
  return m->files().MakeNode(dir, name, node);
}

void MakeAndReply(fuse_req_t req, fuse_ino_t parent, const char* name, const core::NewNode& node) {
  FileId dir;
  if (!Resolve(req, parent, &dir)) return;
  core::Result<DirEntry> e = MakeAs(req, dir, name, node);
  if (!e.ok()) return (void)fuse_reply_err(req, Errno(e.status()));
  ReplyEntry(req, Self(req), parent, *e);
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  core::NewNode n;
  switch (mode & S_IFMT) {
    case S_IFREG: n.type = FileType::kRegular; break;
    case S_IFIFO: n.type = FileType::kFifo; break;
    case S_IFSOCK: n.type = FileType::kSocket; break;
    case S_IFCHR: n.type = FileType::kCharDevice; break;
    case S_IFBLK: n.type = FileType::kBlockDevice; break;
    default: return (void)fuse_reply_err(req, EINVAL);
  }
  n.mode = mode & 07777;
  n.rdev = rdev;
  MakeAndReply(req, parent, name, n);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  core::NewNode n;
  n.type = FileType::kDirectory;
  n.mode = mode & 07777;
  MakeAndReply(req, parent, name, n);
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  core::NewNode n;
  n.type = FileType::kSymlink;
  n.mode = 0777;
  n.symlink = link;
  MakeAndReply(req, parent, name, n);
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  FileId dir;
  if (!Resolve(req, parent, &dir)) return;
  fuse_reply_err(req, Errno(Self(req)->files().Unlink(dir, name)));
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  FileId dir;
  if (!Resolve(req, parent, &dir)) return;
  fuse_reply_err(req, Errno(Self(req)->files().RemoveDir(dir, name)));
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  FileId dir, new_dir;
  if (!Resolve(req, parent, &dir) || !Resolve(req, newparent, &new_dir)) return;
  unsigned f = 0;
  if (flags & RENAME_NOREPLACE) f |= core::FileServer::kRenameNoReplace;
  if (flags & RENAME_EXCHANGE) f |= core::FileServer::kRenameExchange;
  if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
    return (void)fuse_reply_err(req, EINVAL);  // RENAME_WHITEOUT: not for us
  }
  fuse_reply_err(req, Errno(Self(req)->files().Rename(dir, name, new_dir, newname, f)));
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  FileId id, dir;
  if (!Resolve(req, ino, &id) || !Resolve(req, newparent, &dir)) return;
  core::Result<DirEntry> e = Self(req)->files().Link(id, dir, newname);
  if (!e.ok()) return (void)fuse_reply_err(req, Errno(e.status()));
  ReplyEntry(req, Self(req), newparent, *e);
}

// Opens `ino` (already resolved to `id`) for a new handle.
core::Result<TreeMount::Handle*> NewHandle(TreeMount* m, fuse_ino_t ino, const FileId& id,
                                           fuse_file_info* fi) {
  DFS_ASSIGN_OR_RETURN(std::shared_ptr<TreeMount::OpenFile> f, m->Acquire(ino, id));
  auto h = std::make_unique<TreeMount::Handle>();
  h->file = f;
  h->writable = (fi->flags & O_ACCMODE) != O_RDONLY;
  h->append = (fi->flags & O_APPEND) != 0;
  if (fi->flags & O_TRUNC) {
    std::lock_guard lock(f->mu);
    Status s;
    if (!f->staged && !f->stream) {
      // Nothing staged: the content is simply empty now (and a writer in
      // order from 0 can still upload as it writes).
      m->Empty(*f);
    } else {
      s = m->Stage(*f);
      if (s.ok()) s = f->staged->Truncate(0);
    }
    if (!s.ok()) {
      (void)m->Release(ino, f);
      return s;
    }
    f->mtime_ns = NowNs();
  }
  std::shared_ptr<const core::Manifest> content;
  {
    std::lock_guard lock(f->mu);
    content = f->content;
  }
  // Close-to-open: keep the kernel's pages only while the content is
  // unchanged. (Outside the file's lock: the table lock comes first.)
  fi->keep_cache = m->ContentChanged(ino, *content) ? 0 : 1;
  return h.release();
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  TreeMount* m = Self(req);
  FileId id;
  if (!Resolve(req, ino, &id)) return;
  core::Result<TreeMount::Handle*> h = NewHandle(m, ino, id, fi);
  if (!h.ok()) return (void)fuse_reply_err(req, Errno(h.status()));
  fi->fh = reinterpret_cast<std::uint64_t>(*h);
  if (fuse_reply_open(req, fi) != 0) {  // interrupted: the kernel will not release it
    std::unique_ptr<TreeMount::Handle> gone(*h);
    (void)m->Release(ino, gone->file);
  }
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  TreeMount* m = Self(req);
  FileId dir;
  if (!Resolve(req, parent, &dir)) return;
  core::NewNode n;
  n.type = FileType::kRegular;
  n.mode = mode & 07777;
  core::Result<DirEntry> e = MakeAs(req, dir, name, n);
  if (!e.ok()) return (void)fuse_reply_err(req, Errno(e.status()));
  fuse_entry_param p{};
  p.ino = m->Remember(e->attr.inode, parent, e->name);
  p.generation = 1;
  FillStat(&p.attr, p.ino, e->attr);
  p.attr_timeout = kTimeout;
  p.entry_timeout = kTimeout;
  // Made just now, the file is empty: O_TRUNC has nothing to cut, and must
  // not count as a change of content (an op of its own per new file).
  const int flags = fi->flags;
  fi->flags &= ~O_TRUNC;
  core::Result<TreeMount::Handle*> h = NewHandle(m, p.ino, e->attr.inode, fi);
  fi->flags = flags;
  if (!h.ok()) {
    m->Forget(p.ino, 1);
    return (void)fuse_reply_err(req, Errno(h.status()));
  }
  fi->fh = reinterpret_cast<std::uint64_t>(*h);
  if (fuse_reply_create(req, &p, fi) != 0) {
    std::unique_ptr<TreeMount::Handle> gone(*h);
    (void)m->Release(p.ino, gone->file);
    m->Forget(p.ino, 1);
  }
}

TreeMount::Handle* H(fuse_file_info* fi) { return reinterpret_cast<TreeMount::Handle*>(fi->fh); }

// Logs a failed call on an open file: the call, the file's path, the error.
void LogFailure(TreeMount* m, std::string_view call, const FileId& inode, const Status& s) {
  spdlog::error("{} of {}: {}", call, m->files().Describe(inode), s.ToString());
}

void OpRead(fuse_req_t req, fuse_ino_t, std::size_t size, off_t off, fuse_file_info* fi) {
  TreeMount* m = Self(req);
  TreeMount::Handle* h = H(fi);
  // One buffer per FUSE thread, grown to the largest read (max_read): not a
  // zero-filled MiB per request.
  thread_local std::vector<std::uint8_t> storage;
  if (storage.size() < size) storage.resize(size);
  core::MutableByteSpan buf(storage.data(), size);
  core::Result<std::size_t> got = std::size_t{0};
  {
    TreeMount::OpenFile& f = *h->file;
    std::unique_lock lock(f.mu);
    Status unstreamed = m->Unstream(f);  // a read sees what was written: stage it
    // A peer changed the content: the kernel dropped its pages and size, so
    // reads must not mix its new size with our old bytes.
    if (unstreamed.ok() && f.stale) unstreamed = m->Refresh(f);
    if (!unstreamed.ok()) {
      got = unstreamed;
    } else if (f.staged) {
      got = f.staged->Read(static_cast<std::uint64_t>(off), buf);
    } else {
      std::shared_ptr<const core::Manifest> content = f.content;  // read without the file's lock
      lock.unlock();
      std::lock_guard hl(h->mu);
      got = m->files().ReadContent(*content, static_cast<std::uint64_t>(off), buf, &h->cursor);
    }
  }
  if (!got.ok()) {
    LogFailure(m, "read", h->file->inode, got.status());
    return (void)fuse_reply_err(req, Errno(got.status()));
  }
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), *got);
}

void OpWrite(fuse_req_t req, fuse_ino_t, const char* data, std::size_t size, off_t off,
             fuse_file_info* fi) {
  TreeMount* m = Self(req);
  TreeMount::Handle* h = H(fi);
  TreeMount::OpenFile& f = *h->file;
  std::lock_guard lock(f.mu);
  std::uint64_t at = h->append ? m->Size(f) : static_cast<std::uint64_t>(off);  // O_APPEND: at the end
  Status s = m->Write(f, at, core::ByteSpan(reinterpret_cast<const std::uint8_t*>(data), size));
  if (!s.ok()) return (void)fuse_reply_err(req, Errno(s));
  f.mtime_ns = NowNs();
  fuse_reply_write(req, size);
}

void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  TreeMount::OpenFile& f = *H(fi)->file;
  std::lock_guard lock(f.mu);
  Status s = Self(req)->Commit(f);
  if (!s.ok()) LogFailure(Self(req), "flush", f.inode, s);
  fuse_reply_err(req, Errno(s));
}

// fsync: the content is uploaded and committed, and the index log synced
// (with every other change made so far: group commit) before it returns;
// under a node, once its peers hold the ops too (MountOptions::after_sync).
void OpFsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) {
  TreeMount::OpenFile& f = *H(fi)->file;
  Status s;
  {
    std::lock_guard lock(f.mu);
    s = Self(req)->Commit(f);
  }
  if (s.ok()) s = Self(req)->SyncAll();
  if (!s.ok()) LogFailure(Self(req), "fsync", f.inode, s);
  fuse_reply_err(req, Errno(s));
}

// fsyncdir: names created, moved or removed so far are durable.
void OpFsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  fuse_reply_err(req, Errno(Self(req)->SyncAll()));
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  std::unique_ptr<TreeMount::Handle> h(H(fi));
  Status s = Self(req)->Release(ino, h->file);
  if (!s.ok()) LogFailure(Self(req), "release", h->file->inode, s);
  fuse_reply_err(req, Errno(s));
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  FileId id;
  if (!Resolve(req, ino, &id)) return;
  core::Result<Attr> a = Self(req)->files().GetAttr(id);
  if (!a.ok()) return (void)fuse_reply_err(req, Errno(a.status()));
  if (a->type != FileType::kDirectory) return (void)fuse_reply_err(req, ENOTDIR);
  fuse_reply_open(req, fi);
}

// Offsets: 1 after ".", 2 after "..", then 2 + the tree's listing position.
void ReadDir(fuse_req_t req, fuse_ino_t ino, std::size_t size, off_t off, bool plus) {
  TreeMount* m = Self(req);
  FileId id;
  if (!Resolve(req, ino, &id)) return;
  std::vector<char> buf(size);
  std::size_t used = 0;
  auto add = [&](const char* name, const struct stat& st, off_t next,
                 const fuse_entry_param* e) -> bool {
    std::size_t need =
        plus ? fuse_add_direntry_plus(req, buf.data() + used, size - used, name, e, next)
             : fuse_add_direntry(req, buf.data() + used, size - used, name, &st, next);
    if (need > size - used) return false;
    used += need;
    return true;
  };
  if (off < 2) {
    core::Result<Attr> self = m->files().GetAttr(id);
    if (!self.ok()) return (void)fuse_reply_err(req, Errno(self.status()));
    fuse_entry_param e{};  // "." and "..": no lookup is counted for them
    e.attr.st_mode = S_IFDIR;
    e.attr.st_ino = ino;
    if (off < 1 && !add(".", e.attr, 1, &e)) return (void)fuse_reply_buf(req, buf.data(), used);
    if (!add("..", e.attr, 2, &e)) return (void)fuse_reply_buf(req, buf.data(), used);
  }
  std::uint64_t from = off < 2 ? 0 : static_cast<std::uint64_t>(off) - 2;
  Status s = m->files().ReadDir(id, from, [&](const DirEntry& d, std::uint64_t next) {
    fuse_entry_param e{};
    struct stat st {};
    if (plus) {
      e.ino = m->Remember(d.attr.inode, ino, d.name);
      e.generation = 1;
      FillStat(&e.attr, e.ino, Effective(m, e.ino, d.attr));
      e.attr_timeout = kTimeout;
      e.entry_timeout = kTimeout;
      st = e.attr;
    } else {
      st.st_mode = TypeBits(d.attr.type);
      // Readers skip entries numbered 0; lookup assigns the real number.
      st.st_ino = std::hash<std::string>{}(d.name) | 1;
    }
    if (!add(d.name.c_str(), st, static_cast<off_t>(next + 2), &e)) {
      if (plus) m->Forget(e.ino, 1);  // not sent: not looked up
      return false;
    }
    return true;
  });
  if (!s.ok() && used == 0) return (void)fuse_reply_err(req, Errno(s));
  fuse_reply_buf(req, buf.data(), used);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, std::size_t size, off_t off, fuse_file_info*) {
  ReadDir(req, ino, size, off, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, std::size_t size, off_t off, fuse_file_info*) {
  ReadDir(req, ino, size, off, true);
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  // Constant time: the space of the file system that holds the data
  // directory, and no inode limit to speak of.
  struct statvfs st {};
  if (::statvfs(Self(req)->staging_dir().c_str(), &st) != 0) std::memset(&st, 0, sizeof(st));
  st.f_namemax = core::kNameMax;
  st.f_files = 1ull << 32;
  st.f_ffree = 1ull << 31;
  st.f_favail = st.f_ffree;
  fuse_reply_statfs(req, &st);
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                std::size_t size, int flags) {
  FileId id;
  if (!Resolve(req, ino, &id)) return;
  Status s = Self(req)->files().SetXattr(
      id, name, core::ByteSpan(reinterpret_cast<const std::uint8_t*>(value), size), flags);
  if (s.code() == core::ErrorCode::kNoSpace) return (void)fuse_reply_err(req, E2BIG);
  if (s.code() == core::ErrorCode::kNameTooLong) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_err(req, Errno(s));
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, std::size_t size) {
  FileId id;
  if (!Resolve(req, ino, &id)) return;
  core::Result<core::Bytes> v = Self(req)->files().GetXattr(id, name);
  if (!v.ok()) {
    if (v.status().code() == core::ErrorCode::kNameTooLong) return (void)fuse_reply_err(req, ERANGE);
    return (void)fuse_reply_err(req, Errno(v.status()));
  }
  if (size == 0) return (void)fuse_reply_xattr(req, v->size());
  if (v->size() > size) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, reinterpret_cast<const char*>(v->data()), v->size());
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, std::size_t size) {
  FileId id;
  if (!Resolve(req, ino, &id)) return;
  core::Result<std::vector<std::string>> names = Self(req)->files().ListXattr(id);
  if (!names.ok()) return (void)fuse_reply_err(req, Errno(names.status()));
  std::string all;
  for (const std::string& n : *names) {
    all += n;
    all.push_back('\0');
  }
  if (size == 0) return (void)fuse_reply_xattr(req, all.size());
  if (all.size() > size) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, all.data(), all.size());
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  FileId id;
  if (!Resolve(req, ino, &id)) return;
  fuse_reply_err(req, Errno(Self(req)->files().RemoveXattr(id, name)));
}

void OpFallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length,
                 fuse_file_info* fi) {
  // Plain allocation only: it extends the size like a write of zeros would
  // (as a hole: nothing is stored). Other modes are not offered.
  if (mode != 0) return (void)fuse_reply_err(req, EOPNOTSUPP);
  TreeMount* m = Self(req);
  TreeMount::OpenFile& f = *H(fi)->file;
  std::lock_guard lock(f.mu);
  Status s = m->Stage(f);
  std::uint64_t end = static_cast<std::uint64_t>(offset) + static_cast<std::uint64_t>(length);
  if (s.ok() && end > f.staged->size()) s = f.staged->Truncate(end);
  fuse_reply_err(req, Errno(s));
}

// Every low-level operation but init, with the name it has in the metrics.
#define DFS_FUSE_OPS(X) \
  X(lookup, OpLookup) \
  X(forget, OpForget) \
  X(forget_multi, OpForgetMulti) \
  X(getattr, OpGetattr) \
  X(setattr, OpSetattr) \
  X(readlink, OpReadlink) \
  X(mknod, OpMknod) \
  X(mkdir, OpMkdir) \
  X(symlink, OpSymlink) \
  X(unlink, OpUnlink) \
  X(rmdir, OpRmdir) \
  X(rename, OpRename) \
  X(link, OpLink) \
  X(open, OpOpen) \
  X(create, OpCreate) \
  X(read, OpRead) \
  X(write, OpWrite) \
  X(flush, OpFlush) \
  X(fsync, OpFsync) \
  X(fsyncdir, OpFsyncdir) \
  X(release, OpRelease) \
  X(opendir, OpOpendir) \
  X(readdir, OpReaddir) \
  X(readdirplus, OpReaddirplus) \
  X(statfs, OpStatfs) \
  X(setxattr, OpSetxattr) \
  X(getxattr, OpGetxattr) \
  X(listxattr, OpListxattr) \
  X(removexattr, OpRemovexattr) \
  X(fallocate, OpFallocate)

enum OpIndex {
#define DFS_OP_INDEX(name, fn) kOp_##name,
  DFS_FUSE_OPS(DFS_OP_INDEX)
#undef DFS_OP_INDEX
  kOpCount
};

// Counts and times a low-level operation (dfs_fuse_ops_total,
// dfs_fuse_op_duration_seconds) until it returns, having replied. The
// mount is found before the call: the reply frees the request.
template <auto Fn, OpIndex Op>
struct Timed;
template <typename... A, void (*Fn)(fuse_req_t, A...), OpIndex Op>
struct Timed<Fn, Op> {
  static void Call(fuse_req_t req, A... a) {
    core::ScopedOpTimer timer(Self(req)->op_metric(Op));
    Fn(req, a...);
  }
};

}  // namespace

core::Result<std::unique_ptr<TreeMount>> TreeMount::Mount(core::FileServer& files,
                                                          const std::filesystem::path& mountpoint,
                                                          const MountOptions& options) {
  std::unique_ptr<TreeMount> m(new TreeMount(files, options));
  std::error_code ec;
  std::filesystem::create_directories(options.staging_dir, ec);
  if (ec) {
    return core::Status::Io(fmt::format("cannot create {}: {}", options.staging_dir.string(), ec.message()));
  }
  m->nodes_[FUSE_ROOT_ID] = Node{FileId::Root(), 1, 0, "", 0};
  m->by_inode_[FileId::Root()] = FUSE_ROOT_ID;
  m->op_metrics_.resize(kOpCount);
  if (core::MetricsRegistry* registry = files.metrics()) {
#define DFS_ADD_OP_METRIC(name, fn) \
  m->op_metrics_[kOp_##name] = core::AddOpMetric(*registry, "dfs_fuse", "FUSE", #name);
    DFS_FUSE_OPS(DFS_ADD_OP_METRIC)
#undef DFS_ADD_OP_METRIC
  }
  std::vector<std::string> argv = {"dfsmount", "-o", "default_permissions,fsname=dfs,subtype=dfs"};
  for (const std::string& o : options.fuse_options) argv.insert(argv.end(), {"-o", o});
  if (options.debug) argv.push_back("-d");
  std::vector<char*> ptrs;
  for (std::string& a : argv) ptrs.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(ptrs.size()), ptrs.data());
  fuse_lowlevel_ops ops{};
  ops.init = OpInit;
#define DFS_SET_OP(name, fn) ops.name = Timed<fn, kOp_##name>::Call;
  DFS_FUSE_OPS(DFS_SET_OP)
#undef DFS_SET_OP
  m->session_ = fuse_session_new(&args, &ops, sizeof(ops), m.get());
  fuse_opt_free_args(&args);
  if (m->session_ == nullptr) return core::Status::InvalidArgument("FUSE refused the mount options");
  if (fuse_session_mount(m->session_, mountpoint.c_str()) != 0) {
    fuse_session_destroy(m->session_);
    m->session_ = nullptr;
    return core::Status::Io(fmt::format("cannot mount at {} (see the message above)", mountpoint.string()));
  }
  m->mountpoint_ = mountpoint;
  m->notify_thread_ = std::thread([p = m.get()] { p->NotifyLoop(); });
  return m;
}

}  // namespace dfs::fuse
