// The file tree on one node: POSIX semantics of the FileServer's tree calls
// (core/file_server_tree.cc over core/tree_db.cc) and a tree kept across a
// reopen. (tests/namespace_codec_test.cc holds the tree op encoding,
// tests/namespace_convergence_test.cc the convergence of replicas; the
// helpers are in tests/namespace_test_util.h.)
#include "core/namespace.h"

#include <sys/xattr.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/file_server.h"
#include "core/index.h"
#include "core/memory_chunk_store.h"
#include "tests/namespace_test_util.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

using namespace testing_ns;

// ------------------------------------------------- one node: POSIX semantics

class NamespaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto index = Index::Open(dir_ / "index.db");
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    auto fs = FileServer::Create(std::make_unique<MemoryChunkStore>(), std::move(*index),
                                 TestKey(), Options(1));
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    fs_ = std::move(*fs);
    fs_->SetOpListener([this](const Op& op, bool local) {
      if (local) ops_.push_back(op);
    });
  }

  FileId Mk(const FileId& dir, std::string_view name, const NewNode& n) {
    return MUST(fs_->MakeNode(dir, name, n)).attr.inode;
  }
  Attr At(const FileId& inode) { return MUST(fs_->GetAttr(inode)); }
  FileId Find(const FileId& dir, std::string_view name) {
    return MUST(fs_->LookupName(dir, name)).attr.inode;
  }
  bool Has(const FileId& dir, std::string_view name) { return fs_->LookupName(dir, name).ok(); }
  // The wall time of the last local op: ctime of what it touched.
  std::int64_t LastOpTime() { return static_cast<std::int64_t>(Ops().back().time.wall_ns); }
  // Our ops so far (Flush publishes them).
  std::vector<Op>& Ops() {
    NS_EXPECT_OK(fs_->Flush());
    return ops_;
  }

  const FileId root_ = FileId::Root();
  testing::TempDir dir_;
  std::vector<Op> ops_;  // before fs_: its flusher thread appends until fs_ is gone
  std::unique_ptr<FileServer> fs_;
};

TEST_F(NamespaceTest, MakeLookupAndListInNameOrder) {
  Attr root = At(root_);
  EXPECT_EQ(root.type, FileType::kDirectory);
  EXPECT_EQ(root.nlink, 2u);
  EXPECT_TRUE(Names(*fs_, root_).empty());

  DirEntry d = MUST(fs_->MakeNode(root_, "d", Dir(0750)));
  EXPECT_EQ(d.name, "d");
  EXPECT_EQ(d.entry, d.attr.inode) << "a directory's entry id is its inode id";
  EXPECT_EQ(d.attr.type, FileType::kDirectory);
  EXPECT_EQ(d.attr.mode, 0750u);
  EXPECT_EQ(d.attr.nlink, 2u);
  for (const char* n : {"b", "a", "C", "c", "a.txt", "Z"}) Mk(root_, n, File());
  NewNode fifo;
  fifo.type = FileType::kFifo;
  fifo.mode = 0600;
  fifo.uid = 10;
  fifo.gid = 20;
  FileId f = Mk(d.entry, "pipe", fifo);
  NewNode chr;
  chr.type = FileType::kCharDevice;
  chr.rdev = 0x0501;
  FileId c = Mk(d.entry, "tty", chr);
  NewNode sock;
  sock.type = FileType::kSocket;
  Mk(d.entry, "sock", sock);

  EXPECT_EQ(Names(*fs_, root_), (std::vector<std::string>{"C", "Z", "a", "a.txt", "b", "c", "d"}));
  EXPECT_EQ(Names(*fs_, d.entry), (std::vector<std::string>{"pipe", "sock", "tty"}));
  DirEntry got = MUST(fs_->LookupName(root_, "d"));
  EXPECT_EQ(got.entry, d.entry);
  EXPECT_EQ(got.name, "d");
  Attr fa = At(f);
  EXPECT_EQ(fa.type, FileType::kFifo);
  EXPECT_EQ(fa.mode, 0600u);
  EXPECT_EQ(fa.uid, 10u);
  EXPECT_EQ(fa.gid, 20u);
  EXPECT_EQ(fa.size, 0u);
  EXPECT_EQ(fa.nlink, 1u);
  EXPECT_EQ(fa.atime_ns, fa.mtime_ns);
  EXPECT_EQ(At(c).rdev, 0x0501u);
  EXPECT_EQ(At(c).type, FileType::kCharDevice);
  EXPECT_EQ(At(root_).nlink, 3u);

  // Errors of lookup and create.
  NS_EXPECT_CODE(fs_->LookupName(root_, "missing"), kNotFound);
  NS_EXPECT_CODE(fs_->LookupName(Find(root_, "a"), "x"), kNotDirectory);
  NS_EXPECT_CODE(fs_->LookupName(root_, std::string(256, 'n')), kNameTooLong);
  NS_EXPECT_CODE(fs_->LookupName(root_, ".."), kInvalidArgument);
  NS_EXPECT_CODE(fs_->MakeNode(Find(root_, "a"), "x", File()), kNotDirectory);
  NS_EXPECT_CODE(fs_->MakeNode(FileId::Random(), "x", File()), kNotFound);
  NS_EXPECT_CODE(fs_->MakeNode(root_, std::string(256, 'n'), File()), kNameTooLong);
  NS_EXPECT_CODE(fs_->MakeNode(root_, "a/b", File()), kInvalidArgument);
  NS_EXPECT_CODE(fs_->MakeNode(root_, "x", File(0100644)), kInvalidArgument);
  NS_EXPECT_OK(fs_->MakeNode(root_, std::string(255, 'n'), File()));
  // A removed directory takes no new names.
  FileId gone = Mk(root_, "gone", Dir());
  NS_ASSERT_OK(fs_->RemoveDir(root_, "gone"));
  NS_EXPECT_CODE(fs_->MakeNode(gone, "x", File()), kNotFound);
  NS_EXPECT_CODE(fs_->Rename(root_, "a", gone, "x"), kNotFound);
}

