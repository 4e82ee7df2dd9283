// Mounts of one volume on several nodes, as real processes on 127.0.0.1
// (skipped, saying why, without /dev/fuse or root): two dfsmount nodes A and
// B and a keyless dfsd C, peered through C (the fixture is
// tests/mount_cluster_fixture.h). A gigabyte goes in through `cp` on one
// mount and comes out byte for byte through `cat` on the other, with every
// node's peak memory bounded; a mount goes on serving and accepting writes
// while another node is killed with SIGKILL, and that node's remount
// catches up; a change on one mount reaches the other's kernel caches
// within seconds; and a file whose manifest passes one op crosses in pieces. (The 1 GiB test takes about a minute on 2 cores; the rest
// take seconds. tests/mount_cluster_conflict_test.cc holds conflicting
// changes made at once on both mounts.)
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/mount_cluster_fixture.h"
#include "tests/test_util.h"

namespace dfs {
namespace {

using namespace testing_cluster;  // also brings fs (std::filesystem) and the chrono literals

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

std::string ReadOrError(const fs::path& p) {
  std::string s;
  int e = ReadContent(p, &s);
  return e == 0 ? s : "<" + std::string(std::strerror(e)) + ">";
}

bool Exists(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

// VmHWM (peak resident set) of a live process, in KiB; -1 if unknown.
long PeakRssKib(int pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// --- 1. A gigabyte through cp on A, out through cat on B ----------------

TEST_F(MountClusterTest, AGigabyteCopiedInOnOneMountCatsOutIdenticalOnAnother) {
  constexpr std::uint64_t kSize = 1ull << 30;
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replicas=*/2));

  // The source: xorshift bytes, streamed to disk (no 1 GiB buffer).
  auto t0 = std::chrono::steady_clock::now();
  {
    std::FILE* f = std::fopen((dir_ / "src").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::vector<std::uint64_t> buf(1 << 19);  // 4 MiB
    std::uint64_t x = 0x9E3779B97F4A7C15ull;
    for (std::uint64_t done = 0; done < kSize; done += buf.size() * 8) {
      for (auto& w : buf) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w = x;
      }
      ASSERT_EQ(std::fwrite(buf.data(), 8, buf.size(), f), buf.size());
    }
    ASSERT_EQ(std::fclose(f), 0);
  }
  double gen_s = Seconds(t0);
  t0 = std::chrono::steady_clock::now();
  testing::RunResult src_hash = Sh("sha256sum < " + (dir_ / "src").string());
  ASSERT_EQ(src_hash.exit_code, 0) << src_hash.err;
  std::string want = src_hash.out.substr(0, 64);
  double hash_s = Seconds(t0);

  t0 = std::chrono::steady_clock::now();
  testing::RunResult cp =
      testing::Run({"/bin/cp", (dir_ / "src").string(), (Mnt("a") / "big").string()});
  double cp_s = Seconds(t0);
  ASSERT_EQ(cp.exit_code, 0) << cp.err << Logs();

  // The op reaches B on its own; no read of B's until the name is there.
  t0 = std::chrono::steady_clock::now();
  struct stat st {};
  ASSERT_TRUE(WaitFor(
      [&] { return ::stat((Mnt("b") / "big").c_str(), &st) == 0 && st.st_size == (off_t)kSize; },
      30s, 200ms))
      << "B does not show the file: size " << st.st_size << "\n"
      << Logs();
  double appear_s = Seconds(t0);

  t0 = std::chrono::steady_clock::now();
  testing::RunResult cat = Sh("cat " + (Mnt("b") / "big").string() + " | sha256sum");
  double cat_s = Seconds(t0);
  ASSERT_EQ(cat.exit_code, 0) << cat.err << Logs();
  EXPECT_EQ(cat.out.substr(0, 64), want)
      << "the bytes cat reads on B are not the bytes cp wrote on A\n"
      << Logs();

  std::map<std::string, long> rss;
  for (const char* n : {"a", "b", "c"}) rss[n] = PeakRssKib(Pid(n));
  std::cout << fmt::format(
      "[ timing ] 1 GiB: generate {:.1f} s, sha256 {:.1f} s, cp on A {:.1f} s ({:.0f} MiB/s), on B "
      "after "
      "{:.1f} s, cat|sha256sum on B {:.1f} s ({:.0f} MiB/s); peak RSS A (dfsmount) {} MiB, B "
      "(dfsmount) {} "
      "MiB, C (dfsd) {} MiB\n",
      gen_s, hash_s, cp_s, 1024 / cp_s, appear_s, cat_s, 1024 / cat_s, rss["a"] / 1024,
      rss["b"] / 1024, rss["c"] / 1024);
  RecordProperty("cp_seconds", fmt::format("{:.1f}", cp_s));
  RecordProperty("cat_seconds", fmt::format("{:.1f}", cat_s));
  for (const auto& [n, kib] : rss) {
    RecordProperty("peak_rss_kib_" + n, std::to_string(kib));
    EXPECT_GT(kib, 0) << n;
    EXPECT_LT(kib, 256 * 1024) << "node " << n << " peaked at " << kib / 1024 << " MiB";
  }
}

// --- 3. A node killed under its mount --------------------------------------

TEST_F(MountClusterTest, AKilledMountLeavesTheOtherServingAndItsRemountCatchesUp) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replicas=*/2));
  fs::path ma = Mnt("a"), mb = Mnt("b");
  const std::string before1 = Content("before the kill 1", 8 << 20);
  const std::string before2 = Content("before the kill 2", 40000);
  ASSERT_EQ(::mkdir((ma / "dir").c_str(), 0755), 0);
  ASSERT_EQ(WriteContent(ma / "dir" / "before1", before1), 0);
  ASSERT_EQ(WriteContent(ma / "before2", before2), 0);
  // B sees the names and sizes (and reads nothing yet: its kernel caches no
  // data of them).
  struct stat st {};
  ASSERT_TRUE(WaitFor(
      [&] {
        return ::stat((mb / "dir" / "before1").c_str(), &st) == 0 &&
               st.st_size == (off_t)before1.size() && ::stat((mb / "before2").c_str(), &st) == 0 &&
               st.st_size == (off_t)before2.size();
      },
      30s, 200ms))
      << Logs();

  auto chunks = [&](const std::string& n) {
    nlohmann::json j = Status(n);
    return j.is_object() && j["chunks"].is_number() ? j["chunks"].get<int>() : -1;
  };
  std::cout << fmt::format("[ chunks ] before the kill: A holds {}, B {}, C {}\n", chunks("a"),
                           chunks("b"), chunks("c"));
  Kill("a");
  EXPECT_TRUE(Mounted(ma)) << "a killed FUSE server leaves its mount behind";

  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Label(ReadOrError(mb / "dir" / "before1")), Label(before1)) << Logs();
  EXPECT_EQ(Label(ReadOrError(mb / "before2")), Label(before2)) << Logs();
  double read_s = Seconds(t0);

  const std::string after1 = Content("after the kill 1", 5 << 20);
  const std::string after2 = Content("after the kill 2", 1000);
  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(WriteContent(mb / "after1", after1), 0) << Logs();
  EXPECT_EQ(::mkdir((mb / "newdir").c_str(), 0755), 0);
  EXPECT_EQ(WriteContent(mb / "newdir" / "after2", after2), 0) << Logs();
  EXPECT_EQ(::rename((mb / "before2").c_str(), (mb / "dir" / "before2-moved").c_str()), 0);
  double write_s = Seconds(t0);
  EXPECT_EQ(Label(ReadOrError(mb / "after1")), Label(after1));
  std::cout << fmt::format(
      "[ timing ] with A dead: B read 8 MiB + 40 KB in {:.1f} s, wrote 5 MiB + 1 KB in {:.1f} s\n",
      read_s, write_s);

  // A comes back on its data directory, on a fresh mount.
  auto un = testing::Run({"/bin/fusermount3", "-uz", ma.string()});
  ASSERT_EQ(un.exit_code, 0) << un.err;
  ASSERT_TRUE(Start("a")) << Logs();
  t0 = std::chrono::steady_clock::now();
  Tree ta, tb;
  ASSERT_TRUE(
      Converge(&ta, &tb, 30s, [&](const Tree& t) { return t.contents.contains("newdir/after2"); }))
      << "A:\n"
      << ta.Dump() << "B:\n"
      << tb.Dump() << Logs();
  std::cout << fmt::format("[ timing ] A's remount caught up in {:.1f} s\n", Seconds(t0));
  EXPECT_EQ(Label(ta.contents["after1"]), Label(after1));
  EXPECT_EQ(Label(ta.contents["newdir/after2"]), Label(after2));
  EXPECT_EQ(Label(ta.contents["dir/before1"]), Label(before1));
  EXPECT_EQ(Label(ta.contents["dir/before2-moved"]), Label(before2));
  EXPECT_FALSE(ta.entries.contains("before2")) << ta.Dump();
  EXPECT_EQ(ta.entries.size(), 6u) << ta.Dump();
}

