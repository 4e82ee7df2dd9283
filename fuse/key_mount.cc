#include "fuse/key_mount.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include <fmt/format.h>

#include "core/key_names.h"

namespace dfs::fuse {
namespace {

constexpr double kTimeout = 1.0;  // attribute and entry cache, seconds
constexpr std::size_t kNameMax = 255;

KeyMount* Self(fuse_req_t req) { return static_cast<KeyMount*>(fuse_req_userdata(req)); }

int Errno(const core::Status& s) {
  switch (s.code()) {
    case core::ErrorCode::kNotFound: return ENOENT;
    case core::ErrorCode::kNoSpace: return ENOSPC;
    case core::ErrorCode::kPermission: return EACCES;
    case core::ErrorCode::kInvalidArgument: return EINVAL;
    default: return EIO;  // corrupt, wrong key, unreachable peers: never wrong bytes
  }
}

std::string Join(const std::string& dir, const char* name) {
  return dir.empty() ? std::string(name) : dir + "/" + name;
}

bool HasKeysBelow(core::FileServer& files, const std::string& path) {
  bool any = false;
  (void)files.List(path.empty() ? "" : path + "/", [&](const core::FileInfo&) {
    any = true;
    return false;
  });
  return any;
}

void FillAttr(struct stat* st, std::uint64_t ino, bool dir, const core::FileInfo* info) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = ino;
  st->st_uid = ::getuid();
  st->st_gid = ::getgid();
  if (dir) {
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
    return;
  }
  st->st_mode = S_IFREG | 0444;
  st->st_nlink = 1;
  st->st_size = static_cast<off_t>(info->size);
  st->st_blocks = static_cast<blkcnt_t>((info->size + 511) / 512);
  st->st_blksize = 1 << 20;
  st->st_mtim.tv_sec = static_cast<time_t>(info->mtime_ns / 1000000000);
  st->st_mtim.tv_nsec = static_cast<long>(info->mtime_ns % 1000000000);
  st->st_ctim = st->st_mtim;
  st->st_atim = st->st_mtim;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  KeyMount* m = Self(req);
  if (std::strlen(name) > kNameMax) return (void)fuse_reply_err(req, ENAMETOOLONG);
  KeyMount::Node p;
  if (!m->Find(parent, &p) || !p.dir) return (void)fuse_reply_err(req, ENOENT);
  std::string path = Join(p.path, name);
  if (!core::ValidateKey(path).ok()) return (void)fuse_reply_err(req, ENOENT);
  fuse_entry_param e{};
  core::Result<core::FileInfo> info = m->files().Stat(path);
  if (info.ok()) {
    e.ino = m->Remember(path, false);
    FillAttr(&e.attr, e.ino, false, &*info);
  } else if (info.status().code() == core::ErrorCode::kNotFound && HasKeysBelow(m->files(), path)) {
    e.ino = m->Remember(path, true);
    FillAttr(&e.attr, e.ino, true, nullptr);
  } else {
    return (void)fuse_reply_err(req, info.ok() ? ENOENT : Errno(info.status()));
  }
  e.generation = 1;
  e.attr_timeout = kTimeout;
  e.entry_timeout = kTimeout;
  fuse_reply_entry(req, &e);
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
  KeyMount* m = Self(req);
  KeyMount::Node n;
  if (!m->Find(ino, &n)) return (void)fuse_reply_err(req, ENOENT);
  struct stat st;
  if (n.dir) {
    FillAttr(&st, ino, true, nullptr);
  } else {
    core::Result<core::FileInfo> info = m->files().Stat(n.path);
    if (!info.ok()) return (void)fuse_reply_err(req, Errno(info.status()));
    FillAttr(&st, ino, false, &*info);
  }
  fuse_reply_attr(req, &st, kTimeout);
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  KeyMount::Node n;
  if (!Self(req)->Find(ino, &n)) return (void)fuse_reply_err(req, ENOENT);
  if (!n.dir) return (void)fuse_reply_err(req, ENOTDIR);
  fuse_reply_open(req, fi);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, std::size_t size, off_t off, fuse_file_info*) {
  KeyMount* m = Self(req);
  KeyMount::Node n;
  if (!m->Find(ino, &n)) return (void)fuse_reply_err(req, ENOENT);
  if (!n.dir) return (void)fuse_reply_err(req, ENOTDIR);
  // ".", "..", then the first component of every key below, once each.
  std::vector<std::pair<std::string, bool>> entries = {{".", true}, {"..", true}};
  std::string prefix = n.path.empty() ? "" : n.path + "/";
  core::Status s = m->files().List(prefix, [&](const core::FileInfo& f) {
    std::string rest = f.key.substr(prefix.size());
    std::size_t slash = rest.find('/');
    std::string name = rest.substr(0, slash);
    if (entries.back().first != name) entries.emplace_back(name, slash != std::string::npos);
    return true;
  });
  if (!s.ok()) return (void)fuse_reply_err(req, Errno(s));
  std::vector<char> buf(size);
  std::size_t used = 0;
  for (std::size_t i = static_cast<std::size_t>(off); i < entries.size(); ++i) {
    struct stat st {};
    st.st_mode = entries[i].second ? S_IFDIR : S_IFREG;
    // Readers skip entries numbered 0; the number here is informative only
    // (lookup assigns the inode), so a hash of the name does.
    st.st_ino = std::hash<std::string>{}(entries[i].first) | 1;
    std::size_t need = fuse_add_direntry(req, buf.data() + used, size - used, entries[i].first.c_str(),
                                         &st, static_cast<off_t>(i + 1));
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  KeyMount::Node n;
  if (!Self(req)->Find(ino, &n)) return (void)fuse_reply_err(req, ENOENT);
  if (n.dir) return (void)fuse_reply_err(req, EISDIR);
  if ((fi->flags & O_ACCMODE) != O_RDONLY) return (void)fuse_reply_err(req, EROFS);
  fi->keep_cache = 1;  // contents change only through a new put, which the kernel sees as a new attr
  fuse_reply_open(req, fi);
}

void OpRead(fuse_req_t req, fuse_ino_t ino, std::size_t size, off_t off, fuse_file_info*) {
  KeyMount* m = Self(req);
  KeyMount::Node n;
  if (!m->Find(ino, &n)) return (void)fuse_reply_err(req, ENOENT);
  std::vector<std::uint8_t> buf(size);
  core::Result<std::size_t> got =
      m->files().ReadAt(n.path, static_cast<std::uint64_t>(off), core::MutableByteSpan(buf));
  if (!got.ok()) return (void)fuse_reply_err(req, Errno(got.status()));
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), *got);
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  struct statvfs st {};
  st.f_bsize = 4096;
  st.f_frsize = 4096;
  st.f_namemax = kNameMax;
  core::Result<core::IndexTotals> totals = Self(req)->files().Totals();
  if (totals.ok()) {
    st.f_files = totals->files;
    st.f_blocks = (totals->stored_bytes + 4095) / 4096;
  }
  fuse_reply_statfs(req, &st);
}

}  // namespace