// Logs name an inode by a path from the root and its id; a moved file by
// its new path; an unlinked one by its id alone.
TEST_F(NamespaceTest, DescribeNamesAnInodeByItsPath) {
  FileId a = Mk(root_, "a", Dir());
  FileId b = Mk(a, "b", Dir());
  FileId f = Mk(b, "file.txt", File());
  EXPECT_EQ(fs_->Describe(f), "/a/b/file.txt (" + f.ShortHex() + ")");
  EXPECT_EQ(fs_->Describe(b), "/a/b (" + b.ShortHex() + ")");
  NS_ASSERT_OK(fs_->Rename(b, "file.txt", a, "moved", 0));
  EXPECT_EQ(fs_->Describe(f), "/a/moved (" + f.ShortHex() + ")");
  NS_ASSERT_OK(fs_->Unlink(a, "moved"));
  EXPECT_EQ(fs_->Describe(f), f.ShortHex());
}

TEST_F(NamespaceTest, ExistingNamesAreRefused) {
  FileId f = Mk(root_, "f", File());
  Mk(root_, "d", Dir());
  NS_EXPECT_CODE(fs_->MakeNode(root_, "f", File()), kExists);
  NS_EXPECT_CODE(fs_->MakeNode(root_, "f", Dir()), kExists);
  NS_EXPECT_CODE(fs_->MakeNode(root_, "d", File()), kExists);
  NS_EXPECT_CODE(fs_->MakeNode(root_, "d", Symlink("x")), kExists);
  NS_EXPECT_CODE(fs_->Link(f, root_, "d"), kExists);
  NS_EXPECT_CODE(fs_->Link(f, root_, "f"), kExists);
  EXPECT_EQ(Names(*fs_, root_), (std::vector<std::string>{"d", "f"}));
  EXPECT_EQ(At(f).nlink, 1u);
}

TEST_F(NamespaceTest, RemoveChecksTypeAndEmptiness) {
  FileId d = Mk(root_, "d", Dir());
  Mk(d, "f", File());
  Mk(root_, "file", File());
  NS_EXPECT_CODE(fs_->Unlink(root_, "d"), kIsDirectory);
  NS_EXPECT_CODE(fs_->RemoveDir(root_, "file"), kNotDirectory);
  NS_EXPECT_CODE(fs_->RemoveDir(root_, "d"), kNotEmpty);
  NS_EXPECT_CODE(fs_->Unlink(root_, "missing"), kNotFound);
  NS_EXPECT_CODE(fs_->RemoveDir(root_, "missing"), kNotFound);
  EXPECT_TRUE(Has(root_, "d"));
  NS_ASSERT_OK(fs_->Unlink(d, "f"));
  EXPECT_FALSE(Has(d, "f"));
  NS_ASSERT_OK(fs_->RemoveDir(root_, "d"));
  EXPECT_FALSE(Has(root_, "d"));
  NS_ASSERT_OK(fs_->Unlink(root_, "file"));
  EXPECT_TRUE(Names(*fs_, root_).empty());
  EXPECT_EQ(At(root_).nlink, 2u);
  Dump(*fs_);  // nothing left with a name that the root does not reach
}

