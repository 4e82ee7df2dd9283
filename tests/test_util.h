// Helpers shared by the tests: scratch directories, deterministic data, and
// running the built programs as real processes.
#pragma once

#include <cstdint>
#include <chrono>
#include <filesystem>
#include <functional>
#include <ios>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/chunk_id.h"
#include "core/chunk_store.h"
#include "core/node_id.h"

namespace dfs::testing {

// A fresh directory under $TMPDIR (or /tmp), removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Deterministic pseudo-random bytes (xorshift) from `seed`.
core::Bytes RandomBytes(std::size_t size, std::uint64_t seed);

// A node id of 16 bytes `b`, and a chunk id whose first 4 bytes are `n`.
core::NodeId TestNodeId(std::uint8_t b);
core::ChunkId TestChunkId(std::uint32_t n);

// Copies every chunk `from` holds to `to`, as peers push chunks ahead of the
// ops that name them (replication tests). The first error, if any.
core::Status CopyChunks(core::ChunkStore& from, core::ChunkStore& to);

// XORs the byte at `offset` of an existing file with `mask` (damage tests).
void FlipByte(const std::filesystem::path& path, std::streamoff offset, std::uint8_t mask = 0x10);

// Writes / reads a whole file; aborts the test on failure.
void WriteFile(const std::filesystem::path& path, core::ByteSpan data);
core::Bytes ReadFile(const std::filesystem::path& path);

struct RunResult {
  int exit_code = -1;         // -1 when killed by a signal
  int signal = 0;
  std::string out;            // captured stdout
  std::string err;            // captured stderr
  std::int64_t max_rss_kib = 0;
};

// Runs `argv` (argv[0] a path) with stdin from `stdin_path` (or /dev/null
// when empty), captures stdout and stderr, and reports peak RSS.
RunResult Run(const std::vector<std::string>& argv, const std::string& stdin_path = "");

// Starts `argv` in the background with stdout and stderr to `log_path`;
// returns its pid. The caller stops it with Stop().
int Spawn(const std::vector<std::string>& argv, const std::string& log_path);
// Sends `sig` and waits; returns the exit status (or 128 + signal).
int Stop(int pid, int sig);

// A small tmpfs mounted at `dir` (created) for full-disk tests; unmounted
// (lazily) on destruction. ok() is false when mounting failed.
class ScopedTmpfs {
 public:
  ScopedTmpfs(const std::filesystem::path& dir, const std::string& size);
  ~ScopedTmpfs();
  bool ok() const { return ok_; }

 private:
  std::filesystem::path dir_;
  bool ok_ = false;
};

// Polls `pred` every `poll` until it holds or `limit` passes; returns it.
bool WaitFor(const std::function<bool()>& pred,
             std::chrono::milliseconds limit = std::chrono::seconds(20),
             std::chrono::milliseconds poll = std::chrono::milliseconds(50));

// Path of a program built into build/bin.
std::string BinPath(const std::string& name);

// Whether `dir` is a mount point, by /proc/mounts (never touching `dir`
// itself, which may be a dead FUSE mount answering ENOTCONN).
bool Mounted(const std::filesystem::path& dir);

// The whole content of a file, "" when it cannot be read (logs).
std::string Slurp(const std::filesystem::path& path);

}  // namespace dfs::testing
