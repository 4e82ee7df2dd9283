// TreeMount's own methods (fuse/tree_mount.h): running and ending the FUSE
// session, the node-id table, open files (acquire, refresh, release) and
// their write paths (the in-memory head, the upload stream, the staged
// file, commits), and the kernel-cache invalidations for peers' ops. The
// libfuse callbacks, the table of operations and Mount are in
// fuse/tree_mount_ops.cc.
#define FUSE_USE_VERSION 312
#include "fuse/tree_mount.h"

#include "fuse/tree_mount_internal.h"

#include <fuse_lowlevel.h>

#include <cstring>
#include <functional>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace dfs::fuse {

using core::FileId;
using core::Status;

TreeMount::~TreeMount() {
  {
    std::lock_guard lock(notify_mu_);
    notify_stop_ = true;
  }
  notify_cv_.notify_all();
  if (notify_thread_.joinable()) notify_thread_.join();
  // Handles the kernel never released (a forced unmount): commit their data.
  std::map<std::uint64_t, std::shared_ptr<OpenFile>> open;
  {
    std::lock_guard lock(mu_);
    open.swap(open_);
  }
  for (auto& [ino, f] : open) {
    std::lock_guard lock(f->mu);
    if (Status s = Commit(*f); !s.ok()) {
      spdlog::error("commit at unmount of {}: {}", files_.Describe(f->inode), s.ToString());
    }
  }
  if (session_ == nullptr) return;
  fuse_session_unmount(session_);
  fuse_session_destroy(session_);
}

core::Status TreeMount::Run() {
  if (fuse_set_signal_handlers(session_) != 0) return core::Status::Io("cannot install signal handlers");
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(config, 0);
  fuse_loop_cfg_set_max_threads(config, 16);
  int rc = fuse_session_loop_mt(session_, config);
  fuse_loop_cfg_destroy(config);
  fuse_remove_signal_handlers(session_);
  if (rc < 0) return core::Status::Io(fmt::format("FUSE loop: {}", std::strerror(-rc)));
  return core::Status::Ok();
}

void TreeMount::Exit() { fuse_session_exit(session_); }

std::uint64_t TreeMount::Remember(const FileId& inode, std::uint64_t parent, const std::string& name) {
  std::lock_guard lock(mu_);
  std::uint64_t ino;
  auto it = by_inode_.find(inode);
  if (it != by_inode_.end()) {
    ino = it->second;
  } else {
    ino = next_ino_++;
    by_inode_[inode] = ino;
    nodes_[ino] = Node{inode, 0, 0, "", 0};
  }
  Node& n = nodes_[ino];
  ++n.lookups;
  n.parent = parent;
  n.name = name;
  return ino;
}

void TreeMount::Forget(std::uint64_t ino, std::uint64_t n) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end() || ino == FUSE_ROOT_ID) return;
  it->second.lookups -= std::min(n, it->second.lookups);
  if (it->second.lookups > 0) return;
  by_inode_.erase(it->second.inode);
  nodes_.erase(it);
}

bool TreeMount::Find(std::uint64_t ino, FileId* out) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return false;
  *out = it->second.inode;
  return true;
}

std::shared_ptr<TreeMount::OpenFile> TreeMount::FindOpen(std::uint64_t ino) {
  std::lock_guard lock(mu_);
  auto it = open_.find(ino);
  return it == open_.end() ? nullptr : it->second;
}

core::Result<std::shared_ptr<TreeMount::OpenFile>> TreeMount::Acquire(std::uint64_t ino,
                                                                       const FileId& inode) {
  std::shared_ptr<OpenFile> existing;
  {
    std::lock_guard lock(mu_);
    auto it = open_.find(ino);
    if (it != open_.end()) {
      existing = it->second;
      std::lock_guard fl(existing->mu);
      ++existing->handles;
    }
  }
  if (existing) {
    // Close-to-open also for a file that is open here already: a new open
    // sees the tree's content, unless this mount has changes of its own.
    std::lock_guard fl(existing->mu);
    Status s = Refresh(*existing);
    if (!s.ok()) {
      --existing->handles;  // (the last handle is never this one: it was open)
      return s;
    }
    return existing;
  }
  // Load outside the table lock; a racing first open of the same file keeps
  // whichever OpenFile reached the table first.
  DFS_ASSIGN_OR_RETURN(core::Manifest content, files_.Content(inode));
  auto f = std::make_shared<OpenFile>();
  f->inode = inode;
  f->content = std::make_shared<const core::Manifest>(std::move(content));
  f->pins = std::make_unique<core::FileServer::ChunkPins>(&files_);
  files_.PinContent(*f->content, f->pins.get());
  std::lock_guard lock(mu_);
  auto [it, fresh] = open_.emplace(ino, f);
  std::lock_guard fl(it->second->mu);
  ++it->second->handles;
  return it->second;
}