TEST_F(NamespaceTest, RenameReplacesWhenPosixAllows) {
  FileId a = Mk(root_, "a", File());
  FileId b = Mk(root_, "b", File());
  FileId d1 = Mk(root_, "d1", Dir());
  FileId d2 = Mk(root_, "d2", Dir());
  FileId d3 = Mk(root_, "d3", Dir());
  Mk(d3, "inside", File());

  // File over file: the target's inode loses its name.
  NS_ASSERT_OK(fs_->Rename(root_, "a", root_, "b"));
  EXPECT_FALSE(Has(root_, "a"));
  EXPECT_EQ(Find(root_, "b"), a);
  EXPECT_EQ(At(b).nlink, 0u);
  EXPECT_EQ(At(a).nlink, 1u);

  // Directory over an empty directory.
  NS_ASSERT_OK(fs_->Rename(root_, "d1", root_, "d2"));
  EXPECT_EQ(Find(root_, "d2"), d1);
  EXPECT_FALSE(Has(root_, "d1"));
  EXPECT_EQ(At(root_).nlink, 4u) << "root holds d2 and d3";
  (void)d2;

  // Over a non-empty directory, across types.
  NS_EXPECT_CODE(fs_->Rename(root_, "d2", root_, "d3"), kNotEmpty);
  NS_EXPECT_CODE(fs_->Rename(root_, "b", root_, "d2"), kIsDirectory);
  NS_EXPECT_CODE(fs_->Rename(root_, "d2", root_, "b"), kNotDirectory);
  EXPECT_EQ(Find(root_, "d2"), d1);
  EXPECT_EQ(Find(root_, "b"), a);

  // Into its own subtree, or onto itself.
  FileId sub = Mk(d3, "sub", Dir());
  NS_EXPECT_CODE(fs_->Rename(root_, "d3", sub, "x"), kInvalidArgument);
  NS_EXPECT_CODE(fs_->Rename(root_, "d3", d3, "x"), kInvalidArgument);
  NS_EXPECT_OK(fs_->Rename(root_, "d3", root_, "d3"));
  EXPECT_EQ(Find(d3, "sub"), sub);

  // Sources and targets that are not there.
  NS_EXPECT_CODE(fs_->Rename(root_, "missing", root_, "x"), kNotFound);
  NS_EXPECT_CODE(fs_->Rename(root_, "b", FileId::Random(), "x"), kNotFound);
  NS_EXPECT_CODE(fs_->Rename(root_, "b", a, "x"), kNotDirectory);
  NS_EXPECT_CODE(fs_->Rename(root_, "b", root_, std::string(256, 'x')), kNameTooLong);
  NS_EXPECT_CODE(fs_->Rename(root_, "b", root_, "."), kInvalidArgument);

  // Into another directory: link counts of both parents follow.
  NS_ASSERT_OK(fs_->Rename(root_, "d2", d3, "moved"));
  EXPECT_EQ(Find(d3, "moved"), d1);
  EXPECT_EQ(At(root_).nlink, 3u);
  EXPECT_EQ(At(d3).nlink, 4u);
  EXPECT_EQ(Names(*fs_, d3), (std::vector<std::string>{"inside", "moved", "sub"}));
  Dump(*fs_);
}

TEST_F(NamespaceTest, RenameFlags) {
  FileId a = Mk(root_, "a", File());
  FileId b = Mk(root_, "b", File());
  FileId x = Mk(root_, "x", Dir());
  FileId y = Mk(root_, "y", Dir());
  FileId inner = Mk(x, "inner", Dir());
  Mk(inner, "deep", File());

  NS_EXPECT_CODE(fs_->Rename(root_, "a", root_, "b", FileServer::kRenameNoReplace), kExists);
  EXPECT_EQ(Find(root_, "a"), a);
  EXPECT_EQ(Find(root_, "b"), b);
  NS_ASSERT_OK(fs_->Rename(root_, "a", root_, "c", FileServer::kRenameNoReplace));
  EXPECT_EQ(Find(root_, "c"), a);
  EXPECT_FALSE(Has(root_, "a"));
  NS_EXPECT_CODE(fs_->Rename(root_, "c", root_, "b",
                             FileServer::kRenameNoReplace | FileServer::kRenameExchange),
                 kInvalidArgument);

  // Exchange two files.
  NS_ASSERT_OK(fs_->Rename(root_, "b", root_, "c", FileServer::kRenameExchange));
  EXPECT_EQ(Find(root_, "b"), a);
  EXPECT_EQ(Find(root_, "c"), b);
  EXPECT_EQ(At(a).nlink, 1u);
  EXPECT_EQ(At(b).nlink, 1u);
  NS_EXPECT_CODE(fs_->Rename(root_, "b", root_, "missing", FileServer::kRenameExchange), kNotFound);

  // Exchange a file with a directory in another directory.
  NS_ASSERT_OK(fs_->Rename(root_, "b", x, "inner", FileServer::kRenameExchange));
  EXPECT_EQ(Find(root_, "b"), inner);
  EXPECT_EQ(Find(x, "inner"), a);
  EXPECT_EQ(At(Find(root_, "b")).type, FileType::kDirectory);
  EXPECT_TRUE(Has(inner, "deep"));
  EXPECT_EQ(At(x).nlink, 2u) << "x lost its subdirectory";
  EXPECT_EQ(At(root_).nlink, 5u) << "root gained one: x, y, b";

  // An exchange that would put a directory under itself.
  NS_EXPECT_CODE(fs_->Rename(root_, "b", inner, "deep", FileServer::kRenameExchange),
                 kInvalidArgument);
  NS_EXPECT_CODE(fs_->Rename(inner, "deep", root_, "b", FileServer::kRenameExchange),
                 kInvalidArgument);
  // Exchange two directories.
  NS_ASSERT_OK(fs_->Rename(root_, "x", root_, "y", FileServer::kRenameExchange));
  EXPECT_EQ(Find(root_, "x"), y);
  EXPECT_EQ(Find(root_, "y"), x);
  NS_EXPECT_OK(fs_->Rename(root_, "x", root_, "x", FileServer::kRenameExchange));
  EXPECT_EQ(Find(root_, "x"), y);
  Dump(*fs_);
}

