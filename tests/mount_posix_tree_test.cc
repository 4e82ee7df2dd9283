// The POSIX behaviour of dfsmount's read-write mount for names and
// attributes, through /dev/fuse with a real dfsmount process per test
// (skipped, saying why, without FUSE or root; the fixture is
// tests/mount_fixture.h). PosixMountTest, one behaviour per test: directory
// moves and removal, hard and symbolic links, modes, times, extended
// attributes, name lengths, rename rules, FIFOs and devices, ctime and
// directory mtime, listings that change while read, other owners.
// (tests/mount_posix_test.cc holds the PosixMountTest cases of file
// contents.)
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/mount_fixture.h"
#include "tests/test_util.h"

namespace dfs {
namespace {

using namespace testing_mount;  // also brings fs (std::filesystem) and the chrono literals

using PosixMountTest = MountFixture;

TEST_F(PosixMountTest, MkdirParentsMoveADirectoryWithItsContentsAndRemoveRecursively) {
  testing::RunResult r = testing::Run({"/bin/mkdir", "-p", P("a/b/c/d")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = testing::Run({"/bin/mkdir", "-p", P("a/b/c/d")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_NO_FATAL_FAILURE(Put(P("a/b/f1"), "one"));
  ASSERT_NO_FATAL_FAILURE(Put(P("a/b/c/f2"), "two"));
  ASSERT_NO_FATAL_FAILURE(Put(P("a/b/c/d/f3"), "three"));
  ASSERT_EQ(::mkdir(P("a/b/e").c_str(), 0755), 0);
  EXPECT_EQ(Lstat(P("a")).st_nlink, 3u);
  EXPECT_EQ(Lstat(P("a/b")).st_nlink, 4u);  // ., c, e

  r = testing::Run({"/bin/mv", P("a/b"), P("moved")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(P("a/b")));
  EXPECT_EQ(ReadAll(P("moved/f1")), "one");
  EXPECT_EQ(ReadAll(P("moved/c/f2")), "two");
  EXPECT_EQ(ReadAll(P("moved/c/d/f3")), "three");
  EXPECT_EQ(List(P("moved")), (std::vector<std::string>{"c", "e", "f1"}));
  EXPECT_EQ(Lstat(P("a")).st_nlink, 2u);
  EXPECT_EQ(Lstat(P("")).st_nlink, 4u);  // ., a, moved

  // Into a directory, and (refused) under itself.
  ASSERT_EQ(::rename(P("moved").c_str(), P("a/again").c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(ReadAll(P("a/again/c/d/f3")), "three");
  EXPECT_EQ(Err(::rename(P("a").c_str(), P("a/again/c/x").c_str())), EINVAL);
  EXPECT_EQ(Err(::rmdir(P("a").c_str())), ENOTEMPTY);

  r = testing::Run({"/bin/rm", "-r", P("a")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(P("a")));
  EXPECT_TRUE(List(mnt_.string()).empty());
  EXPECT_EQ(Lstat(P("")).st_nlink, 2u);
}

TEST_F(PosixMountTest, HardLinksShareOneInodeAndCountNames) {
  std::string f = P("f"), g = P("g");
  ASSERT_NO_FATAL_FAILURE(Put(f, "shared bytes"));
  testing::RunResult ln = testing::Run({"/bin/ln", f, g});
  ASSERT_EQ(ln.exit_code, 0) << ln.err;
  ASSERT_EQ(::mkdir(P("sub").c_str(), 0755), 0);
  ASSERT_EQ(::link(g.c_str(), P("sub/h").c_str()), 0) << std::strerror(errno);
  struct stat sf = Lstat(f), sg = Lstat(g), sh = Lstat(P("sub/h"));
  EXPECT_EQ(sf.st_nlink, 3u);
  EXPECT_EQ(sg.st_nlink, 3u);
  EXPECT_EQ(sh.st_nlink, 3u);
  EXPECT_EQ(sf.st_ino, sg.st_ino);
  EXPECT_EQ(sf.st_ino, sh.st_ino);

  // A write through one name shows through the others.
  int fd = ::open(g.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, " and more", 9), 9);
  ASSERT_EQ(::close(fd), 0);
  EXPECT_EQ(ReadAll(f), "shared bytes and more");
  EXPECT_EQ(ReadAll(P("sub/h")), "shared bytes and more");

  ASSERT_EQ(::unlink(f.c_str()), 0);
  EXPECT_EQ(Lstat(g).st_nlink, 2u);
  ASSERT_EQ(::unlink(P("sub/h").c_str()), 0);
  EXPECT_EQ(Lstat(g).st_nlink, 1u);
  EXPECT_EQ(ReadAll(g), "shared bytes and more");
  EXPECT_EQ(List(mnt_.string()), (std::vector<std::string>{"g", "sub"}));

  EXPECT_EQ(Err(::link(P("sub").c_str(), P("dirlink").c_str())), EPERM);
  EXPECT_EQ(Err(::link(g.c_str(), P("sub").c_str())), EEXIST);
  EXPECT_EQ(Err(::link(P("missing").c_str(), P("x").c_str())), ENOENT);
  // A hard link to a symlink is a link to the symlink itself.
  ASSERT_EQ(::symlink("g", P("sym").c_str()), 0);
  ASSERT_EQ(::link(P("sym").c_str(), P("sym2").c_str()), 0) << std::strerror(errno);
  struct stat ss = Lstat(P("sym2"));
  EXPECT_TRUE(S_ISLNK(ss.st_mode));
  EXPECT_EQ(ss.st_nlink, 2u);
}

TEST_F(PosixMountTest, RenameOverOneOfSeveralLinksKeepsTheLinkCountsExact) {
  std::string a = P("a"), b = P("b"), c = P("c"), o = P("o");
  ASSERT_NO_FATAL_FAILURE(Put(a, "A"));
  ASSERT_EQ(::link(a.c_str(), b.c_str()), 0);
  ASSERT_EQ(::link(a.c_str(), c.c_str()), 0);
  EXPECT_EQ(Lstat(a).st_nlink, 3u);
  ASSERT_NO_FATAL_FAILURE(Put(o, "O"));

  ASSERT_EQ(::rename(o.c_str(), b.c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(Lstat(a).st_nlink, 2u);
  EXPECT_EQ(Lstat(c).st_nlink, 2u);
  EXPECT_EQ(Lstat(b).st_nlink, 1u);
  EXPECT_EQ(ReadAll(b), "O");
  EXPECT_EQ(ReadAll(a), "A");

  // Two names of one inode: rename succeeds and does nothing (POSIX).
  ASSERT_EQ(::rename(a.c_str(), c.c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(List(mnt_.string()), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(Lstat(a).st_nlink, 2u);

  ASSERT_EQ(::rename(c.c_str(), P("d").c_str()), 0);
  EXPECT_EQ(Lstat(a).st_nlink, 2u);
  EXPECT_EQ(Lstat(P("d")).st_nlink, 2u);
  ASSERT_EQ(::unlink(a.c_str()), 0);
  EXPECT_EQ(Lstat(P("d")).st_nlink, 1u);
  EXPECT_EQ(ReadAll(P("d")), "A");
  EXPECT_EQ(List(mnt_.string()), (std::vector<std::string>{"b", "d"}));
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(Lstat(P("d")).st_nlink, 1u);
  EXPECT_EQ(ReadAll(P("d")), "A");
  EXPECT_EQ(ReadAll(P("b")), "O");
}

TEST_F(PosixMountTest, SymlinksKeepTheirTargetsUpToPathMax) {
  std::string l = P("l");
  ASSERT_EQ(::symlink("target.txt", l.c_str()), 0) << std::strerror(errno);
  char buf[8192];
  ssize_t n = ::readlink(l.c_str(), buf, sizeof(buf));
  ASSERT_EQ(n, 10);
  EXPECT_EQ(std::string(buf, 10), "target.txt");
  struct stat st = Lstat(l);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_size, 10);
  struct stat through {};
  EXPECT_EQ(Err(::stat(l.c_str(), &through)), ENOENT);  // dangling
  ASSERT_NO_FATAL_FAILURE(Put(P("target.txt"), "t"));
  EXPECT_EQ(ReadAll(P("target.txt")), "t");
  int fd = ::open(l.c_str(), O_RDONLY);  // followed
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::read(fd, buf, 10), 1);
  ::close(fd);
  ASSERT_EQ(::mkdir(P("sub").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("../target.txt", P("sub/up").c_str()), 0);
  fd = ::open(P("sub/up").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::close(fd);
  testing::RunResult ln = testing::Run({"/bin/ln", "-s", "sub", P("dirlink")});
  ASSERT_EQ(ln.exit_code, 0) << ln.err;
  ln = testing::Run({"/bin/readlink", P("dirlink")});
  EXPECT_EQ(ln.out, "sub\n");
  EXPECT_EQ(List(P("dirlink")), std::vector<std::string>{"up"});

  std::string longest;
  for (int i = 0; longest.size() < 4095; ++i) longest += fmt::format("component{}/", i);
  longest.resize(4095);
  ASSERT_EQ(::symlink(longest.c_str(), P("long").c_str()), 0) << std::strerror(errno);
  n = ::readlink(P("long").c_str(), buf, sizeof(buf));
  ASSERT_EQ(n, 4095);
  EXPECT_EQ(std::string(buf, 4095), longest);
  EXPECT_EQ(Lstat(P("long")).st_size, 4095);
  EXPECT_EQ(Err(::symlink((longest + "x").c_str(), P("toolong").c_str())), ENAMETOOLONG);
  EXPECT_EQ(Err(::readlink(P("target.txt").c_str(), buf, sizeof(buf))), EINVAL);
  EXPECT_EQ(Err(::symlink("x", P("l").c_str())), EEXIST);
}

TEST_F(PosixMountTest, ChmodAndCreationModesAreExact) {
  std::string f = P("f");
  ASSERT_NO_FATAL_FAILURE(Put(f, "x", 0644));
  for (mode_t m : {0751, 04755, 02711, 0, 0600, 01644, 07777}) {
    ASSERT_EQ(::chmod(f.c_str(), m), 0) << std::oct << m;
    EXPECT_EQ(Lstat(f).st_mode, S_IFREG | m) << std::oct << m;
  }
  int fd = ::open(f.c_str(), O_RDONLY);
  ASSERT_EQ(::fchmod(fd, 0440), 0);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_mode, S_IFREG | 0440);
  ::close(fd);
  testing::RunResult r = testing::Run({"/bin/chmod", "u+w,o+r", f});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lstat(f).st_mode, S_IFREG | 0644);

  // Creation: the requested mode minus the umask.
  ::umask(027);
  ASSERT_EQ(::mkdir(P("d").c_str(), 0777), 0);
  EXPECT_EQ(Lstat(P("d")).st_mode, S_IFDIR | 0750);
  ASSERT_EQ(::mkdir(P("sticky").c_str(), 01777), 0);
  EXPECT_EQ(Lstat(P("sticky")).st_mode, S_IFDIR | 01750);
  fd = ::open(P("new").c_str(), O_CREAT | O_WRONLY, 0666);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_EQ(Lstat(P("new")).st_mode, S_IFREG | 0640);
  ::umask(0);
  ASSERT_EQ(::mkdir(P("open").c_str(), 0777), 0);
  EXPECT_EQ(Lstat(P("open")).st_mode, S_IFDIR | 0777);
  ASSERT_EQ(::mkdir(P("odd").c_str(), 0501), 0);
  EXPECT_EQ(Lstat(P("odd")).st_mode, S_IFDIR | 0501);
  ::umask(022);
  ASSERT_EQ(::chmod(P("d").c_str(), 02755), 0);
  EXPECT_EQ(Lstat(P("d")).st_mode, S_IFDIR | 02755);
  // A symlink's mode is fixed; chmod through it changes the target.
  ASSERT_EQ(::symlink("f", P("l").c_str()), 0);
  ASSERT_EQ(::chmod(P("l").c_str(), 0604), 0);
  EXPECT_EQ(Lstat(f).st_mode, S_IFREG | 0604);
  EXPECT_EQ(Lstat(P("l")).st_mode, S_IFLNK | 0777);
}

TEST_F(PosixMountTest, TouchSetsModificationAndAccessTimes) {
  std::string f = P("f");
  ASSERT_NO_FATAL_FAILURE(Put(f, "x"));
  testing::RunResult r = testing::Run({"/usr/bin/touch", "-d", "@981173106.5", f});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st = Lstat(f);
  EXPECT_EQ(Ns(st.st_mtim), 981173106500000000);
  EXPECT_EQ(Ns(st.st_atim), 981173106500000000);
  r = testing::Run({"/usr/bin/touch", "-a", "-d", "@1000000000", f});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  st = Lstat(f);
  EXPECT_EQ(Ns(st.st_atim), 1000000000000000000);
  EXPECT_EQ(Ns(st.st_mtim), 981173106500000000);

  timespec ts[2] = {{100, 1}, {200, 999999999}};
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), ts, 0), 0);
  st = Lstat(f);
  EXPECT_EQ(Ns(st.st_atim), 100000000001);
  EXPECT_EQ(Ns(st.st_mtim), 200999999999);
  timespec omit[2] = {{0, UTIME_OMIT}, {300, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), omit, 0), 0);
  st = Lstat(f);
  EXPECT_EQ(Ns(st.st_atim), 100000000001);
  EXPECT_EQ(Ns(st.st_mtim), 300000000000);
  // Before 1970 too.
  timespec old[2] = {{-86400, 5}, {-1, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), old, 0), 0);
  st = Lstat(f);
  EXPECT_EQ(Ns(st.st_atim), -86400 * 1000000000ll + 5);
  EXPECT_EQ(Ns(st.st_mtim), -1000000000ll);
  std::int64_t before = NowNs();
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), nullptr, 0), 0);
  std::int64_t after = NowNs();
  st = Lstat(f);
  EXPECT_GE(Ns(st.st_mtim), before);
  EXPECT_LE(Ns(st.st_mtim), after);
  EXPECT_GE(Ns(st.st_atim), before);
  EXPECT_LE(Ns(st.st_atim), after);

  // A write moves mtime to now.
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), ts, 0), 0);
  before = NowNs();
  int fd = ::open(f.c_str(), O_WRONLY | O_APPEND);
  ASSERT_EQ(::write(fd, "y", 1), 1);
  ASSERT_EQ(::close(fd), 0);
  st = Lstat(f);
  EXPECT_GE(Ns(st.st_mtim), before);
  EXPECT_LE(Ns(st.st_mtim), NowNs());