Status TreeMount::Refresh(OpenFile& file) {
  file.stale = false;
  if (file.staged || file.stream || file.content_dirty) return Status::Ok();  // ours win until committed
  DFS_ASSIGN_OR_RETURN(core::Manifest now, files_.Content(file.inode));
  if (now == *file.content) return Status::Ok();
  auto pinned = std::make_unique<core::FileServer::ChunkPins>(&files_);
  files_.PinContent(now, pinned.get());
  file.content = std::make_shared<const core::Manifest>(std::move(now));
  file.pins = std::move(pinned);
  return Status::Ok();
}

Status TreeMount::Release(std::uint64_t ino, const std::shared_ptr<OpenFile>& file) {
  Status s;
  {
    std::lock_guard fl(file->mu);
    if (file->handles > 1) {
      --file->handles;
      return Status::Ok();
    }
    s = Commit(*file);
  }
  std::lock_guard lock(mu_);
  std::lock_guard fl(file->mu);
  if (--file->handles == 0) {
    auto it = open_.find(ino);
    if (it != open_.end() && it->second == file) open_.erase(it);
    // What was written and not committed is dropped with the open file;
    // the kernel's pages may still hold it.
    if (!s.ok()) {
      if (auto n = nodes_.find(ino); n != nodes_.end()) n->second.cache_suspect = true;
    }
  }
  return s;
}

bool TreeMount::Head::Append(core::ByteSpan data, std::atomic<std::size_t>& total, std::size_t cap) {
  if (total.fetch_add(data.size()) + data.size() > cap) {
    total.fetch_sub(data.size());
    return false;
  }
  budget = &total;
  bytes.insert(bytes.end(), data.begin(), data.end());
  return true;
}

void TreeMount::Head::Clear() {
  if (budget != nullptr) budget->fetch_sub(bytes.size());
  budget = nullptr;
  core::Bytes().swap(bytes);
}

Status TreeMount::Unstream(OpenFile& file) {
  if (!file.lost.ok()) return file.lost;
  if (!file.head.bytes.empty()) {
    // The head becomes a staged file (content: nothing, or only a hole).
    core::FileServer* fs = &files_;
    DFS_ASSIGN_OR_RETURN(
        std::unique_ptr<core::StagedFile> staged,
        core::StagedFile::Create(options_.staging_dir, *file.content,
                                 [fs](const core::Manifest& base, std::size_t i, core::Bytes* plain) {
                                   return fs->ReadChunk(base, i, plain);
                                 }));
    DFS_RETURN_IF_ERROR(staged->Write(0, file.head.bytes));  // the head stays on failure
    file.staged = std::move(staged);
    file.head.Clear();
    return Status::Ok();
  }
  if (!file.stream) return Status::Ok();
  std::unique_ptr<core::UploadStream> stream = std::move(file.stream);
  core::Result<core::Manifest> finished = stream->Finish();
  if (!finished.ok()) {
    file.lost = finished.status().WithContext("the upload of what was written failed");
    return file.lost;
  }
  core::Manifest uploaded = std::move(*finished);
  // The stream began over content that was only a hole (a file extended by
  // truncate before it was written, as fio does): the hole's tail stays.
  if (uploaded.size < file.content->size) uploaded.AppendHole(file.content->size - uploaded.size);
  core::FileServer* fs = &files_;
  DFS_ASSIGN_OR_RETURN(
      file.staged,
      core::StagedFile::Create(options_.staging_dir, std::move(uploaded),
                               [fs](const core::Manifest& base, std::size_t i, core::Bytes* plain) {
                                 return fs->ReadChunk(base, i, plain);
                               }));
  file.base_pins = stream->TakePins();
  file.base_uncommitted = true;
  return Status::Ok();
}