TEST_F(NamespaceTest, RenameBetweenLinksOfOneInodeDoesNothing) {
  FileId f = Mk(root_, "f", File());
  NS_ASSERT_OK(fs_->Link(f, root_, "g"));
  std::size_t ops = Ops().size();
  NS_ASSERT_OK(fs_->Rename(root_, "f", root_, "g"));
  EXPECT_EQ(Ops().size(), ops) << "no op for a rename that does nothing";
  EXPECT_EQ(Find(root_, "f"), f);
  EXPECT_EQ(Find(root_, "g"), f);
  EXPECT_EQ(At(f).nlink, 2u);
}

TEST_F(NamespaceTest, LinkCounts) {
  FileId d = Mk(root_, "d", Dir());
  FileId f = Mk(root_, "f", File());
  EXPECT_EQ(At(f).nlink, 1u);
  DirEntry l1 = MUST(fs_->Link(f, d, "l1"));
  EXPECT_EQ(l1.attr.inode, f);
  EXPECT_NE(l1.entry, f) << "a new name is a new entry";
  EXPECT_EQ(l1.attr.nlink, 2u);
  MUST(fs_->Link(f, d, "l2"));
  MUST(fs_->Link(f, root_, "l3"));
  EXPECT_EQ(At(f).nlink, 4u);
  NS_EXPECT_CODE(fs_->Link(d, root_, "dl"), kIsDirectory);
  NS_EXPECT_CODE(fs_->Link(FileId::Random(), root_, "nl"), kNotFound);
  NS_EXPECT_CODE(fs_->Link(f, f, "x"), kNotDirectory);

  NS_ASSERT_OK(fs_->Unlink(d, "l1"));
  EXPECT_EQ(At(f).nlink, 3u);
  // Another file renamed over one of the links.
  FileId g = Mk(root_, "g", File());
  NS_ASSERT_OK(fs_->Rename(root_, "g", d, "l2"));
  EXPECT_EQ(At(f).nlink, 2u);
  EXPECT_EQ(At(g).nlink, 1u);
  // One of the links renamed over another file.
  FileId h = Mk(root_, "h", File());
  NS_ASSERT_OK(fs_->Rename(root_, "l3", root_, "h"));
  EXPECT_EQ(At(f).nlink, 2u);
  EXPECT_EQ(At(h).nlink, 0u);
  NS_ASSERT_OK(fs_->Unlink(root_, "f"));
  NS_ASSERT_OK(fs_->Unlink(root_, "h"));
  Attr last = At(f);
  EXPECT_EQ(last.nlink, 0u) << "an inode without names keeps its attributes for open handles";

  // Directories: 2 + subdirectories; files inside do not count.
  EXPECT_EQ(At(d).nlink, 2u);
  FileId e = Mk(d, "e", Dir());
  Mk(d, "file", File());
  Mk(d, "e2", Dir());
  EXPECT_EQ(At(d).nlink, 4u);
  EXPECT_EQ(At(root_).nlink, 3u);
  NS_ASSERT_OK(fs_->RemoveDir(d, "e2"));
  EXPECT_EQ(At(d).nlink, 3u);
  NS_ASSERT_OK(fs_->Rename(d, "e", root_, "e"));
  EXPECT_EQ(At(d).nlink, 2u);
  EXPECT_EQ(At(root_).nlink, 4u);
  EXPECT_EQ(At(e).nlink, 2u);
}