core::Result<std::unique_ptr<KeyMount>> KeyMount::Mount(core::FileServer& files,
                                                        const std::filesystem::path& mountpoint,
                                                        const MountOptions& options) {
  std::unique_ptr<KeyMount> m(new KeyMount(files));
  m->nodes_[FUSE_ROOT_ID] = Node{"", true, 1};
  m->by_path_[""] = FUSE_ROOT_ID;
  std::vector<std::string> argv = {"dfsmount", "-o", "ro,default_permissions,fsname=dfs,subtype=dfs"};
  for (const std::string& o : options.fuse_options) argv.insert(argv.end(), {"-o", o});
  if (options.debug) argv.push_back("-d");
  std::vector<char*> ptrs;
  for (std::string& a : argv) ptrs.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(ptrs.size()), ptrs.data());
  fuse_lowlevel_ops ops{};
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.statfs = OpStatfs;
  m->session_ = fuse_session_new(&args, &ops, sizeof(ops), m.get());
  fuse_opt_free_args(&args);
  if (m->session_ == nullptr) return core::Status::InvalidArgument("FUSE refused the mount options");
  if (fuse_session_mount(m->session_, mountpoint.c_str()) != 0) {
    fuse_session_destroy(m->session_);
    m->session_ = nullptr;
    return core::Status::Io(fmt::format("cannot mount at {} (see the message above)", mountpoint.string()));
  }
  m->mountpoint_ = mountpoint;
  return m;
}

KeyMount::~KeyMount() {
  if (session_ == nullptr) return;
  fuse_session_unmount(session_);
  fuse_session_destroy(session_);
}

core::Status KeyMount::Run() {
  if (fuse_set_signal_handlers(session_) != 0) return core::Status::Io("cannot install signal handlers");
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(config, 0);
  int rc = fuse_session_loop_mt(session_, config);
  fuse_loop_cfg_destroy(config);
  fuse_remove_signal_handlers(session_);
  if (rc < 0) return core::Status::Io(fmt::format("FUSE loop: {}", std::strerror(-rc)));
  return core::Status::Ok();
}

void KeyMount::Exit() { fuse_session_exit(session_); }

std::uint64_t KeyMount::Remember(const std::string& path, bool dir) {
  std::lock_guard lock(mu_);
  auto it = by_path_.find(path);
  std::uint64_t ino;
  if (it != by_path_.end() && nodes_[it->second].dir == dir) {
    ino = it->second;
  } else {
    ino = next_ino_++;  // a new number; an old one for the same path lives until forgotten
    by_path_[path] = ino;
    nodes_[ino] = Node{path, dir, 0};
  }
  ++nodes_[ino].lookups;
  return ino;
}

void KeyMount::Forget(std::uint64_t ino, std::uint64_t n) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end() || ino == FUSE_ROOT_ID) return;
  it->second.lookups -= std::min(n, it->second.lookups);
  if (it->second.lookups > 0) return;
  auto p = by_path_.find(it->second.path);
  if (p != by_path_.end() && p->second == ino) by_path_.erase(p);
  nodes_.erase(it);
}

bool KeyMount::Find(std::uint64_t ino, Node* out) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return false;
  *out = it->second;
  return true;
}

}  // namespace dfs::fuse