// --- 4. A change on A reaches B's kernel caches -----------------------------

TEST_F(MountClusterTest, AnOverwriteOrRenameOnOneMountReachesTheOthersCachesWithinSeconds) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replicas=*/2));
  fs::path ma = Mnt("a"), mb = Mnt("b");
  // Equal sizes, so that only the content says which version B shows.
  const std::string v1 = Content("version 1", 200000), v2 = Content("version 2", 200000);
  ASSERT_EQ(WriteContent(ma / "f", v1), 0);
  auto cat = [&](const fs::path& p) { return testing::Run({"/bin/cat", p.string()}).out; };
  // (The name may show first, empty: the create is an op of its own, the
  // content commits at close.)
  ASSERT_TRUE(WaitFor([&] { return cat(mb / "f") == v1; }, 30s, 100ms))
      << "B shows " << Label(cat(mb / "f")) << "\n"
      << Logs();
  ASSERT_EQ(Label(cat(mb / "f")), Label(v1));  // now from B's page cache

  ASSERT_EQ(WriteContent(ma / "f", v2), 0);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor([&] { return cat(mb / "f") == v2; }, 5s, 50ms))
      << "B still shows " << Label(cat(mb / "f")) << "\n"
      << Logs();
  double overwrite_s = Seconds(t0);

  // A longer version: B's cached size must not cut it short.
  const std::string v3 = Content("version 3", 300000);
  struct stat st {};
  ASSERT_EQ(::stat((mb / "f").c_str(), &st), 0);
  ASSERT_EQ(WriteContent(ma / "f", v3), 0);
  t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor(
      [&] {
        return ::stat((mb / "f").c_str(), &st) == 0 && st.st_size == (off_t)v3.size() &&
               cat(mb / "f") == v3;
      },
      5s, 50ms))
      << "B shows " << Label(cat(mb / "f")) << ", size " << st.st_size << "\n"
      << Logs();
  double grow_s = Seconds(t0);

  // A rename on A: the old name goes away on B, the new one shows v3.
  ASSERT_EQ(::stat((mb / "f").c_str(), &st), 0);  // B's kernel caches the entry
  ASSERT_EQ(::rename((ma / "f").c_str(), (ma / "g").c_str()), 0);
  t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor([&] { return !Exists(mb / "f") && Exists(mb / "g"); }, 5s, 50ms)) << Logs();
  double rename_s = Seconds(t0);
  EXPECT_EQ(Label(cat(mb / "g")), Label(v3));
  errno = 0;
  EXPECT_EQ(::open((mb / "f").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, ENOENT);
  std::cout << fmt::format(
      "[ timing ] B saw the overwrite after {:.2f} s, the longer one after {:.2f} s, the rename "
      "after {:.2f} s\n",
      overwrite_s, grow_s, rename_s);
}