TEST_F(NamespaceTest, CtimeFollowsEveryChange) {
  FileId f = Mk(root_, "f", File());
  Attr born = At(f);
  EXPECT_EQ(born.ctime_ns, LastOpTime());
  EXPECT_EQ(born.mtime_ns, born.atime_ns);
  std::int64_t prev = born.ctime_ns;
  auto moved = [&](const char* what) {
    Attr a = At(f);
    EXPECT_EQ(a.ctime_ns, LastOpTime()) << what;
    EXPECT_GT(a.ctime_ns, prev) << what;
    prev = a.ctime_ns;
    return a;
  };
  auto tick = [] { std::this_thread::sleep_for(std::chrono::milliseconds(2)); };

  tick();
  MUST(fs_->Link(f, root_, "g"));
  moved("link");
  tick();
  NS_ASSERT_OK(fs_->Unlink(root_, "g"));
  moved("unlink");
  tick();
  NS_ASSERT_OK(fs_->Rename(root_, "f", root_, "f2"));
  moved("rename");
  tick();
  AttrChange chmod;
  chmod.mode = 0600;
  MUST(fs_->SetAttr(f, chmod));
  Attr after = moved("chmod");
  EXPECT_EQ(after.mtime_ns, born.mtime_ns) << "chmod leaves mtime";
  tick();
  NS_ASSERT_OK(fs_->SetXattr(f, "user.x", AsBytes("1"), 0));
  moved("setxattr");

  // The directory a name is made in changes mtime and ctime.
  Attr root_before = At(root_);
  tick();
  Mk(root_, "new", File());
  Attr root_after = At(root_);
  EXPECT_GT(root_after.mtime_ns, root_before.mtime_ns);
  EXPECT_EQ(root_after.ctime_ns, LastOpTime());
  EXPECT_EQ(At(f).ctime_ns, prev) << "a create elsewhere leaves f alone";
}

TEST_F(NamespaceTest, SymlinksAndReadLink) {
  DirEntry s = MUST(fs_->MakeNode(root_, "s", Symlink("../target")));
  EXPECT_EQ(s.attr.type, FileType::kSymlink);
  EXPECT_EQ(s.attr.size, 9u);
  EXPECT_EQ(MUST(fs_->ReadLink(s.attr.inode)), "../target");
  std::string longest(kSymlinkMax, 'p');
  for (std::size_t i = 100; i < longest.size(); i += 100) longest[i] = '/';
  FileId l = Mk(root_, "long", Symlink(longest));
  EXPECT_EQ(MUST(fs_->ReadLink(l)), longest);
  EXPECT_EQ(At(l).size, kSymlinkMax);
  NS_EXPECT_CODE(fs_->MakeNode(root_, "toolong", Symlink(std::string(kSymlinkMax + 1, 'p'))),
                 kNameTooLong);
  EXPECT_FALSE(Has(root_, "toolong"));
  FileId f = Mk(root_, "f", File());
  NS_EXPECT_CODE(fs_->ReadLink(f), kInvalidArgument);
  NS_EXPECT_CODE(fs_->ReadLink(root_), kInvalidArgument);
  NS_EXPECT_CODE(fs_->ReadLink(FileId::Random()), kNotFound);
  // A symlink is a name like any other: hard links and renames keep the target.
  MUST(fs_->Link(l, root_, "long2"));
  NS_ASSERT_OK(fs_->Rename(root_, "long", root_, "long3"));
  EXPECT_EQ(MUST(fs_->ReadLink(Find(root_, "long2"))), longest);
  NS_EXPECT_CODE(fs_->Content(l), kInvalidArgument);
}