void TreeMount::Empty(OpenFile& file) {
  file.content = std::make_shared<const core::Manifest>();
  file.head.Clear();
  file.content_dirty = true;
  file.lost = Status::Ok();
}

std::uint64_t TreeMount::Size(OpenFile& file) {
  if (file.stream) return std::max(file.stream->size(), file.content->size);
  if (!file.head.bytes.empty()) {
    return std::max<std::uint64_t>(file.head.bytes.size(), file.content->size);
  }
  if (file.staged) return file.staged->size();
  return file.content->size;
}

Status TreeMount::Write(OpenFile& file, std::uint64_t offset, core::ByteSpan data) {
  constexpr std::size_t kStreamFrom = 128 * 1024;  // from here on a new file streams
  if (!file.lost.ok()) return file.lost;
  // Streamed when the file holds no bytes yet: empty, or only a hole.
  auto no_data = [](const core::Manifest& m) {
    return std::all_of(m.chunks.begin(), m.chunks.end(),
                       [](const core::ChunkRef& r) { return r.IsHole(); });
  };
  if (!file.stream && !file.staged && no_data(*file.content) && offset == file.head.bytes.size()) {
    // Few bytes so far: in memory, one small upload at close.
    if (file.head.bytes.size() + data.size() < kStreamFrom &&
        file.head.Append(data, head_bytes_, kHeadBudget)) {
      return Status::Ok();
    }
    file.stream = std::make_unique<core::UploadStream>(files_);
    file.content_dirty = false;  // the upload replaces the content
    if (!file.head.bytes.empty()) {
      DFS_RETURN_IF_ERROR(file.stream->Write(file.head.bytes));
      file.head.Clear();
    }
  }
  if (file.stream && offset == file.stream->size()) return file.stream->Write(data);
  DFS_RETURN_IF_ERROR(Stage(file));
  return file.staged->Write(offset, data);
}

Status TreeMount::Stage(OpenFile& file) {
  DFS_RETURN_IF_ERROR(Unstream(file));
  if (file.staged) return Status::Ok();
  core::FileServer* fs = &files_;
  DFS_ASSIGN_OR_RETURN(
      file.staged,
      core::StagedFile::Create(options_.staging_dir, *file.content,
                               [fs](const core::Manifest& base, std::size_t i, core::Bytes* plain) {
                                 return fs->ReadChunk(base, i, plain);
                               }));
  return Status::Ok();
}

Status TreeMount::CommitHead(OpenFile& file) {
  std::int64_t mtime = file.mtime_ns != 0 ? file.mtime_ns : NowNs();
  core::FileServer::ChunkPins pins(&files_);
  core::MemoryReader reader(file.head.bytes);
  // The head is the whole content unless a truncate extended the file past it.
  auto inlining = file.head.bytes.size() >= file.content->size
                      ? core::FileServer::Inlining::kWholeFile
                      : core::FileServer::Inlining::kRegion;
  DFS_ASSIGN_OR_RETURN(core::Manifest next, files_.StoreData(reader, &pins, inlining));
  if (next.size < file.content->size) next.AppendHole(file.content->size - next.size);
  DFS_RETURN_IF_ERROR(files_.CommitContent(file.inode, next, mtime, &pins));
  file.head.Clear();
  Committed(file, std::move(next));
  return Status::Ok();
}

void TreeMount::Committed(OpenFile& file, core::Manifest next) {
  file.base_uncommitted = false;
  file.content_dirty = false;
  file.base_pins.reset();
  file.content = std::make_shared<const core::Manifest>(std::move(next));
  file.mtime_ns = 0;
  if (file.pins) {
    auto pinned = std::make_unique<core::FileServer::ChunkPins>(&files_);
    files_.PinContent(*file.content, pinned.get());
    file.pins = std::move(pinned);
  }
}