// Close-to-open holds per open, also while another process keeps the file
// open on B: a fresh open sees the new bytes, and the held handle reads one
// whole version, never a mix. (The kernel keeps one size per inode, so a
// handle cannot keep reading a longer old version, as on NFS.)
TEST_F(MountClusterTest, AFreshOpenSeesARemoteOverwriteWhileAnotherHandleIsHeld) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replicas=*/2));
  fs::path ma = Mnt("a"), mb = Mnt("b");
  // A shorter v2: B's kernel takes the new size and reads the old bytes up
  // to it, a torn mix of the two.
  const std::string v1 = Content("version 1", 200000), v2 = Content("version 2", 100000);
  ASSERT_EQ(WriteContent(ma / "f", v1), 0);
  auto cat = [&](const fs::path& p) { return testing::Run({"/bin/cat", p.string()}).out; };
  ASSERT_TRUE(WaitFor([&] { return cat(mb / "f") == v1; }, 30s, 100ms)) << Logs();
  int held = ::open((mb / "f").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(held, 0);

  ASSERT_EQ(WriteContent(ma / "f", v2), 0);
  EXPECT_TRUE(WaitFor([&] { return cat(mb / "f") == v2; }, 10s, 50ms))
      << "a fresh open on B still shows " << Label(cat(mb / "f")) << "\n"
      << Logs();
  std::string snapshot(v1.size(), '\0');
  ssize_t n = ::pread(held, snapshot.data(), snapshot.size(), 0);
  ASSERT_GE(n, 0);
  snapshot.resize(static_cast<std::size_t>(n));
  EXPECT_TRUE(snapshot == v1 || snapshot == v2)
      << "the held handle reads a torn mix: " << Label(snapshot);
  ::close(held);
  EXPECT_EQ(Label(cat(mb / "f")), Label(v2));
}

}  // namespace
}  // namespace dfs