TEST_F(NamespaceTest, ExtendedAttributes) {
  FileId f = Mk(root_, "f", File());
  NS_EXPECT_CODE(fs_->GetXattr(f, "user.a"), kNoAttribute);
  EXPECT_TRUE(MUST(fs_->ListXattr(f)).empty());
  NS_ASSERT_OK(fs_->SetXattr(f, "user.b", AsBytes("bee"), 0));
  NS_ASSERT_OK(fs_->SetXattr(f, "user.a", AsBytes(""), 0));
  EXPECT_TRUE(MUST(fs_->GetXattr(f, "user.a")).empty());
  EXPECT_EQ(AsString(MUST(fs_->GetXattr(f, "user.b"))), "bee");
  EXPECT_EQ(MUST(fs_->ListXattr(f)), (std::vector<std::string>{"user.a", "user.b"}));

  NS_EXPECT_CODE(fs_->SetXattr(f, "user.b", AsBytes("x"), XATTR_CREATE), kExists);
  EXPECT_EQ(AsString(MUST(fs_->GetXattr(f, "user.b"))), "bee");
  NS_EXPECT_CODE(fs_->SetXattr(f, "user.c", AsBytes("x"), XATTR_REPLACE), kNoAttribute);
  NS_EXPECT_CODE(fs_->GetXattr(f, "user.c"), kNoAttribute);
  NS_ASSERT_OK(fs_->SetXattr(f, "user.b", AsBytes("replaced"), XATTR_REPLACE));
  EXPECT_EQ(AsString(MUST(fs_->GetXattr(f, "user.b"))), "replaced");
  NS_ASSERT_OK(fs_->SetXattr(f, "user.c", AsBytes("new"), XATTR_CREATE));
  EXPECT_EQ(AsString(MUST(fs_->GetXattr(f, "user.c"))), "new");

  NS_ASSERT_OK(fs_->RemoveXattr(f, "user.b"));
  NS_EXPECT_CODE(fs_->GetXattr(f, "user.b"), kNoAttribute);
  NS_EXPECT_CODE(fs_->RemoveXattr(f, "user.b"), kNoAttribute);
  NS_EXPECT_CODE(fs_->SetXattr(f, "user.b", AsBytes("x"), XATTR_REPLACE), kNoAttribute);
  EXPECT_EQ(MUST(fs_->ListXattr(f)), (std::vector<std::string>{"user.a", "user.c"}));
  NS_ASSERT_OK(fs_->SetXattr(f, "user.b", AsBytes("back"), XATTR_CREATE));
  EXPECT_EQ(AsString(MUST(fs_->GetXattr(f, "user.b"))), "back");

  // Limits.
  Bytes big = testing::RandomBytes(kXattrValueMax, 1);
  NS_ASSERT_OK(fs_->SetXattr(f, "user.big", big, 0));
  EXPECT_TRUE(MUST(fs_->GetXattr(f, "user.big")) == big);
  big.push_back(0);
  EXPECT_FALSE(fs_->SetXattr(f, "user.big", big, 0).ok());
  NS_ASSERT_OK(fs_->SetXattr(f, std::string(kXattrNameMax, 'n'), AsBytes("v"), 0));
  NS_EXPECT_CODE(fs_->SetXattr(f, std::string(kXattrNameMax + 1, 'n'), AsBytes("v"), 0),
                 kNameTooLong);
  NS_EXPECT_CODE(fs_->GetXattr(f, std::string(kXattrNameMax + 1, 'n')), kNameTooLong);
  NS_EXPECT_CODE(fs_->SetXattr(f, "", AsBytes("v"), 0), kInvalidArgument);
  NS_EXPECT_CODE(fs_->SetXattr(FileId::Random(), "user.a", AsBytes("v"), 0), kNotFound);
  NS_EXPECT_CODE(fs_->GetXattr(FileId::Random(), "user.a"), kNotFound);
  NS_EXPECT_CODE(fs_->ListXattr(FileId::Random()), kNotFound);

  // Attributes belong to the inode: every hard link sees them; directories have them too.
  MUST(fs_->Link(f, root_, "g"));
  EXPECT_EQ(AsString(MUST(fs_->GetXattr(Find(root_, "g"), "user.c"))), "new");
  NS_ASSERT_OK(fs_->SetXattr(root_, "user.root", AsBytes("r"), 0));
  EXPECT_EQ(MUST(fs_->ListXattr(root_)), (std::vector<std::string>{"user.root"}));
}

TEST_F(NamespaceTest, SetAttrChangesOnlyWhatIsSet) {
  FileId f = Mk(root_, "f", File(0644));
  Attr before = At(f);
  AttrChange c;
  c.mode = 04711;
  Attr a = MUST(fs_->SetAttr(f, c));
  EXPECT_EQ(a.mode, 04711u);
  EXPECT_EQ(a.uid, before.uid);
  EXPECT_EQ(a.mtime_ns, before.mtime_ns);
  AttrChange own;
  own.uid = 1000;
  own.gid = 2000;
  a = MUST(fs_->SetAttr(f, own));
  EXPECT_EQ(a.uid, 1000u);
  EXPECT_EQ(a.gid, 2000u);
  EXPECT_EQ(a.mode, 04711u);
  AttrChange times;
  times.atime_ns = 1'000'000'007;
  times.mtime_ns = -3;  // before 1970 is a valid time
  a = MUST(fs_->SetAttr(f, times));
  EXPECT_EQ(a.atime_ns, 1'000'000'007);
  EXPECT_EQ(a.mtime_ns, -3);
  EXPECT_EQ(a.uid, 1000u);
  AttrChange only_m;
  only_m.mtime_ns = 5;
  a = MUST(fs_->SetAttr(f, only_m));
  EXPECT_EQ(a.atime_ns, 1'000'000'007);
  EXPECT_EQ(a.mtime_ns, 5);
  EXPECT_EQ(At(f).mode, 04711u);
  AttrChange bad;
  bad.mode = 0100644;
  NS_EXPECT_CODE(fs_->SetAttr(f, bad), kInvalidArgument);
  NS_EXPECT_CODE(fs_->SetAttr(FileId::Random(), c), kNotFound);
  // The root's attributes are registers too.
  AttrChange rc;
  rc.mode = 01777;
  EXPECT_EQ(MUST(fs_->SetAttr(root_, rc)).mode, 01777u);
}

TEST_F(NamespaceTest, ReadDirResumesFromAnyOffset) {
  FileId d = Mk(root_, "big", Dir());
  constexpr int kCount = 1000;
  std::vector<std::string> want;
  for (int i = kCount - 1; i >= 0; --i) {  // listed in the order they were placed
    std::string name = fmt::format("entry-{:04}", i);
    Mk(d, name, (i % 10 == 0) ? Dir() : File());
    want.push_back(name);
  }
  auto all = List(*fs_, d);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kCount));
  for (int i = 0; i < kCount; ++i) EXPECT_EQ(all[i].first.name, want[i]);
  EXPECT_EQ(At(d).nlink, 2u + kCount / 10);

  // Reading in pieces of any size, each from the last `next`, gives every entry once.
  for (std::size_t piece : {13u, 255u, 256u, 257u, 999u, 1000u}) {
    std::vector<std::string> got;
    std::uint64_t offset = 0;
    for (int rounds = 0; rounds < kCount + 2; ++rounds) {
      auto part = List(*fs_, d, offset, piece);
      if (part.empty()) break;
      for (const auto& [e, next] : part) got.push_back(e.name);
      offset = part.back().second;
    }
    EXPECT_EQ(got, want) << "pieces of " << piece;
  }
  for (int i : {0, 1, 255, 256, 511, 998}) {
    auto rest = List(*fs_, d, all[i].second);
    ASSERT_EQ(rest.size(), static_cast<std::size_t>(kCount - i - 1));
    EXPECT_EQ(rest.front().first.name, want[i + 1]);
  }
  EXPECT_TRUE(List(*fs_, d, all.back().second).empty());
  EXPECT_TRUE(List(*fs_, d, 1u << 30).empty());
  NS_EXPECT_CODE(fs_->ReadDir(Find(d, "entry-0001"), 0,
                              [](const DirEntry&, std::uint64_t) { return true; }),
                 kNotDirectory);
}