  // On a symlink itself, when the file system supports it.
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), ts, 0), 0);
  ASSERT_EQ(::symlink("f", P("l").c_str()), 0);
  timespec lt[2] = {{5000, 6}, {7000, 8}};
  if (::utimensat(AT_FDCWD, P("l").c_str(), lt, AT_SYMLINK_NOFOLLOW) == 0) {
    struct stat ls = Lstat(P("l"));
    EXPECT_EQ(Ns(ls.st_atim), 5000000000006);
    EXPECT_EQ(Ns(ls.st_mtim), 7000000000008);
    st = Lstat(f);
    EXPECT_EQ(Ns(st.st_atim), 100000000001) << "the target is left alone";
    EXPECT_EQ(Ns(st.st_mtim), 200999999999);
  } else {
    EXPECT_TRUE(errno == EOPNOTSUPP || errno == EPERM) << std::strerror(errno);
  }
  r = testing::Run({"/usr/bin/touch", "-h", "-d", "@1234567890", P("l")});
  if (r.exit_code == 0) {
    EXPECT_EQ(Lstat(P("l")).st_mtim.tv_sec, 1234567890);
  }
  // touch on a new name creates it.
  r = testing::Run({"/usr/bin/touch", P("created")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lstat(P("created")).st_size, 0);
}

