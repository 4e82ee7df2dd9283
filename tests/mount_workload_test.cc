// Applications on dfsmount's read-write mount, through /dev/fuse with a real
// dfsmount process per test (skipped, saying why, without FUSE or root; the
// fixture is tests/mount_fixture.h). WorkloadMountTest: git (200 commits,
// gc, fsck), tar (2500 files, diff -r) and sqlite3 (10,000 rows,
// integrity_check) on the mount, each checked again after a remount (a new
// dfsmount on the same data).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/mount_fixture.h"
#include "tests/test_util.h"

namespace dfs {
namespace {

using namespace testing_mount;  // also brings fs (std::filesystem) and the chrono literals

using WorkloadMountTest = MountFixture;

// ---------------------------------------------------------------------------
// Tools.

TEST_F(WorkloadMountTest, GitMakes200CommitsGcsAndFsckPasses) {
  const char* script = R"SH(
set -e
cd "$1"
git init -q repo
cd repo
g() { git -c user.name=t -c user.email=t@t -c gc.auto=0 "$@"; }
i=1
while [ $i -le 200 ]; do
  echo "change $i" >> "f$((i % 7)).txt"
  if [ $((i % 25)) -eq 0 ]; then
    mkdir -p "dir$i/sub" && echo "$i" > "dir$i/sub/file" && g add -A
  fi
  if [ $i -le 7 ]; then g add -A; fi
  if [ $((i % 40)) -eq 0 ]; then
    g mv "f$((i % 7)).txt" "moved$i.txt" && echo "again $i" > "f$((i % 7)).txt" && g add -A
  fi
  g commit -q -a -m "commit $i"
  i=$((i + 1))
done
test "$(git rev-list --count HEAD)" = 200
g gc -q
git fsck --strict --no-progress
test -z "$(git status --porcelain)"
g checkout -q HEAD~150
g checkout -q -
test "$(git rev-list --count HEAD)" = 200
g fsck --strict --no-progress
)SH";
  auto start = std::chrono::steady_clock::now();
  testing::RunResult r = Sh(script);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_NO_FATAL_FAILURE(Remount());
  r =
      Sh("set -e; cd \"$1/repo\"; git fsck --strict --no-progress; test \"$(git rev-list --count "
         "HEAD)\" = 200; "
         "test -z \"$(git status --porcelain)\"");
  EXPECT_EQ(r.exit_code, 0) << "after the remount: " << r.out << r.err;
  std::cerr << "git workload: "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count()
            << " ms\n";
}

TEST_F(WorkloadMountTest, TarOfThousandsOfFilesExtractsIdentically) {
  fs::path src = dir_ / "src";
  std::mt19937_64 rng(42);
  std::vector<std::string> files;
  // 2500 files in 275 directories (extraction costs some 15-30 ms a file).
  constexpr int kTop = 25;
  for (int d = 0; d < kTop; ++d) {
    for (int s = 0; s < 10; ++s) {
      fs::path leaf = src / fmt::format("d{:02}", d) / fmt::format("s{}", s);
      fs::create_directories(leaf);
      for (int f = 0; f < 10; ++f) {
        fs::path p = leaf / fmt::format("file{}.dat", f);
        std::size_t size = rng() % 3000;
        ASSERT_NO_FATAL_FAILURE(
            Put(p.string(), Str(testing::RandomBytes(size, rng())), f % 3 ? 0644 : 0755));
        files.push_back(p.string());
      }
    }
  }
  // Some symlinks and hard links.
  for (int i = 0; i < 20; ++i) {
    fs::path leaf = src / fmt::format("d{:02}", i) / "s0";
    ASSERT_EQ(::symlink("file1.dat", (leaf / "link").c_str()), 0);
    ASSERT_EQ(::link((leaf / "file2.dat").c_str(), (leaf / "hard").c_str()), 0);
  }
  testing::RunResult r =
      testing::Run({"/usr/bin/tar", "-cf", (dir_ / "src.tar").string(), "-C", src.string(), "."});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(::mkdir(P("x").c_str(), 0755), 0);
  auto start = std::chrono::steady_clock::now();
  std::string laps;
  auto lap = [&](const char* what) {
    auto now = std::chrono::steady_clock::now();
    laps += fmt::format("{} {} ms, ", what,
                        std::chrono::duration_cast<std::chrono::milliseconds>(now - start).count());
    start = now;
  };
  r = testing::Run({"/usr/bin/timeout", "-k", "10", "300", "/usr/bin/tar", "-xf",
                    (dir_ / "src.tar").string(), "-C", P("x")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  lap("extract");
  r = testing::Run({"/usr/bin/diff", "-r", "--no-dereference", src.string(), P("x")});
  EXPECT_EQ(r.exit_code, 0) << r.out.substr(0, 4000) << r.err;
  lap("diff");
  ASSERT_NO_FATAL_FAILURE(Remount());
  r = testing::Run({"/usr/bin/diff", "-r", "--no-dereference", src.string(), P("x")});
  EXPECT_EQ(r.exit_code, 0) << "after the remount: " << r.out.substr(0, 4000) << r.err;
  lap("remount and diff");

  // Modes, times, link counts and symlinks as tar set them.
  int checked = 0;
  int failed_before =
      ::testing::UnitTest::GetInstance()->current_test_info()->result()->total_part_count();
  for (auto it = fs::recursive_directory_iterator(src); it != fs::recursive_directory_iterator();
       ++it) {
    std::string rel = it->path().lexically_relative(src).string();
    struct stat a = Lstat(it->path().string()), b = Lstat(P("x/" + rel));
    EXPECT_EQ(a.st_mode, b.st_mode) << rel;
    EXPECT_EQ(a.st_mtim.tv_sec, b.st_mtim.tv_sec) << rel;
    if (!S_ISDIR(a.st_mode)) {
      EXPECT_EQ(a.st_nlink, b.st_nlink) << rel;
      EXPECT_EQ(a.st_size, b.st_size) << rel;
    }
    ++checked;
    if (::testing::UnitTest::GetInstance()->current_test_info()->result()->total_part_count() >
        failed_before)
      break;
  }
  EXPECT_EQ(checked, static_cast<int>(files.size()) + kTop * 11 + 40);
  lap("stat walk");
  std::cerr << "tar of " << files.size() << " files: " << laps << "\n";
}

TEST_F(WorkloadMountTest, Sqlite3KeepsTenThousandRowsIntact) {
  const char* script = R"SH(
set -e
cd "$1"
sqlite3 rollback.db <<'EOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000)
INSERT INTO t SELECT x, hex(randomblob(40)), x * 7 FROM c;
COMMIT;
CREATE INDEX t_n ON t(n);
UPDATE t SET v = 'even' WHERE id % 2 = 0;
DELETE FROM t WHERE id % 1000 = 1;
INSERT INTO t(id, v, n) SELECT id + 20000, v, n FROM t WHERE id % 1000 = 2;
EOF
echo "rollback: $(sqlite3 rollback.db 'PRAGMA integrity_check;') $(sqlite3 rollback.db 'SELECT count(*) FROM t;')"
sqlite3 wal.db <<'EOF'
PRAGMA journal_mode=WAL;
CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000)
INSERT INTO t SELECT x, randomblob(100) FROM c;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
EOF
echo "wal: $(sqlite3 wal.db 'PRAGMA integrity_check;') $(sqlite3 wal.db 'SELECT count(*) FROM t;')"
)SH";
  testing::RunResult r = Sh(script);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("rollback: ok 10000\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wal: ok 10000\n"), std::string::npos) << r.out;
  std::vector<std::string> names = List(mnt_.string());
  EXPECT_EQ(std::count(names.begin(), names.end(), "rollback.db-journal"), 0)
      << "the journal is gone";
  ASSERT_NO_FATAL_FAILURE(Remount());
  r =
      Sh("cd \"$1\" && for db in rollback wal; do sqlite3 $db.db 'PRAGMA integrity_check; SELECT "
         "count(*) FROM t;'; done");
  EXPECT_EQ(r.out, "ok\n10000\nok\n10000\n") << "after the remount: " << r.err;
}

}  // namespace
}  // namespace dfs