// POSIX leaves open whether a name added or removed during a listing is
// listed, but every other name must be listed exactly once, also while
// names already listed are removed (what `rm` of a large directory through
// the mount does). Offsets are stable positions, not ranks.
TEST_F(NamespaceTest, ReadDirWhileRemovingListedNamesSkipsNothing) {
  FileId d = Mk(root_, "d", Dir());
  std::set<std::string> want;
  for (int i = 0; i < 300; ++i) {
    std::string name = fmt::format("n{:03}", i);
    Mk(d, name, File());
    want.insert(name);
  }
  std::set<std::string> seen;
  std::uint64_t offset = 0;
  for (int round = 0; round < 400; ++round) {
    auto part = List(*fs_, d, offset, 50);
    if (part.empty()) break;
    for (const auto& [e, next] : part) {
      EXPECT_TRUE(seen.insert(e.name).second) << e.name << " listed twice";
      NS_ASSERT_OK(fs_->Unlink(d, e.name));
    }
    offset = part.back().second;
  }
  EXPECT_EQ(seen.size(), want.size()) << "names skipped by the listing";
  EXPECT_TRUE(Names(*fs_, d).empty());
}

TEST_F(NamespaceTest, ContentRoundTripsWithHoles) {
  FileId f = Mk(root_, "f", File());
  EXPECT_EQ(MUST(fs_->Content(f)).size, 0u);
  Bytes one = testing::RandomBytes(700 * 1024 + 13, 1);
  Bytes two = testing::RandomBytes(5000, 2);
  Manifest m1, m2;
  {
    FileServer::ChunkPins pins(fs_.get());
    MemoryReader r(one);
    m1 = MUST(fs_->StoreData(r, &pins));
    ASSERT_EQ(m1.size, one.size());
    ASSERT_GT(m1.chunks.size(), 1u);
    NS_ASSERT_OK(fs_->CommitContent(f, m1, 123456789, &pins));
  }
  Attr a = At(f);
  EXPECT_EQ(a.size, one.size());
  EXPECT_EQ(a.mtime_ns, 123456789);
  EXPECT_TRUE(MUST(fs_->Content(f)) == m1);
  Bytes back(one.size() + 100, 0xee);
  EXPECT_EQ(MUST(fs_->ReadContent(m1, 0, back)), one.size());
  back.resize(one.size());
  EXPECT_TRUE(back == one);
  // Reads across chunk boundaries with one cursor.
  FileServer::ReadCursor cursor;
  Bytes part(4096);
  for (std::uint64_t off = 0; off < one.size(); off += 100 * 1024 + 7) {
    std::size_t n = MUST(fs_->ReadContent(m1, off, part, &cursor));
    ASSERT_EQ(n, std::min<std::uint64_t>(part.size(), one.size() - off));
    EXPECT_EQ(std::memcmp(part.data(), one.data() + off, n), 0) << off;
  }
  EXPECT_EQ(MUST(fs_->ReadContent(m1, one.size(), part)), 0u);

  // A sparse file: data, a hole, data, a trailing hole.
  {
    FileServer::ChunkPins pins(fs_.get());
    MemoryReader r(two);
    m2 = MUST(fs_->StoreData(r, &pins));
    Manifest sparse = m1;
    sparse.AppendHole(1 << 20);
    for (const ChunkRef& c : m2.chunks) sparse.chunks.push_back(c);
    sparse.size += m2.size;
    sparse.AppendHole(10);
    NS_ASSERT_OK(fs_->CommitContent(f, sparse, 5, &pins));
  }
  Manifest sparse = MUST(fs_->Content(f));
  std::uint64_t total = one.size() + (1 << 20) + two.size() + 10;
  EXPECT_EQ(sparse.size, total);
  EXPECT_EQ(At(f).size, total);
  Bytes all(total + 1);
  EXPECT_EQ(MUST(fs_->ReadContent(sparse, 0, all)), total);
  EXPECT_EQ(std::memcmp(all.data(), one.data(), one.size()), 0);
  EXPECT_TRUE(std::all_of(all.begin() + one.size(), all.begin() + one.size() + (1 << 20),
                          [](std::uint8_t b) { return b == 0; }));
  EXPECT_EQ(std::memcmp(all.data() + one.size() + (1 << 20), two.data(), two.size()), 0);
  EXPECT_TRUE(std::all_of(all.begin() + total - 10, all.begin() + total,
                          [](std::uint8_t b) { return b == 0; }));
  // A read inside the hole.
  Bytes hole(1000, 0xff);
  EXPECT_EQ(MUST(fs_->ReadContent(sparse, one.size() + 5000, hole)), 1000u);
  EXPECT_TRUE(std::all_of(hole.begin(), hole.end(), [](std::uint8_t b) { return b == 0; }));

  // Only holes: truncate(2) to a size.
  Manifest empty_big;
  empty_big.AppendHole(3ull << 32);  // longer than one hole ref holds
  EXPECT_GT(empty_big.chunks.size(), 1u);
  NS_ASSERT_OK(fs_->CommitContent(f, empty_big, 6));
  EXPECT_EQ(At(f).size, 3ull << 32);
  Bytes tail(100, 0xff);
  EXPECT_EQ(MUST(fs_->ReadContent(MUST(fs_->Content(f)), (3ull << 32) - 50, tail)), 50u);
  EXPECT_TRUE(std::all_of(tail.begin(), tail.begin() + 50, [](std::uint8_t b) { return b == 0; }));

  // Content of what is not a regular file.
  FileId d = Mk(root_, "d", Dir());
  NS_EXPECT_CODE(fs_->Content(d), kIsDirectory);
  NS_EXPECT_CODE(fs_->CommitContent(d, m1, 1), kIsDirectory);
  FileId s = Mk(root_, "s", Symlink("x"));
  NS_EXPECT_CODE(fs_->CommitContent(s, m1, 1), kInvalidArgument);
  NS_EXPECT_CODE(fs_->CommitContent(FileId::Random(), m1, 1), kNotFound);
}