namespace dfs {
namespace {

// What fsync acknowledged is held by the peers when it returns: the writer
// is killed right after its last fsync, with the files still open, and the
// other mount reads every one of them.
TEST_F(MountClusterTest, WhatFsyncAcknowledgedSurvivesTheWriterKilledAtOnce) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replicas=*/2));
  fs::path ma = Mnt("a"), mb = Mnt("b");
  std::vector<std::string> contents;
  std::vector<int> fds;
  for (int i = 0; i < 4; ++i) {
    contents.push_back(Content(fmt::format("fsynced {}", i), 300000 + i));
    int fd = ::open((ma / fmt::format("f{}", i)).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                    0644);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    fds.push_back(fd);
    ASSERT_EQ(::write(fd, contents[i].data(), contents[i].size()),
              static_cast<ssize_t>(contents[i].size()));
    ASSERT_EQ(::fsync(fd), 0) << std::strerror(errno);
  }
  Kill("a");
  for (int fd : fds) ::close(fd);  // the mount is dead: this goes nowhere
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(Label(ReadOrError(mb / fmt::format("f{}", i))), Label(contents[i])) << Logs();
  }
}

// A file whose manifest passes what one op may carry (4 MiB: about 116,000
// refs) commits as pieces and a join, which cross to the other mount through
// the keyless node: 60,000 pages of data between holes are 120,000 refs.
// (Each page repeats one of 251 fills, so only 251 chunks are stored.)
TEST_F(MountClusterTest, AFileWhoseManifestPassesOneOpReachesTheOtherMountInPieces) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replicas=*/2));
  constexpr int kPages = 60000;
  constexpr off_t kStep = 8192;
  const off_t size = (kPages - 1) * kStep + 4096;
  fs::path fa = Mnt("a") / "sparse", fb = Mnt("b") / "sparse";
  int fd = ::open(fa.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  std::vector<char> page(4096);
  for (int i = 0; i < kPages; ++i) {
    std::fill(page.begin(), page.end(), static_cast<char>(1 + i % 251));
    ASSERT_EQ(::pwrite(fd, page.data(), page.size(), i * kStep), 4096) << std::strerror(errno);
  }
  ASSERT_EQ(::fsync(fd), 0) << std::strerror(errno) << Logs();
  ASSERT_EQ(::close(fd), 0) << std::strerror(errno);

  struct stat st {};
  ASSERT_TRUE(WaitFor([&] { return ::stat(fb.c_str(), &st) == 0 && st.st_size == size; }, 30s,
                      100ms))
      << "b sees " << st.st_size << " bytes\n" << Logs();
  std::string back;
  ASSERT_EQ(ReadContent(fb, &back), 0) << Logs();
  ASSERT_EQ(back.size(), static_cast<std::size_t>(size));
  int bad = -1;
  for (int i = 0; i < kPages && bad < 0; ++i) {
    const char fill = static_cast<char>(1 + i % 251);
    const std::size_t at = static_cast<std::size_t>(i * kStep);
    for (std::size_t j = 0; j < 4096 && bad < 0; ++j) {
      if (back[at + j] != fill) bad = i;
    }
    for (std::size_t j = at + 4096; j < std::min(back.size(), at + kStep) && bad < 0; ++j) {
      if (back[j] != 0) bad = i;
    }
  }
  EXPECT_EQ(bad, -1) << "page " << bad << " differs on b";
}

}  // namespace
}  // namespace dfs