Status TreeMount::Commit(OpenFile& file) {
  if (!file.head.bytes.empty()) return CommitHead(file);
  DFS_RETURN_IF_ERROR(Unstream(file));
  std::int64_t mtime = file.mtime_ns != 0 ? file.mtime_ns : NowNs();
  if (!file.staged) {
    if (!file.content_dirty) return Status::Ok();
    DFS_RETURN_IF_ERROR(files_.CommitContent(file.inode, *file.content, mtime));
    file.content_dirty = false;
    file.mtime_ns = 0;
    return Status::Ok();
  }
  if (!file.staged->dirty() && !file.base_uncommitted && !file.content_dirty) return Status::Ok();
  core::FileServer::ChunkPins pins(&files_);
  std::optional<core::StagedFile::PreparedCommit> prepared;
  core::Manifest next;
  if (file.staged->dirty()) {
    DFS_ASSIGN_OR_RETURN(prepared, file.staged->PrepareCommit([&](core::Reader& region) {
      return files_.StoreData(region, &pins);
    }));
    next = prepared->manifest;
  } else {
    next = file.staged->base();
  }
  // The staged bytes are dropped only once the tree holds the new content:
  // a failure here leaves the file dirty, and the next flush tries again.
  DFS_RETURN_IF_ERROR(files_.CommitContent(file.inode, next, mtime, &pins));
  if (prepared) DFS_RETURN_IF_ERROR(file.staged->FinishCommit(*prepared));
  Committed(file, std::move(next));
  return Status::Ok();
}

bool TreeMount::ContentChanged(std::uint64_t ino, const core::Manifest& content) {
  core::Bytes enc = content.Encode();
  std::size_t h = std::hash<std::string_view>{}(
      std::string_view(reinterpret_cast<const char*>(enc.data()), enc.size()));
  std::lock_guard lock(mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return true;
  bool changed = it->second.content_hash != h || it->second.cache_suspect;
  it->second.content_hash = h;
  it->second.cache_suspect = false;
  return changed;
}

void TreeMount::OnRemoteOp(const core::Op& op) {
  // Called with the FileServer's op lock held: only queue it here (taking
  // the table lock could close a cycle with a commit in progress).
  if (op.kind != core::Op::Kind::kTree) return;
  {
    std::lock_guard lock(notify_mu_);
    notify_ops_.push_back(op);
  }
  notify_cv_.notify_one();
}

std::vector<TreeMount::Inval> TreeMount::Invalidations(const core::Op& op) {
  std::vector<Inval> todo;
  core::Result<core::TreeOp> tree = core::TreeOp::Decode(op.value);
  if (!tree.ok()) return todo;
  std::lock_guard lock(mu_);
  auto ino_of = [&](const FileId& id) -> std::uint64_t {
    auto it = by_inode_.find(id);
    return it == by_inode_.end() ? 0 : it->second;
  };
  for (const core::TreeStep& s : tree->steps) {
    if (s.kind == core::TreeStep::Kind::kContentPart) continue;  // nothing visible yet
    std::uint64_t ino = ino_of(s.inode);
    if ((s.kind == core::TreeStep::Kind::kContent ||
         s.kind == core::TreeStep::Kind::kContentParts) && ino != 0) {
      auto open = open_.find(ino);
      if (open != open_.end()) open->second->stale = true;  // atomic: no file lock here
    }
    if (ino != 0) {
      todo.push_back(Inval{ino, 0, ""});
      if (s.kind == core::TreeStep::Kind::kMove) {
        const Node& n = nodes_[ino];
        if (n.parent != 0) todo.push_back(Inval{n.parent, n.parent, n.name});
      }
    }
    if (s.kind == core::TreeStep::Kind::kMove) {
      if (std::uint64_t p = ino_of(s.parent); p != 0) todo.push_back(Inval{p, p, s.name});
    }
  }
  return todo;
}

void TreeMount::NotifyLoop() {
  for (;;) {
    core::Op op;
    {
      std::unique_lock lock(notify_mu_);
      notify_cv_.wait(lock, [&] { return notify_stop_ || !notify_ops_.empty(); });
      if (notify_stop_) return;
      op = std::move(notify_ops_.front());
      notify_ops_.pop_front();
    }
    for (const Inval& i : Invalidations(op)) {
      // Errors (ENOENT: the kernel no longer has it) need no handling.
      if (i.parent != 0) {
        (void)fuse_lowlevel_notify_inval_entry(session_, i.parent, i.name.c_str(), i.name.size());
      }
      if (i.ino != 0) (void)fuse_lowlevel_notify_inval_inode(session_, i.ino, 0, 0);
    }
  }
}

}  // namespace dfs::fuse