TEST_F(PosixMountTest, ExtendedAttributesFollowSetxattrSemantics) {
  std::string f = P("f");
  ASSERT_NO_FATAL_FAILURE(Put(f, "x"));
  const char* v1 = "value one";
  ASSERT_EQ(::setxattr(f.c_str(), "user.one", v1, std::strlen(v1), 0), 0) << std::strerror(errno);
  std::string v2 = Str(testing::RandomBytes(4000, 9));
  ASSERT_EQ(::setxattr(f.c_str(), "user.two", v2.data(), v2.size(), XATTR_CREATE), 0);
  ASSERT_EQ(::setxattr(f.c_str(), "user.empty", "", 0, 0), 0);

  EXPECT_EQ(::getxattr(f.c_str(), "user.one", nullptr, 0), static_cast<ssize_t>(std::strlen(v1)));
  char buf[8192];
  ssize_t n = ::getxattr(f.c_str(), "user.two", buf, sizeof(buf));
  ASSERT_EQ(n, 4000);
  EXPECT_TRUE(std::string(buf, 4000) == v2);
  EXPECT_EQ(::getxattr(f.c_str(), "user.empty", buf, sizeof(buf)), 0);
  EXPECT_EQ(Err(::getxattr(f.c_str(), "user.two", buf, 10)), ERANGE);
  EXPECT_EQ(Err(::getxattr(f.c_str(), "user.none", buf, sizeof(buf))), ENODATA);

  EXPECT_EQ(Err(::setxattr(f.c_str(), "user.one", "z", 1, XATTR_CREATE)), EEXIST);
  EXPECT_EQ(Err(::setxattr(f.c_str(), "user.none", "z", 1, XATTR_REPLACE)), ENODATA);
  ASSERT_EQ(::setxattr(f.c_str(), "user.one", "replaced", 8, XATTR_REPLACE), 0);
  n = ::getxattr(f.c_str(), "user.one", buf, sizeof(buf));
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0))), "replaced");

  ssize_t len = ::listxattr(f.c_str(), nullptr, 0);
  ASSERT_GT(len, 0);
  n = ::listxattr(f.c_str(), buf, sizeof(buf));
  ASSERT_EQ(n, len);
  std::vector<std::string> names;
  for (ssize_t at = 0; at < n; at += static_cast<ssize_t>(std::strlen(buf + at)) + 1)
    names.emplace_back(buf + at);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"user.empty", "user.one", "user.two"}));
  EXPECT_EQ(Err(::listxattr(f.c_str(), buf, 3)), ERANGE);

  ASSERT_EQ(::removexattr(f.c_str(), "user.one"), 0);
  EXPECT_EQ(Err(::getxattr(f.c_str(), "user.one", buf, sizeof(buf))), ENODATA);
  EXPECT_EQ(Err(::removexattr(f.c_str(), "user.one")), ENODATA);
  EXPECT_EQ(::listxattr(f.c_str(), buf, sizeof(buf)),
            static_cast<ssize_t>(std::strlen("user.empty") + 1 + std::strlen("user.two") + 1));

  // On directories too; a value at the limit; and a content rewrite keeps them.
  ASSERT_EQ(::mkdir(P("d").c_str(), 0755), 0);
  std::string max = Str(testing::RandomBytes(65536, 10));
  ASSERT_EQ(::setxattr(P("d").c_str(), "user.max", max.data(), max.size(), 0), 0)
      << std::strerror(errno);
  std::vector<char> big(70000);
  EXPECT_EQ(::getxattr(P("d").c_str(), "user.max", big.data(), big.size()), 65536);
  EXPECT_TRUE(std::string(big.data(), 65536) == max);
  ASSERT_NO_FATAL_FAILURE(Put(f, "rewritten"));
  EXPECT_EQ(::getxattr(f.c_str(), "user.two", nullptr, 0), 4000);
  // And through a hard link they are the inode's.
  ASSERT_EQ(::link(f.c_str(), P("g").c_str()), 0);
  EXPECT_EQ(::getxattr(P("g").c_str(), "user.two", nullptr, 0), 4000);
}