TEST(NamespacePersistenceTest, ReopenKeepsTheTree) {
  testing::TempDir dir;
  Bytes data = testing::RandomBytes(300 * 1024, 5);
  std::string before;
  FileId f;
  {
    auto fs = FileServer::Open(dir.path(), TestKey(), Options(1));
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    FileServer& s = **fs;
    FileId d = MUST(s.MakeNode(FileId::Root(), "docs", Dir(0700))).entry;
    f = MUST(s.MakeNode(d, "report", File(0600))).attr.inode;
    MUST(s.MakeNode(d, "link", Symlink("report")));
    MUST(s.Link(f, FileId::Root(), "hard"));
    NS_ASSERT_OK(s.SetXattr(f, "user.tag", AsBytes("kept"), 0));
    MUST(s.MakeNode(d, "gone", File()));
    NS_ASSERT_OK(s.Unlink(d, "gone"));
    FileServer::ChunkPins pins(&s);
    MemoryReader r(data);
    Manifest m = MUST(s.StoreData(r, &pins));
    NS_ASSERT_OK(s.CommitContent(f, m, 42, &pins));
    before = Dump(s);
  }
  auto fs = FileServer::Open(dir.path(), TestKey(), Options(1));
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  FileServer& s = **fs;
  EXPECT_EQ(Dump(s), before);
  Manifest m = MUST(s.Content(f));
  Bytes back(data.size());
  EXPECT_EQ(MUST(s.ReadContent(m, 0, back)), data.size());
  EXPECT_TRUE(back == data);
  // It goes on from where it was: the op log continues, names still clash.
  NS_EXPECT_CODE(s.MakeNode(FileId::Root(), "hard", File()), kExists);
  MUST(s.MakeNode(FileId::Root(), "after", File()));
  EXPECT_TRUE(s.LookupName(FileId::Root(), "after").ok());
}

}  // namespace
}  // namespace dfs::core
