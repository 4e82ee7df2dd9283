// KeyMount: the first step of the mount — the volume's keys as a read-only
// directory tree through the libfuse3 low-level API. A key "a/b/c" is the
// file c in the directory a/b; directories are the key prefixes that exist.
// Reads go through FileServer::ReadAt (verified, decrypted, fetched from
// peers when needed). Writes, the replicated file tree (core/tree.h) and the
// POSIX attributes come with the rest of the mount issue.
//
// Inode numbers come from a table (key or prefix <-> number) with exact
// lookup counts; numbers are never reused within a mount (generation 1).
//
// Threading: Run() serves requests on libfuse's worker threads; the table
// is locked. Exit() may be called from any thread (or a signal handler's
// thread, through libfuse's own handlers).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/file_server.h"
#include "core/status.h"

struct fuse_session;

namespace dfs::fuse {

struct MountOptions {
  std::vector<std::string> fuse_options;  // passed as -o (e.g. allow_other, auto_unmount)
  bool debug = false;
};

class KeyMount {
 public:
  // Mounts `files` at `mountpoint`. Errors: kInvalidArgument (bad options),
  // kIo (the kernel refused the mount; the message says why).
  static core::Result<std::unique_ptr<KeyMount>> Mount(core::FileServer& files,
                                                       const std::filesystem::path& mountpoint,
                                                       const MountOptions& options);
  ~KeyMount();  // unmounts

  // Serves requests until unmounted (fusermount3 -u) or Exit(). Installs
  // libfuse's SIGINT/SIGTERM/SIGHUP handlers for the time it runs.
  core::Status Run();
  void Exit();

  // --- called by the low-level operations (fuse/key_mount.cc) ---
  struct Node {
    std::string path;  // "" for the root
    bool dir = false;
    std::uint64_t lookups = 0;
  };
  // The inode for `path`, created if new, with one more lookup.
  std::uint64_t Remember(const std::string& path, bool dir);
  void Forget(std::uint64_t ino, std::uint64_t n);
  bool Find(std::uint64_t ino, Node* out);
  core::FileServer& files() { return files_; }

 private:
  explicit KeyMount(core::FileServer& files) : files_(files) {}

  core::FileServer& files_;
  fuse_session* session_ = nullptr;
  std::filesystem::path mountpoint_;
  std::mutex mu_;
  std::uint64_t next_ino_ = 2;
  std::map<std::uint64_t, Node> nodes_;
  std::map<std::string, std::uint64_t> by_path_;
};

}  // namespace dfs::fuse