// POSIX ACLs and security-module labels would be stored but not enforced:
// they are refused as unsupported, which also makes `ls -l` stop asking for
// them after the first file. File capabilities are kept (the kernel reads
// them through getxattr).
TEST_F(PosixMountTest, AclsAndLabelsAreUnsupportedCapabilitiesAreKept) {
  const std::string f = P("f");
  ASSERT_NO_FATAL_FAILURE(Put(f, "x"));
  char buf[64];
  // A well-formed access ACL (user::rw- group::r-- other::r--), v2 format.
  const std::uint8_t acl[] = {2, 0, 0, 0,                          // version
                              0x01, 0, 06, 0, 0xff, 0xff, 0xff, 0xff,  // USER_OBJ rw
                              0x04, 0, 04, 0, 0xff, 0xff, 0xff, 0xff,  // GROUP_OBJ r
                              0x20, 0, 04, 0, 0xff, 0xff, 0xff, 0xff};  // OTHER r
  for (const char* name : {"system.posix_acl_access", "security.selinux", "security.SMACK64"}) {
    EXPECT_EQ(Err(::getxattr(f.c_str(), name, buf, sizeof(buf))), EOPNOTSUPP) << name;
    EXPECT_EQ(Err(::setxattr(f.c_str(), name, acl, sizeof(acl), 0)), EOPNOTSUPP) << name;
  }
  EXPECT_EQ(Err(::removexattr(f.c_str(), "security.selinux")), EOPNOTSUPP);
  EXPECT_EQ(Err(::getxattr(f.c_str(), "security.capability", buf, sizeof(buf))), ENODATA);
  // vfs_cap_data revision 2: magic, then permitted/inheritable words.
  const std::uint8_t cap[20] = {0, 0, 0, 2, 0x00, 0x04, 0, 0};  // cap_net_bind_service
  ASSERT_EQ(::setxattr(f.c_str(), "security.capability", cap, sizeof(cap), 0), 0)
      << std::strerror(errno);
  EXPECT_EQ(::getxattr(f.c_str(), "security.capability", buf, sizeof(buf)), 20);
  ssize_t n = ::listxattr(f.c_str(), buf, sizeof(buf));
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n)), std::string("security.capability\0", 20));
}

TEST_F(PosixMountTest, NamesOf255BytesWorkAnd256AreTooLong) {
  std::string n255(255, 'n'), n256(256, 'n');
  int fd = ::open(P(n255).c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::write(fd, "long", 4), 4);
  ASSERT_EQ(::close(fd), 0);
  EXPECT_EQ(ReadAll(P(n255)), "long");
  EXPECT_EQ(Err(::open(P(n256).c_str(), O_CREAT | O_WRONLY, 0644)), ENAMETOOLONG);
  EXPECT_EQ(List(mnt_.string()), std::vector<std::string>{n255});

  std::string d255(255, 'd');
  ASSERT_EQ(::mkdir(P(d255).c_str(), 0755), 0) << std::strerror(errno);
  EXPECT_EQ(Err(::mkdir(P(std::string(256, 'd')).c_str(), 0755)), ENAMETOOLONG);
  ASSERT_NO_FATAL_FAILURE(Put(P(d255 + "/" + n255), "deep"));
  EXPECT_EQ(ReadAll(P(d255 + "/" + n255)), "deep");

  std::string r255(255, 'r');
  ASSERT_EQ(::rename(P(n255).c_str(), P(r255).c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(ReadAll(P(r255)), "long");
  EXPECT_EQ(Err(::rename(P(r255).c_str(), P(std::string(256, 'r')).c_str())), ENAMETOOLONG);
  EXPECT_EQ(ReadAll(P(r255)), "long");
  EXPECT_EQ(Err(::link(P(r255).c_str(), P(n256).c_str())), ENAMETOOLONG);
  EXPECT_EQ(Err(::symlink("x", P(n256).c_str())), ENAMETOOLONG);
  EXPECT_EQ(Err(::mknod(P(n256).c_str(), S_IFIFO | 0644, 0)), ENAMETOOLONG);
  ASSERT_EQ(::symlink("x", P(std::string(255, 's')).c_str()), 0);
  // Multibyte: 127 two-byte characters and one more byte.
  std::string utf;
  for (int i = 0; i < 127; ++i) utf += "\xc3\xa9";
  utf += "x";
  ASSERT_EQ(utf.size(), 255u);
  ASSERT_NO_FATAL_FAILURE(Put(P(utf), "utf"));
  EXPECT_EQ(Err(::open(P(utf + "y").c_str(), O_CREAT | O_WRONLY, 0644)), ENAMETOOLONG);
  EXPECT_EQ(List(mnt_.string()),
            (std::vector<std::string>{d255, r255, std::string(255, 's'), utf}));
}

TEST_F(PosixMountTest, RenameFollowsPosixRulesAndRenameat2Flags) {
  ASSERT_EQ(::mkdir(P("full").c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(Put(P("full/x"), "x"));
  ASSERT_EQ(::mkdir(P("empty").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(P("src").c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(Put(P("src/inside"), "inside"));
  ASSERT_NO_FATAL_FAILURE(Put(P("f"), "f"));
  ASSERT_NO_FATAL_FAILURE(Put(P("g"), "g"));

  EXPECT_EQ(Err(::rename(P("src").c_str(), P("full").c_str())), ENOTEMPTY);
  EXPECT_EQ(Err(::rename(P("src").c_str(), P("f").c_str())), ENOTDIR);
  EXPECT_EQ(Err(::rename(P("f").c_str(), P("empty").c_str())), EISDIR);
  EXPECT_EQ(Err(::rename(P("src").c_str(), P("src/sub").c_str())), EINVAL);
  EXPECT_EQ(Err(::rename(P("missing").c_str(), P("h").c_str())), ENOENT);
  EXPECT_EQ(Err(::rename(P("f").c_str(), P("nodir/h").c_str())), ENOENT);
  EXPECT_EQ(Err(::rename(P("f").c_str(), P("g/h").c_str())), ENOTDIR);
  EXPECT_EQ(ReadAll(P("f")), "f");
  EXPECT_EQ(ReadAll(P("full/x")), "x");
  ASSERT_EQ(::rename(P("f").c_str(), P("f").c_str()), 0);
  EXPECT_EQ(ReadAll(P("f")), "f");

  // A directory over an empty one.
  ASSERT_EQ(::rename(P("src").c_str(), P("empty").c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(ReadAll(P("empty/inside")), "inside");
  EXPECT_FALSE(fs::exists(P("src")));
  EXPECT_EQ(Lstat(P("")).st_nlink, 4u);  // ., full, empty
  // A file over a file.
  ASSERT_EQ(::rename(P("g").c_str(), P("f").c_str()), 0);
  EXPECT_EQ(ReadAll(P("f")), "g");
  EXPECT_FALSE(fs::exists(P("g")));

  // RENAME_NOREPLACE.
  ASSERT_NO_FATAL_FAILURE(Put(P("g"), "g2"));
  EXPECT_EQ(Err(Renameat2(P("g"), P("f"), RENAME_NOREPLACE)), EEXIST);
  EXPECT_EQ(Err(Renameat2(P("g"), P("full"), RENAME_NOREPLACE)), EEXIST);
  EXPECT_EQ(ReadAll(P("f")), "g");
  ASSERT_EQ(Renameat2(P("g"), P("h"), RENAME_NOREPLACE), 0) << std::strerror(errno);
  EXPECT_EQ(ReadAll(P("h")), "g2");

  // RENAME_EXCHANGE: a file and a directory trade places.
  ASSERT_EQ(Renameat2(P("h"), P("full"), RENAME_EXCHANGE), 0) << std::strerror(errno);
  EXPECT_EQ(ReadAll(P("full")), "g2");
  EXPECT_EQ(ReadAll(P("h/x")), "x");
  EXPECT_TRUE(S_ISDIR(Lstat(P("h")).st_mode));
  EXPECT_TRUE(S_ISREG(Lstat(P("full")).st_mode));
  // Across directories.
  ASSERT_EQ(Renameat2(P("f"), P("h/x"), RENAME_EXCHANGE), 0) << std::strerror(errno);
  EXPECT_EQ(ReadAll(P("f")), "x");
  EXPECT_EQ(ReadAll(P("h/x")), "g");
  EXPECT_EQ(Err(Renameat2(P("f"), P("nothing"), RENAME_EXCHANGE)), ENOENT);
  EXPECT_EQ(Err(Renameat2(P("f"), P("h"), RENAME_EXCHANGE | RENAME_NOREPLACE)), EINVAL);
  EXPECT_EQ(List(mnt_.string()), (std::vector<std::string>{"empty", "f", "full", "h"}));
}

TEST_F(PosixMountTest, MknodMakesFifosDevicesAndRegularFiles) {
  ASSERT_EQ(::mkfifo(P("fifo").c_str(), 0640), 0) << std::strerror(errno);
  struct stat st = Lstat(P("fifo"));
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_size, 0);
  // The kernel runs the pipe.
  int fd = ::open(P("fifo").c_str(), O_RDWR | O_NONBLOCK);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::write(fd, "ping", 4), 4);
  char buf[8];
  EXPECT_EQ(::read(fd, buf, sizeof(buf)), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
  ::close(fd);

  ASSERT_EQ(::mknod(P("reg").c_str(), S_IFREG | 0600, 0), 0) << std::strerror(errno);
  st = Lstat(P("reg"));
  EXPECT_EQ(st.st_mode, S_IFREG | 0600);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(ReadAll(P("reg")), "");
  ASSERT_EQ(::mknod(P("null").c_str(), S_IFCHR | 0644, makedev(1, 3)), 0) << std::strerror(errno);
  st = Lstat(P("null"));
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
  ASSERT_EQ(::mknod(P("blk").c_str(), S_IFBLK | 0600, makedev(7, 9)), 0);
  EXPECT_EQ(Lstat(P("blk")).st_rdev, makedev(7, 9));
  ASSERT_EQ(::mknod(P("sock").c_str(), S_IFSOCK | 0600, 0), 0);
  EXPECT_TRUE(S_ISSOCK(Lstat(P("sock")).st_mode));
  EXPECT_EQ(Err(::mkfifo(P("fifo").c_str(), 0640)), EEXIST);
  // Renamed and removed like any name.
  ASSERT_EQ(::rename(P("fifo").c_str(), P("fifo2").c_str()), 0);
  EXPECT_TRUE(S_ISFIFO(Lstat(P("fifo2")).st_mode));
  ASSERT_EQ(::unlink(P("fifo2").c_str()), 0);
  EXPECT_EQ(List(mnt_.string()), (std::vector<std::string>{"blk", "null", "reg", "sock"}));
}

TEST_F(PosixMountTest, CtimeMovesOnChmodLinkRenameWriteAndXattr) {
  std::string f = P("f");
  ASSERT_NO_FATAL_FAILURE(Put(f, "x"));
  auto ctime = [&](const std::string& p) { return Ns(Lstat(p).st_ctim); };
  auto pause = [] { std::this_thread::sleep_for(20ms); };
  std::int64_t c0 = ctime(f);
  std::int64_t m0 = Ns(Lstat(f).st_mtim);
  pause();
  ASSERT_EQ(::chmod(f.c_str(), 0600), 0);
  std::int64_t c1 = ctime(f);
  EXPECT_GT(c1, c0) << "chmod";
  EXPECT_EQ(Ns(Lstat(f).st_mtim), m0) << "chmod leaves mtime";
  pause();
  ASSERT_EQ(::link(f.c_str(), P("g").c_str()), 0);
  std::int64_t c2 = ctime(f);
  EXPECT_GT(c2, c1) << "link";
  pause();
  ASSERT_EQ(::rename(P("g").c_str(), P("h").c_str()), 0);
  std::int64_t c3 = ctime(f);
  EXPECT_GT(c3, c2) << "rename";
  pause();
  int fd = ::open(f.c_str(), O_WRONLY | O_APPEND);
  ASSERT_EQ(::write(fd, "y", 1), 1);
  ASSERT_EQ(::close(fd), 0);
  std::int64_t c4 = ctime(f);
  EXPECT_GT(c4, c3) << "write";
  pause();
  ASSERT_EQ(::setxattr(f.c_str(), "user.a", "b", 1, 0), 0);
  std::int64_t c5 = ctime(f);
  EXPECT_GT(c5, c4) << "setxattr";
  pause();
  ASSERT_EQ(::unlink(P("h").c_str()), 0);
  std::int64_t c6 = ctime(f);
  EXPECT_GT(c6, c5) << "unlink of another name";
  pause();
  ASSERT_EQ(::truncate(f.c_str(), 0), 0);
  EXPECT_GT(ctime(f), c6) << "truncate";
  // A directory's ctime moves when a name is added to it.
  ASSERT_EQ(::mkdir(P("d").c_str(), 0755), 0);
  std::int64_t d0 = ctime(P("d"));
  pause();
  ASSERT_NO_FATAL_FAILURE(Put(P("d/x"), "x"));
  EXPECT_GT(ctime(P("d")), d0) << "create in a directory";
  // And its mtime, on each change of its names.
  auto mtime = [&](const std::string& p) { return Ns(Lstat(p).st_mtim); };
  std::int64_t m1 = mtime(P("d"));
  pause();
  ASSERT_EQ(::rename(P("d/x").c_str(), P("d/y").c_str()), 0);
  std::int64_t m2 = mtime(P("d"));
  EXPECT_GT(m2, m1) << "rename in a directory";
  pause();
  ASSERT_EQ(::rename(P("d/y").c_str(), P("y").c_str()), 0);
  std::int64_t m3 = mtime(P("d"));
  EXPECT_GT(m3, m2) << "rename out of a directory";
  pause();
  ASSERT_EQ(::link(P("y").c_str(), P("d/z").c_str()), 0);
  std::int64_t m4 = mtime(P("d"));
  EXPECT_GT(m4, m3) << "link into a directory";
  pause();
  ASSERT_EQ(::unlink(P("d/z").c_str()), 0);
  EXPECT_GT(mtime(P("d")), m4) << "unlink in a directory";
}

TEST_F(PosixMountTest, ADirectoryListedWhileItChangesShowsEveryUntouchedNameOnce) {
  // A listing takes many readdir calls; names removed or added meanwhile
  // must not make it skip or repeat the others.
  ASSERT_EQ(::mkdir(P("big").c_str(), 0755), 0);
  constexpr int kN = 600;
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(::mknod(P(fmt::format("big/entry-{:04}", i)).c_str(), S_IFREG | 0644, 0), 0)
        << std::strerror(errno);
  }
  DIR* d = ::opendir(P("big").c_str());
  ASSERT_NE(d, nullptr);
  std::map<std::string, int> seen;
  int added = 0;
  long middle = -1;
  std::string at_middle;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    ++seen[name];
    if (seen.size() == kN / 2 && middle < 0) {
      middle = ::telldir(d);
      dirent* next = ::readdir(d);
      ASSERT_NE(next, nullptr);
      at_middle = next->d_name;
      ::seekdir(d, middle);
    }
    // Every third name read is removed at once (as rm does); now and then
    // a new one is made.
    if (name.rfind("entry-", 0) == 0 && std::stoi(name.substr(6)) % 3 == 0) {
      ASSERT_EQ(::unlink(P("big/" + name).c_str()), 0);
    }
    if (seen.size() % 50 == 0) {
      ASSERT_EQ(::mknod(P(fmt::format("big/new-{}", added++)).c_str(), S_IFREG | 0644, 0), 0);
    }
  }
  ::closedir(d);
  for (int i = 0; i < kN; ++i) {
    std::string name = fmt::format("entry-{:04}", i);
    EXPECT_EQ(seen.count(name), 1u) << name << " was not listed";
  }
  for (const auto& [name, n] : seen) EXPECT_EQ(n, 1) << name << " listed more than once";
  EXPECT_FALSE(at_middle.empty());
  EXPECT_EQ(List(P("big")).size(), static_cast<std::size_t>(kN - kN / 3 + added));
  // seekdir to a remembered place goes on from there.
  d = ::opendir(P("big").c_str());
  ASSERT_NE(d, nullptr);
  std::vector<std::string> first;
  long pos = -1;
  while (dirent* e = ::readdir(d)) {
    first.push_back(e->d_name);
    if (first.size() == 100) pos = ::telldir(d);
  }
  ::seekdir(d, pos);
  dirent* e = ::readdir(d);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(std::string(e->d_name), first[100]);
  ::rewinddir(d);
  e = ::readdir(d);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(std::string(e->d_name), first[0]);
  ::closedir(d);
  testing::RunResult r = testing::Run({"/bin/rm", "-r", P("big")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(List(mnt_.string()).empty());
}

TEST_F(PosixMountTest, FilesMadeByAnotherUserAreTheirs) {
  ASSERT_EQ(::mkdir(P("pub").c_str(), 0777), 0);
  ASSERT_EQ(::chmod(P("pub").c_str(), 0777), 0);
  ASSERT_NO_FATAL_FAILURE(Put(P("rootfile"), "root's", 0644));
  ASSERT_EQ(::mkdir(P("sg").c_str(), 0777), 0);
  ASSERT_EQ(::chown(P("sg").c_str(), 0, 1234), 0);
  ASSERT_EQ(::chmod(P("sg").c_str(), 02777), 0);
  ASSERT_NO_FATAL_FAILURE(Put(P("pub/suid"), "s", 0755));
  ASSERT_EQ(::chown(P("pub/suid").c_str(), 1000, 1000), 0);
  ASSERT_EQ(::chmod(P("pub/suid").c_str(), 06755), 0);

  std::string pub = P("pub"), root_file = P("rootfile"), sg = P("sg"), suid = P("pub/suid");
  int rc = RunAsUser([&]() -> int {
    int fd = ::open((pub + "/mine").c_str(), O_CREAT | O_WRONLY, 0644);
    if (fd < 0 || ::write(fd, "hi", 2) != 2 || ::close(fd) != 0) return 1;
    if (::mkdir((pub + "/dir").c_str(), 0755) != 0) return 2;
    if (::symlink("mine", (pub + "/link").c_str()) != 0) return 3;
    if (::mkfifo((pub + "/fifo").c_str(), 0600) != 0) return 4;
    if (::open(root_file.c_str(), O_WRONLY) >= 0 || errno != EACCES) return 5;
    if (::chmod(root_file.c_str(), 0666) == 0 || errno != EPERM) return 6;
    if (::unlink(root_file.c_str()) == 0 || errno != EACCES) return 7;
    fd = ::open((sg + "/f").c_str(), O_CREAT | O_WRONLY, 0644);
    if (fd < 0 || ::close(fd) != 0) return 8;
    if (::mkdir((sg + "/d").c_str(), 0755) != 0) return 9;
    if (::chmod((pub + "/mine").c_str(), 0600) != 0) return 10;
    if (::chown((pub + "/mine").c_str(), 0, 0) == 0 || errno != EPERM) return 11;
    fd = ::open(suid.c_str(), O_WRONLY | O_APPEND);
    if (fd < 0 || ::write(fd, "x", 1) != 1 || ::close(fd) != 0) return 12;
    return 0;
  });
  ASSERT_EQ(rc, 0) << "step " << rc << " of the other user failed";

  for (const char* name : {"pub/mine", "pub/dir", "pub/link", "pub/fifo"}) {
    struct stat st = Lstat(P(name));
    EXPECT_EQ(st.st_uid, 1000u) << name;
    EXPECT_EQ(st.st_gid, 1000u) << name;
  }
  EXPECT_EQ(Lstat(P("pub/mine")).st_mode, S_IFREG | 0600);
  EXPECT_EQ(ReadAll(P("pub/mine")), "hi");
  // A set-group-ID directory passes on its group (and the bit, to directories).
  struct stat f = Lstat(P("sg/f")), d = Lstat(P("sg/d"));
  EXPECT_EQ(f.st_uid, 1000u);
  EXPECT_EQ(f.st_gid, 1234u);
  EXPECT_EQ(d.st_gid, 1234u);
  EXPECT_EQ(d.st_mode, S_IFDIR | 02755);
  // A write by an unprivileged user clears set-user-ID (and set-group-ID,
  // as group execute is set).
  EXPECT_EQ(Lstat(P("pub/suid")).st_mode, S_IFREG | 0755);
  EXPECT_EQ(ReadAll(P("pub/suid")), "sx");

  // Root gives a file away; chown clears set-user-ID.
  ASSERT_EQ(::chmod(root_file.c_str(), 04755), 0);
  ASSERT_EQ(::chown(root_file.c_str(), 1000, 1000), 0);
  struct stat r = Lstat(root_file);
  EXPECT_EQ(r.st_uid, 1000u);
  EXPECT_EQ(r.st_gid, 1000u);
  EXPECT_EQ(r.st_mode, S_IFREG | 0755);
  testing::RunResult priv = testing::Run({"/usr/bin/setpriv", "--reuid=1000", "--regid=1000",
                                          "--clear-groups", "/usr/bin/touch", P("pub/bysetpriv")});
  EXPECT_EQ(priv.exit_code, 0) << priv.err;
  EXPECT_EQ(Lstat(P("pub/bysetpriv")).st_uid, 1000u);
}

}  // namespace
}  // namespace dfs
