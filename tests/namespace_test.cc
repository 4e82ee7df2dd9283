// The file tree: the tree op encoding (core/namespace.h), POSIX semantics of
// the FileServer's tree calls on one node (core/file_server_tree.cc over
// core/tree_db.cc), and convergence of replicas that exchange tree ops in
// any order that keeps each origin's sequence (core/index.cc ApplyOp).
#include "core/namespace.h"

#include <sys/xattr.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "core/file_server.h"
#include "core/index.h"
#include "core/memory_chunk_store.h"
#include "core/tree_db.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

// ---------------------------------------------------------------- helpers

const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const Result<T>& r) {
  return r.status();
}

#define NS_ASSERT_OK(expr)                                                       \
  do {                                                                           \
    const auto& ns_r_ = (expr);                                                  \
    ASSERT_TRUE(ns_r_.ok()) << #expr << ": " << StatusOf(ns_r_).ToString();      \
  } while (0)
#define NS_EXPECT_OK(expr)                                                       \
  do {                                                                           \
    const auto& ns_r_ = (expr);                                                  \
    EXPECT_TRUE(ns_r_.ok()) << #expr << ": " << StatusOf(ns_r_).ToString();      \
  } while (0)
#define NS_EXPECT_CODE(expr, c)                                                  \
  do {                                                                           \
    const auto& ns_r_ = (expr);                                                  \
    EXPECT_EQ(ErrorCodeName(StatusOf(ns_r_).code()), ErrorCodeName(ErrorCode::c)) \
        << #expr << ": " << StatusOf(ns_r_).ToString();                          \
  } while (0)

// The value of a Result, or a failed expectation and a default value.
template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) {
    ADD_FAILURE() << what << ": " << r.status().ToString();
    return T{};
  }
  return std::move(r).value();
}
#define MUST(expr) Must((expr), #expr)

VolumeKey TestKey() {
  Bytes b(VolumeKey::kSize, 7);
  return *VolumeKey::FromBytes(b);
}

FileServerOptions Options(std::uint8_t node) {
  FileServerOptions o;
  o.node_id = testing::TestNodeId(node);
  o.chunker = {64 * 1024, 128 * 1024, 512 * 1024};
  o.workers = 2;
  o.lock_timeout = std::chrono::milliseconds(200);
  return o;
}

NewNode Dir(std::uint32_t mode = 0755) {
  NewNode n;
  n.type = FileType::kDirectory;
  n.mode = mode;
  return n;
}
NewNode File(std::uint32_t mode = 0644) {
  NewNode n;
  n.type = FileType::kRegular;
  n.mode = mode;
  return n;
}
NewNode Symlink(std::string target) {
  NewNode n;
  n.type = FileType::kSymlink;
  n.mode = 0777;
  n.symlink = std::move(target);
  return n;
}

std::string Hex(ByteSpan b) { return ToHex(b); }

// The names `dir` lists, in listing order.
std::vector<std::string> Names(FileServer& fs, const FileId& dir) {
  std::vector<std::string> names;
  Status s = fs.ReadDir(dir, 0, [&](const DirEntry& e, std::uint64_t) {
    names.push_back(e.name);
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::sort(names.begin(), names.end());  // listings are in placement order
  return names;
}

std::vector<std::pair<DirEntry, std::uint64_t>> List(FileServer& fs, const FileId& dir,
                                                     std::uint64_t offset = 0,
                                                     std::size_t max = SIZE_MAX) {
  std::vector<std::pair<DirEntry, std::uint64_t>> out;
  Status s = fs.ReadDir(dir, offset, [&](const DirEntry& e, std::uint64_t next) {
    out.emplace_back(e, next);
    return out.size() < max;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// Resuming a listing from every `next` offset gives exactly the rest of it.
void ExpectResumable(FileServer& fs, const FileId& dir) {
  auto all = List(fs, dir);
  for (std::size_t i = 0; i < all.size(); ++i) {
    auto rest = List(fs, dir, all[i].second);
    ASSERT_EQ(rest.size(), all.size() - i - 1) << "resuming after entry " << i;
    for (std::size_t j = 0; j < rest.size(); ++j) {
      EXPECT_EQ(rest[j].first.name, all[i + 1 + j].first.name);
      EXPECT_EQ(rest[j].first.entry, all[i + 1 + j].first.entry);
      EXPECT_EQ(rest[j].second, all[i + 1 + j].second);
    }
  }
}

std::string TypeName(FileType t) {
  switch (t) {
    case FileType::kRegular: return "file";
    case FileType::kDirectory: return "dir";
    case FileType::kSymlink: return "symlink";
    case FileType::kFifo: return "fifo";
    case FileType::kSocket: return "socket";
    case FileType::kCharDevice: return "chr";
    case FileType::kBlockDevice: return "blk";
  }
  return "?";
}

std::string AttrLine(const Attr& a) {
  return fmt::format("inode={} type={} mode={:o} uid={} gid={} size={} nlink={} rdev={} atime={} "
                     "mtime={} ctime={}",
                     a.inode.ShortHex(), TypeName(a.type), a.mode, a.uid, a.gid, a.size, a.nlink,
                     a.rdev, a.atime_ns, a.mtime_ns, a.ctime_ns);
}

// Everything the mount could see of the tree, one line per entry, walking
// from the root. Also checks that every listed name looks up to the same
// entry, and that every entry with a name is reachable from the root (none
// lost under a removed directory or in a detached cycle).
std::string Dump(FileServer& fs) {
  std::string out = "/ " + AttrLine(MUST(fs.GetAttr(FileId::Root()))) + "\n";
  std::uint64_t reachable = 0;
  std::function<void(const FileId&, const std::string&, int)> walk =
      [&](const FileId& dir, const std::string& path, int depth) {
        if (depth > 200) {
          ADD_FAILURE() << "tree deeper than any test builds at " << path;
          return;
        }
        auto listed = List(fs, dir);  // placement order is local: compare in name order
        std::sort(listed.begin(), listed.end(),
                  [](const auto& x, const auto& y) { return x.first.name < y.first.name; });
        for (const auto& [e, next] : listed) {
          (void)next;
          ++reachable;
          std::string p = path + "/" + e.name;
          const Attr& a = e.attr;
          out += fmt::format("{} entry={} {}", p, e.entry.ShortHex(), AttrLine(a));
          Result<DirEntry> looked = fs.LookupName(dir, e.name);
          if (!looked.ok() || looked->entry != e.entry) {
            ADD_FAILURE() << "lookup of listed name " << p << " gives "
                          << (looked.ok() ? looked->entry.ShortHex() : looked.status().ToString());
          }
          Attr direct = MUST(fs.GetAttr(a.inode));
          EXPECT_EQ(AttrLine(direct), AttrLine(a)) << p;
          if (a.type == FileType::kSymlink) out += " -> " + MUST(fs.ReadLink(a.inode));
          if (a.type == FileType::kRegular) {
            Manifest m = MUST(fs.Content(a.inode));
            EXPECT_EQ(m.size, a.size) << p;
            out += fmt::format(" content={}:", m.size);
            for (const ChunkRef& r : m.chunks) {
              out += fmt::format("{}/{},", r.IsHole() ? "hole" : r.id.ShortHex(), r.size);
            }
          }
          for (const std::string& x : MUST(fs.ListXattr(a.inode))) {
            out += fmt::format(" {}={}", x, Hex(MUST(fs.GetXattr(a.inode, x))));
          }
          out += "\n";
          if (a.type == FileType::kDirectory) walk(e.entry, p, depth + 1);
        }
      };
  walk(FileId::Root(), "", 0);
  auto live = fs.index().WithDb([](sqlite3* db) { return treedb::CountLiveEntries(db); });
  EXPECT_TRUE(live.ok());
  if (live.ok()) {
    EXPECT_EQ(reachable, *live) << "entries with a name that the root does not reach:\n" << out;
  }
  return out;
}

// Walks up from every entry that is not in the trash: each must reach the
// root — or, while some ops are still on their way (`complete` false), an
// entry this node has not heard of yet. Never a directory in the trash (a
// name lost with a removed directory) or a cycle.
void ExpectNothingLost(FileServer& fs, bool complete) {
  std::vector<FileId> ids;
  Status s = fs.index().WithDb([&](sqlite3* db) -> Status {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT id FROM entries WHERE parent != ?1", -1, &st, nullptr) !=
        SQLITE_OK) {
      return Status::Io(sqlite3_errmsg(db));
    }
    FileId trash = FileId::Trash();
    sqlite3_bind_blob(st, 1, trash.bytes.data(), 16, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
      FileId id;
      std::memcpy(id.bytes.data(), sqlite3_column_blob(st, 0), 16);
      ids.push_back(id);
    }
    sqlite3_finalize(st);
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (const FileId& id : ids) {
    FileId at = id;
    std::string chain = id.ShortHex();
    for (int depth = 0;; ++depth) {
      if (at == FileId::Root()) break;
      if (depth > 1000) {
        ADD_FAILURE() << "cycle above entry " << chain.substr(0, 200);
        break;
      }
      auto e = fs.index().WithDb([&](sqlite3* db) { return treedb::GetEntry(db, at); });
      ASSERT_TRUE(e.ok()) << e.status().ToString();
      if (!e->has_value()) {
        EXPECT_FALSE(complete) << "entry " << chain << " hangs under an unknown entry";
        break;
      }
      if ((*e)->parent == FileId::Trash()) {
        ADD_FAILURE() << "entry " << chain << " is under a removed directory";
        break;
      }
      at = (*e)->parent;
      chain += " < " + at.ShortHex();
    }
  }
}

// ------------------------------------------------------------ TreeOp codec

// Appends a step to `op`; the reference lasts until the next one.
TreeStep& AddStep(TreeOp& op, TreeStep::Kind kind, const FileId& inode) {
  TreeStep& s = op.steps.emplace_back();
  s.kind = kind;
  s.inode = inode;
  return s;
}

TreeOp EveryKind() {
  TreeOp op;
  FileId link = FileId::Random(), xattrs = FileId::Random();
  TreeStep& create = AddStep(op, TreeStep::Kind::kCreate, link);
  create.node = Symlink(std::string(kSymlinkMax, 'x'));
  create.node.uid = 1000;
  create.node.gid = 0xfffffffe;
  create.node.rdev = 0x0102030405060708ull;
  create.time_ns = -1234567890;  // before 1970

  TreeStep& dev = AddStep(op, TreeStep::Kind::kCreate, FileId::Random());
  dev.node.type = FileType::kBlockDevice;
  dev.node.mode = 07777;
  dev.node.rdev = 42;
  dev.time_ns = 1;

  TreeStep& move = AddStep(op, TreeStep::Kind::kMove, link);
  move.entry = FileId::Random();
  move.parent = FileId::Trash();
  move.node.type = FileType::kDirectory;
  move.name = std::string(kNameMax, 'n');

  AttrChange& some = AddStep(op, TreeStep::Kind::kSetAttr, FileId::Random()).attrs;
  some.mode = 04755;
  some.gid = 7;
  some.mtime_ns = -5;

  AttrChange& all = AddStep(op, TreeStep::Kind::kSetAttr, FileId::Root()).attrs;
  all = AttrChange{0, 0, 0, 0, INT64_MAX};

  TreeStep& content = AddStep(op, TreeStep::Kind::kContent, FileId::Random());
  content.manifest.chunks.push_back(ChunkRef{testing::TestChunkId(9), 1000});
  content.manifest.size = 1000;
  content.manifest.AppendHole(5000);
  content.mtime_ns = 77;

  TreeStep& xattr = AddStep(op, TreeStep::Kind::kXattr, xattrs);
  xattr.name = "user.test";
  xattr.value = testing::RandomBytes(kXattrValueMax, 3);

  TreeStep& removed = AddStep(op, TreeStep::Kind::kXattr, xattrs);
  removed.name = std::string(kXattrNameMax, 'q');
  removed.present = false;
  return op;
}

void ExpectSameStep(const TreeStep& a, const TreeStep& b, std::size_t i) {
  SCOPED_TRACE(fmt::format("step {}", i));
  ASSERT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.inode, b.inode);
  switch (a.kind) {
    case TreeStep::Kind::kCreate:
      EXPECT_EQ(a.node.type, b.node.type);
      EXPECT_EQ(a.node.mode, b.node.mode);
      EXPECT_EQ(a.node.uid, b.node.uid);
      EXPECT_EQ(a.node.gid, b.node.gid);
      EXPECT_EQ(a.node.rdev, b.node.rdev);
      EXPECT_EQ(a.node.symlink, b.node.symlink);
      EXPECT_EQ(a.time_ns, b.time_ns);
      break;
    case TreeStep::Kind::kMove:
      EXPECT_EQ(a.entry, b.entry);
      EXPECT_EQ(a.parent, b.parent);
      EXPECT_EQ(a.name, b.name);
      EXPECT_EQ(a.node.type, b.node.type);
      break;
    case TreeStep::Kind::kSetAttr:
      EXPECT_EQ(a.attrs.mode, b.attrs.mode);
      EXPECT_EQ(a.attrs.uid, b.attrs.uid);
      EXPECT_EQ(a.attrs.gid, b.attrs.gid);
      EXPECT_EQ(a.attrs.atime_ns, b.attrs.atime_ns);
      EXPECT_EQ(a.attrs.mtime_ns, b.attrs.mtime_ns);
      break;
    case TreeStep::Kind::kContent:
      EXPECT_TRUE(a.manifest == b.manifest);
      EXPECT_EQ(a.mtime_ns, b.mtime_ns);
      break;
    case TreeStep::Kind::kXattr:
      EXPECT_EQ(a.name, b.name);
      EXPECT_TRUE(a.value == b.value);
      EXPECT_EQ(a.present, b.present);
      break;
  }
}

TEST(TreeOpCodecTest, RoundTripsEveryStepKind) {
  TreeOp op = EveryKind();
  Bytes encoded = op.Encode();
  EXPECT_EQ(encoded[0], TreeOp::kVersion);
  Result<TreeOp> back = TreeOp::Decode(encoded);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->steps.size(), op.steps.size());
  for (std::size_t i = 0; i < op.steps.size(); ++i) ExpectSameStep(op.steps[i], back->steps[i], i);
  // Unset attribute fields stay unset.
  EXPECT_FALSE(back->steps[3].attrs.uid.has_value());
  EXPECT_FALSE(back->steps[3].attrs.atime_ns.has_value());
  EXPECT_TRUE(back->Encode() == encoded);

  // Each kind on its own, too.
  for (const TreeStep& s : op.steps) {
    TreeOp one;
    one.steps.push_back(s);
    auto d = TreeOp::Decode(one.Encode());
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    ASSERT_EQ(d->steps.size(), 1u);
    ExpectSameStep(s, d->steps[0], 0);
  }
}

TEST(TreeOpCodecTest, EveryTruncationAndTrailingBytesAreCorrupt) {
  Bytes encoded = EveryKind().Encode();
  for (std::size_t n = 0; n < encoded.size(); ++n) {
    Result<TreeOp> r = TreeOp::Decode(ByteSpan(encoded.data(), n));
    ASSERT_FALSE(r.ok()) << "a prefix of " << n << " bytes decoded";
    ASSERT_EQ(r.status().code(), ErrorCode::kCorrupt) << n << ": " << r.status().ToString();
  }
  Bytes longer = encoded;
  longer.push_back(0);
  NS_EXPECT_CODE(TreeOp::Decode(longer), kCorrupt);
}

Bytes Header(std::uint8_t version, std::uint16_t count) {
  return Bytes{version, static_cast<std::uint8_t>(count), static_cast<std::uint8_t>(count >> 8)};
}

TEST(TreeOpCodecTest, RejectsBadHeadersKindsAndFields) {
  NS_EXPECT_CODE(TreeOp::Decode(Header(2, 1)), kInvalidArgument);  // unknown version
  NS_EXPECT_CODE(TreeOp::Decode(Header(1, 0)), kCorrupt);           // no steps
  NS_EXPECT_CODE(TreeOp::Decode(Header(1, 4097)), kCorrupt);        // too many steps
  for (std::uint8_t kind : {0, 6, 200, 255}) {
    Bytes b = Header(1, 1);
    b.push_back(kind);
    b.resize(b.size() + 64, 0);
    NS_EXPECT_CODE(TreeOp::Decode(b), kInvalidArgument);
  }

  auto move_named = [](std::string name) {
    TreeOp op;
    TreeStep s;
    s.kind = TreeStep::Kind::kMove;
    s.entry = FileId::Random();
    s.parent = FileId::Root();
    s.inode = s.entry;
    s.name = std::move(name);
    op.steps.push_back(s);
    return op;
  };
  NS_EXPECT_OK(TreeOp::Decode(move_named("ok").Encode()));
  for (std::string bad : {std::string(""), std::string("."), std::string(".."),
                          std::string("a/b"), std::string("a\0b", 3), std::string(256, 'x')}) {
    SCOPED_TRACE(bad);
    NS_EXPECT_CODE(TreeOp::Decode(move_named(bad).Encode()), kCorrupt);
  }
  // Moving the root or the trash.
  TreeOp root = move_named("r");
  root.steps[0].entry = FileId::Root();
  NS_EXPECT_CODE(TreeOp::Decode(root.Encode()), kCorrupt);
  root.steps[0].entry = FileId::Trash();
  NS_EXPECT_CODE(TreeOp::Decode(root.Encode()), kCorrupt);

  TreeOp op;
  TreeStep c;
  c.kind = TreeStep::Kind::kCreate;
  c.inode = FileId::Root();  // reserved
  op.steps.push_back(c);
  NS_EXPECT_CODE(TreeOp::Decode(op.Encode()), kCorrupt);
  op.steps[0].inode = FileId::Random();
  op.steps[0].node.mode = 0100644;  // type bits
  NS_EXPECT_CODE(TreeOp::Decode(op.Encode()), kCorrupt);
  op.steps[0].node.mode = 0644;
  op.steps[0].node.type = static_cast<FileType>(8);
  NS_EXPECT_CODE(TreeOp::Decode(op.Encode()), kCorrupt);
  op.steps[0].node = Symlink(std::string(kSymlinkMax + 1, 's'));
  NS_EXPECT_CODE(TreeOp::Decode(op.Encode()), kCorrupt);

  TreeOp xa;
  TreeStep x;
  x.kind = TreeStep::Kind::kXattr;
  x.inode = FileId::Random();
  x.name = "";
  xa.steps.push_back(x);
  NS_EXPECT_CODE(TreeOp::Decode(xa.Encode()), kCorrupt);
  xa.steps[0].name = std::string(kXattrNameMax + 1, 'n');
  NS_EXPECT_CODE(TreeOp::Decode(xa.Encode()), kCorrupt);
  xa.steps[0].name = "user.a";
  xa.steps[0].value.resize(kXattrValueMax + 1);
  NS_EXPECT_CODE(TreeOp::Decode(xa.Encode()), kCorrupt);

  TreeOp sa;
  TreeStep a;
  a.kind = TreeStep::Kind::kSetAttr;
  a.inode = FileId::Random();
  a.attrs.mode = 0170000;
  sa.steps.push_back(a);
  NS_EXPECT_CODE(TreeOp::Decode(sa.Encode()), kCorrupt);

  // A content step whose manifest is damaged.
  TreeOp co;
  TreeStep m;
  m.kind = TreeStep::Kind::kContent;
  m.inode = FileId::Random();
  m.manifest.AppendHole(10);
  co.steps.push_back(m);
  Bytes enc = co.Encode();
  enc[enc.size() - 1] ^= 1;  // the manifest's checksum
  EXPECT_FALSE(TreeOp::Decode(enc).ok());
}

TEST(TreeOpCodecTest, RandomByteFlipsNeverCrash) {
  Bytes encoded = EveryKind().Encode();
  std::mt19937_64 rng(1);
  int decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes b = encoded;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // Most flips land in the header and the small steps; the big ones are cheap to skip.
      std::size_t at = (rng() % 2 == 0) ? rng() % std::min<std::size_t>(b.size(), 200)
                                        : rng() % b.size();
      b[at] ^= static_cast<std::uint8_t>(1 + rng() % 255);
    }
    Result<TreeOp> r = TreeOp::Decode(b);
    if (r.ok()) {
      ++decoded;
      // What decodes is valid: its encoding decodes to the same op (values
      // of unset attribute fields are not kept, so the bytes may differ).
      Bytes again = r->Encode();
      Result<TreeOp> r2 = TreeOp::Decode(again);
      ASSERT_TRUE(r2.ok()) << r2.status().ToString();
      EXPECT_TRUE(r2->Encode() == again);
    } else {
      ErrorCode c = r.status().code();
      EXPECT_TRUE(c == ErrorCode::kCorrupt || c == ErrorCode::kInvalidArgument)
          << r.status().ToString();
    }
  }
  // Some flips only change values (ids, times) and still decode.
  EXPECT_GT(decoded, 0);
}

TEST(ValidateNameTest, Limits) {
  NS_EXPECT_OK(ValidateName("a"));
  NS_EXPECT_OK(ValidateName(std::string(255, 'a')));
  NS_EXPECT_OK(ValidateName("..."));
  NS_EXPECT_OK(ValidateName(".hidden"));
  NS_EXPECT_OK(ValidateName("name~12345678"));
  NS_EXPECT_CODE(ValidateName(std::string(256, 'a')), kNameTooLong);
  NS_EXPECT_CODE(ValidateName(""), kInvalidArgument);
  NS_EXPECT_CODE(ValidateName("."), kInvalidArgument);
  NS_EXPECT_CODE(ValidateName(".."), kInvalidArgument);
  NS_EXPECT_CODE(ValidateName("a/b"), kInvalidArgument);
  NS_EXPECT_CODE(ValidateName("/"), kInvalidArgument);
  NS_EXPECT_CODE(ValidateName(std::string("a\0b", 3)), kInvalidArgument);
}

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

// ------------------------------------------------------------ replication

// A node of an in-process cluster: its FileServer and the ops it made.
struct Node {
  std::vector<Op> log;  // its own ops, in seq order, once durable (before fs: see ops_)
  std::unique_ptr<FileServer> fs;
  std::map<NodeId, std::size_t> applied;  // per origin: how many of its ops it has
  // The log with every op committed so far (Flush publishes them).
  std::vector<Op>& Log() {
    Status s = fs->Flush();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return log;
  }
  FileServer& operator*() { return *fs; }
  FileServer* operator->() { return fs.get(); }
};

class Cluster {
 public:
  explicit Cluster(int n) {
    for (int i = 0; i < n; ++i) nodes_.push_back(Make());
  }

  Node& operator[](std::size_t i) { return *nodes_[i]; }
  std::size_t size() const { return nodes_.size(); }

  // A node that makes no ops of its own, only receives.
  std::unique_ptr<Node> Make() {
    auto node = std::make_unique<Node>();
    std::uint8_t id = ++made_;
    auto index = Index::Open(dir_ / fmt::format("node{}.db", id));
    EXPECT_TRUE(index.ok()) << index.status().ToString();
    auto fs = FileServer::Create(std::make_unique<MemoryChunkStore>(), std::move(*index),
                                 TestKey(), Options(id));
    EXPECT_TRUE(fs.ok()) << fs.status().ToString();
    node->fs = std::move(*fs);
    Node* raw = node.get();
    node->fs->SetOpListener([raw](const Op& op, bool local) {
      if (local) raw->log.push_back(op);
    });
    return node;
  }

  // Delivers up to `count` more of `from`'s ops to `to`, in seq order.
  static void Deliver(Node& from, Node& to, std::size_t count = SIZE_MAX) {
    std::size_t& have = to.applied[from->node_id()];
    for (; count > 0 && have < from.Log().size(); --count) {
      Result<bool> r = to->ApplyRemoteOp(from.Log()[have]);
      ASSERT_TRUE(r.ok()) << "op " << have + 1 << ": " << r.status().ToString();
      ASSERT_TRUE(*r) << "op " << have + 1 << " was already applied";
      ++have;
    }
  }

  // What an anti-entropy exchange does: `to` gets every op `from` has, of
  // every origin.
  void Relay(Node& from, Node& to) {
    for (auto& n : nodes_) {
      if (n.get() == &to) continue;
      std::size_t known = n.get() == &from ? n->Log().size() : from.applied[(*n)->node_id()];
      std::size_t have = to.applied[(*n)->node_id()];
      if (known > have) Deliver(*n, to, known - have);
    }
  }

  // Everything `to` lacks of every node's ops, taking the next origin at random.
  void CatchUp(Node& to, std::mt19937_64& rng) {
    for (;;) {
      std::vector<Node*> pending;
      for (auto& n : nodes_) {
        if (n.get() != &to && to.applied[(*n)->node_id()] < n->Log().size()) pending.push_back(n.get());
      }
      if (pending.empty()) return;
      Deliver(*pending[rng() % pending.size()], to, 1 + rng() % 3);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }

  // Every node gets everything, in a random order of nodes and origins.
  void SyncAll(std::mt19937_64& rng) {
    std::vector<Node*> order;
    for (auto& n : nodes_) order.push_back(n.get());
    std::shuffle(order.begin(), order.end(), rng);
    for (Node* n : order) CatchUp(*n, rng);
  }

  // Copies every chunk `from` holds to `to` (ops name chunks, not carry them).
  static void ShipChunks(Node& from, Node& to) {
    Status s = from->chunk_store().ForEach([&](const ChunkId& id, std::uint64_t) {
      Bytes sealed;
      EXPECT_TRUE(from->chunk_store().Get(id, &sealed).ok());
      EXPECT_TRUE(to->chunk_store().Put(id, sealed).ok());
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
  }

  // Syncs everyone, and checks that every node and `observers` fresh nodes
  // (each fed every op in its own random interleaving) show the same tree.
  // Returns it.
  std::string Converge(std::mt19937_64& rng, int observers = 2) {
    SyncAll(rng);
    std::string first = Dump(*nodes_[0]->fs);
    for (std::size_t i = 1; i < nodes_.size(); ++i) {
      EXPECT_EQ(Dump(*nodes_[i]->fs), first) << "node " << i + 1 << " differs from node 1";
    }
    for (int o = 0; o < observers; ++o) {
      std::unique_ptr<Node> obs = Make();
      CatchUp(*obs, rng);
      EXPECT_EQ(Dump(*obs->fs), first) << "observer " << o << " differs from node 1";
    }
    return first;
  }

 private:
  testing::TempDir dir_;
  std::uint8_t made_ = 0;
  std::vector<std::unique_ptr<Node>> nodes_;
};

const FileId kRoot = FileId::Root();

FileId MkOn(Node& n, const FileId& dir, std::string_view name, const NewNode& node) {
  return MUST(n->MakeNode(dir, name, node)).attr.inode;
}
FileId At(Node& n, const FileId& dir, std::string_view name) {
  return MUST(n->LookupName(dir, name)).attr.inode;
}
bool HasOn(Node& n, const FileId& dir, std::string_view name) {
  return n->LookupName(dir, name).ok();
}
// The op of `n`'s log that is later in the total order.
bool Later(const Op& a, const Op& b) { return a.WinsOver(b); }

std::vector<std::uint64_t> Seeds() { return {1, 2, 3, 4, 5}; }

// Runs `a` then `b` when `a_first`, else `b` then `a`.
void InOrder(bool a_first, const std::function<void()>& a, const std::function<void()>& b) {
  (a_first ? a : b)();
  (a_first ? b : a)();
}

// Runs `scenario` once per seed, each time on a fresh cluster of `nodes`.
void ForEachSeed(int nodes,
                 const std::function<void(Cluster&, std::mt19937_64&, std::uint64_t)>& scenario) {
  for (std::uint64_t seed : Seeds()) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    std::mt19937_64 rng(seed);
    Cluster c(nodes);
    scenario(c, rng, seed);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// (a) A: mv a b/a ; B: mv b a/b, concurrently. One of the two moves is
// skipped everywhere; no cycle, nothing lost.
TEST(ConvergenceTest, ConcurrentRenamesThatWouldFormACycle) {
  ForEachSeed(2, [](Cluster& c, std::mt19937_64& rng, std::uint64_t seed) {
    FileId a = MkOn(c[0], kRoot, "a", Dir());
    FileId b = MkOn(c[0], kRoot, "b", Dir());
    MkOn(c[0], a, "in_a", File());
    MkOn(c[0], b, "in_b", File());
    c.SyncAll(rng);
    // Who goes first (and so is older) alternates with the seed.
    int first = static_cast<int>(seed % 2);
    if (first == 0) {
      NS_ASSERT_OK(c[0]->Rename(kRoot, "a", b, "a"));
      NS_ASSERT_OK(c[1]->Rename(kRoot, "b", a, "b"));
    } else {
      NS_ASSERT_OK(c[1]->Rename(kRoot, "b", a, "b"));
      NS_ASSERT_OK(c[0]->Rename(kRoot, "a", b, "a"));
    }
    bool a_moved_first = Later(c[1].Log().back(), c[0].Log().back());
    std::string tree = c.Converge(rng);
    // The older move stands; the newer one would close a cycle and is skipped.
    for (std::size_t i = 0; i < c.size(); ++i) {
      Node& n = c[i];
      if (a_moved_first) {
        EXPECT_EQ(Names(*n, kRoot), std::vector<std::string>{"b"});
        EXPECT_EQ(At(n, b, "a"), a);
      } else {
        EXPECT_EQ(Names(*n, kRoot), std::vector<std::string>{"a"});
        EXPECT_EQ(At(n, a, "b"), b);
      }
      EXPECT_TRUE(HasOn(n, a, "in_a"));
      EXPECT_TRUE(HasOn(n, b, "in_b"));
    }
  });
}

TEST(ConvergenceTest, ThreeWayRenameCycle) {
  ForEachSeed(3, [](Cluster& c, std::mt19937_64& rng, std::uint64_t) {
    FileId d[3];
    const char* names[3] = {"x", "y", "z"};
    for (int i = 0; i < 3; ++i) d[i] = MkOn(c[0], kRoot, names[i], Dir());
    c.SyncAll(rng);
    // Node i moves d[i] into d[i+1]: together, a cycle of three.
    std::vector<int> order = {0, 1, 2};
    std::shuffle(order.begin(), order.end(), rng);
    for (int i : order) NS_ASSERT_OK(c[i]->Rename(kRoot, names[i], d[(i + 1) % 3], names[i]));
    std::string tree = c.Converge(rng);
    // Two of the moves stand: a chain of three under the root.
    EXPECT_EQ(Names(*c[0], kRoot).size(), 1u) << tree;
    EXPECT_EQ(std::count(tree.begin(), tree.end(), '\n'), 4) << tree;
  });
}

// (b) Two nodes create the same name in one directory: both files stay; the
// older one is listed as "name~<8 hex of its entry>".
TEST(ConvergenceTest, ConcurrentCreatesOfOneNameKeepBoth) {
  ForEachSeed(2, [](Cluster& c, std::mt19937_64& rng, std::uint64_t) {
    FileId d = MkOn(c[0], kRoot, "d", Dir());
    c.SyncAll(rng);
    FileId f0 = MkOn(c[0], d, "f", File(0600));
    FileId f1 = MkOn(c[1], d, "f", File(0640));
    // Directories too, each with something inside.
    FileId s0 = MkOn(c[1], d, "sub", Dir());
    FileId s1 = MkOn(c[0], d, "sub", Dir());
    MkOn(c[1], s0, "from1", File());
    MkOn(c[0], s1, "from0", File());
    // Each node made f, sub, and a file in sub, in that order.
    const Op& make0 = c[0].Log()[c[0].Log().size() - 3];
    const Op& make1 = c[1].Log()[c[1].Log().size() - 3];
    bool f1_newer = Later(make1, make0);
    std::string tree = c.Converge(rng);
    FileId newer = f1_newer ? f1 : f0, older = f1_newer ? f0 : f1;
    std::string loser = "f~" + older.ShortHex();
    for (std::size_t i = 0; i < c.size(); ++i) {
      Node& n = c[i];
      std::vector<std::string> names = Names(*n, d);
      ASSERT_EQ(names.size(), 4u) << tree;
      EXPECT_EQ(At(n, d, "f"), newer);
      EXPECT_EQ(At(n, d, loser), older);
      EXPECT_TRUE(std::find(names.begin(), names.end(), loser) != names.end()) << tree;
      EXPECT_EQ(MUST(n->LookupName(d, loser)).name, loser);
      NS_EXPECT_CODE(n->LookupName(d, "f~00000000"), kNotFound);
      NS_EXPECT_CODE(n->LookupName(d, "f~" + newer.ShortHex()), kNotFound);
      // Both directories, each with its own child.
      FileId sub = At(n, d, "sub");
      FileId other = sub == s0 ? s1 : s0;
      EXPECT_EQ(At(n, d, "sub~" + other.ShortHex()), other);
      EXPECT_TRUE(HasOn(n, s0, "from1"));
      EXPECT_TRUE(HasOn(n, s1, "from0"));
      EXPECT_EQ(MUST(n->GetAttr(d)).nlink, 4u);
      ExpectResumable(*n, d);
    }
    // The loser's name works for every call, and removing the winner gives its name back.
    NS_ASSERT_OK(c[0]->Rename(d, loser, d, "g"));
    NS_ASSERT_OK(c[1]->Unlink(d, "f"));
    c.Converge(rng, 1);
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_EQ(Names(*c[i], d), (std::vector<std::string>{"g", "sub", "sub~" + (At(c[i], d, "sub") == s0 ? s1 : s0).ShortHex()}));
      EXPECT_EQ(At(c[i], d, "g"), older);
    }
  });
}

// (c) A file made in a directory that another node removes at the same
// time is not lost: the directory comes back (or its removal is skipped).
TEST(ConvergenceTest, CreateInAConcurrentlyRemovedDirectoryKeepsBoth) {
  ForEachSeed(2, [](Cluster& c, std::mt19937_64& rng, std::uint64_t seed) {
    FileId d = MkOn(c[0], kRoot, "d", Dir());
    FileId e = MkOn(c[0], d, "e", Dir());
    c.SyncAll(rng);
    // Odd seeds remove first (the creates bring the directories back),
    // even ones create first (the removals are skipped).
    auto remove = [&] {
      NS_ASSERT_OK(c[0]->RemoveDir(d, "e"));
      NS_ASSERT_OK(c[0]->RemoveDir(kRoot, "d"));
    };
    auto create = [&] {
      MkOn(c[1], d, "f", File());
      MkOn(c[1], e, "g", File());
    };
    InOrder(seed % 2 == 1, remove, create);
    std::string tree = c.Converge(rng);
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_EQ(At(c[i], kRoot, "d"), d) << tree;
      EXPECT_EQ(At(c[i], d, "e"), e) << tree;
      EXPECT_TRUE(HasOn(c[i], d, "f")) << tree;
      EXPECT_TRUE(HasOn(c[i], e, "g")) << tree;
    }
    // The directories work as directories again on the node that removed them.
    MkOn(c[0], e, "h", File());
    NS_EXPECT_CODE(c[0]->RemoveDir(kRoot, "d"), kNotEmpty);
  });
}

// (c') Two nodes remove the same empty directory while a third makes a file
// in it: the file is still not lost.
TEST(ConvergenceTest, CreateInADirectoryRemovedTwiceConcurrently) {
  ForEachSeed(3, [](Cluster& c, std::mt19937_64& rng, std::uint64_t) {
    FileId d = MkOn(c[0], kRoot, "d", Dir());
    c.SyncAll(rng);
    NS_ASSERT_OK(c[0]->RemoveDir(kRoot, "d"));
    NS_ASSERT_OK(c[1]->RemoveDir(kRoot, "d"));
    MkOn(c[2], d, "f", File());
    std::string tree = c.Converge(rng);
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_EQ(At(c[i], kRoot, "d"), d) << tree;
      EXPECT_TRUE(HasOn(c[i], d, "f")) << tree;
    }
  });
}

// A move of a directory into one that another node removed after moving it
// under the first: the removed one may come back only where it closes no
// cycle. Nothing is lost, no cycle forms.
TEST(ConvergenceTest, ResurrectionNeverClosesACycle) {
  ForEachSeed(2, [](Cluster& c, std::mt19937_64& rng, std::uint64_t) {
    FileId a = MkOn(c[0], kRoot, "A", Dir());
    FileId x = MkOn(c[0], kRoot, "X", Dir());
    FileId d = MkOn(c[0], x, "D", Dir());
    MkOn(c[0], a, "keep", File());
    c.SyncAll(rng);
    // Node 1: mv X/D A/D ; rmdir A/D. Node 2, later, not having seen them: mv A X/D/A.
    NS_ASSERT_OK(c[0]->Rename(x, "D", a, "D"));
    NS_ASSERT_OK(c[0]->RemoveDir(a, "D"));
    NS_ASSERT_OK(c[1]->Rename(kRoot, "A", d, "A"));
    std::string tree = c.Converge(rng);
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_TRUE(HasOn(c[i], kRoot, "X")) << tree;
      // A is reachable from the root, with its file (Dump checks nothing else is lost).
      EXPECT_NE(tree.find("A/keep"), std::string::npos) << tree;
    }
  });
}

// (d) Concurrent attribute, time, xattr and content writes: the write whose
// op is later in the total order wins, identically everywhere, whatever
// order the ops arrive in.
TEST(ConvergenceTest, LastWriterWinsForAttributesAndContent) {
  ForEachSeed(3, [](Cluster& c, std::mt19937_64& rng, std::uint64_t seed) {
    FileId f = MkOn(c[0], kRoot, "f", File());
    c.SyncAll(rng);
    // Everyone sets the xattr first, so that a removal has something to remove.
    for (int i = 0; i < 3; ++i) NS_ASSERT_OK(c[i]->SetXattr(f, "user.k", AsBytes("init"), 0));
    auto mode_of = [](int i) { return 0600u + static_cast<std::uint32_t>(i) * 010; };
    // A later write may set an older time: the op order decides, not the value.
    auto mtime_of = [](int i) { return std::int64_t{1'000'000'000} - i * 1000; };
    auto xattr_of = [](int i) { return i == 1 ? std::string() : "v" + std::to_string(i); };
    auto data_of = [&](int i) { return testing::RandomBytes(1000 + i * 777, seed * 10 + i); };
    // Four rounds (mode, mtime, xattr, content); in each, the nodes write in a random order.
    std::vector<std::vector<const Op*>> ops(4, std::vector<const Op*>(3));
    std::vector<std::vector<std::size_t>> at(4, std::vector<std::size_t>(3));
    for (int step = 0; step < 4; ++step) {
      std::vector<int> order = {0, 1, 2};
      std::shuffle(order.begin(), order.end(), rng);
      for (int i : order) {
        Node& n = c[i];
        if (step == 0) {
          AttrChange m;
          m.mode = mode_of(i);
          MUST(n->SetAttr(f, m));
        } else if (step == 1) {
          AttrChange t;
          t.mtime_ns = mtime_of(i);
          MUST(n->SetAttr(f, t));
        } else if (step == 2) {
          if (xattr_of(i).empty()) {
            NS_ASSERT_OK(n->RemoveXattr(f, "user.k"));
          } else {
            NS_ASSERT_OK(n->SetXattr(f, "user.k", AsBytes(xattr_of(i)), 0));
          }
        } else {
          Bytes data = data_of(i);
          FileServer::ChunkPins pins(n.fs.get());
          MemoryReader r(data);
          Manifest man = MUST(n->StoreData(r, &pins));
          NS_ASSERT_OK(n->CommitContent(f, man, mtime_of(i) + 1, &pins));
        }
        at[step][i] = n.Log().size() - 1;
      }
    }
    auto op = [&](int step, int i) -> const Op& { return c[i].Log()[at[step][i]]; };
    auto winner = [&](int step) {
      int best = 0;
      for (int i = 1; i < 3; ++i) {
        if (Later(op(step, i), op(step, best))) best = i;
      }
      return best;
    };
    // Content needs its chunks where it is read.
    for (std::size_t i = 0; i < 3; ++i) {
      for (std::size_t j = 0; j < 3; ++j) {
        if (i != j) Cluster::ShipChunks(c[i], c[j]);
      }
    }
    std::string tree = c.Converge(rng, 2);
    // mtime is written by the mtime round and by the content round: the later of all wins.
    int mt = winner(1), ct = winner(3);
    std::int64_t want_mtime = Later(op(3, ct), op(1, mt)) ? mtime_of(ct) + 1 : mtime_of(mt);
    Bytes want_data = data_of(winner(3));
    for (std::size_t i = 0; i < 3; ++i) {
      Node& n = c[i];
      Attr a = MUST(n->GetAttr(f));
      EXPECT_EQ(a.mode, mode_of(winner(0)));
      EXPECT_EQ(a.mtime_ns, want_mtime);
      EXPECT_EQ(a.size, want_data.size());
      if (xattr_of(winner(2)).empty()) {
        NS_EXPECT_CODE(n->GetXattr(f, "user.k"), kNoAttribute);
      } else {
        EXPECT_EQ(AsString(MUST(n->GetXattr(f, "user.k"))), xattr_of(winner(2)));
      }
      Manifest m = MUST(n->Content(f));
      Bytes back(m.size);
      EXPECT_EQ(MUST(n->ReadContent(m, 0, back)), m.size);
      EXPECT_TRUE(back == want_data);
    }
  });
}

// (f) One node removes a file (or an empty directory) while another renames
// it: whichever op is later decides, identically everywhere.
TEST(ConvergenceTest, RenameVersusRemove) {
  ForEachSeed(2, [](Cluster& c, std::mt19937_64& rng, std::uint64_t seed) {
    // The seeds cover every (file or directory, which goes first) pair.
    bool dir = seed % 2 == 1, remove_first = (seed / 2) % 2 == 1;
    SCOPED_TRACE(fmt::format("dir {} remove_first {}", dir, remove_first));
    FileId sub = MkOn(c[0], kRoot, "sub", Dir());
    FileId f = MkOn(c[0], kRoot, "f", dir ? Dir() : File());
    c.SyncAll(rng);
    auto remove = [&] {
      NS_ASSERT_OK(dir ? c[0]->RemoveDir(kRoot, "f") : c[0]->Unlink(kRoot, "f"));
    };
    auto rename = [&] { NS_ASSERT_OK(c[1]->Rename(kRoot, "f", sub, "g")); };
    InOrder(remove_first, remove, rename);
    bool rename_later = Later(c[1].Log().back(), c[0].Log().back());
    std::string tree = c.Converge(rng);
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_FALSE(HasOn(c[i], kRoot, "f")) << tree;
      if (rename_later) {
        // The rename takes the name out of the trash again.
        EXPECT_EQ(At(c[i], sub, "g"), f) << tree;
      } else {
        EXPECT_FALSE(HasOn(c[i], sub, "g")) << tree;
      }
      if (!dir) {
        EXPECT_EQ(MUST(c[i]->GetAttr(f)).nlink, rename_later ? 1u : 0u);
      }
    }
  });
}

// Concurrent renames of one file to two places: it ends in one, once.
TEST(ConvergenceTest, ConcurrentRenamesOfOneFile) {
  ForEachSeed(3, [](Cluster& c, std::mt19937_64& rng, std::uint64_t) {
    FileId f = MkOn(c[0], kRoot, "f", File());
    FileId a = MkOn(c[0], kRoot, "a", Dir());
    FileId b = MkOn(c[0], kRoot, "b", Dir());
    c.SyncAll(rng);
    NS_ASSERT_OK(c[0]->Rename(kRoot, "f", a, "f"));
    NS_ASSERT_OK(c[1]->Rename(kRoot, "f", b, "f"));
    MUST(c[2]->Link(f, kRoot, "link"));
    bool b_later = Later(c[1].Log().back(), c[0].Log().back());
    std::string tree = c.Converge(rng);
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_EQ(HasOn(c[i], a, "f"), !b_later) << tree;
      EXPECT_EQ(HasOn(c[i], b, "f"), b_later) << tree;
      EXPECT_FALSE(HasOn(c[i], kRoot, "f"));
      EXPECT_EQ(At(c[i], kRoot, "link"), f);
      EXPECT_EQ(MUST(c[i]->GetAttr(f)).nlink, 2u);
    }
  });
}

// Ops may arrive before the ops they depend on (another origin's create of
// the inode they name): nothing shows until it comes, then all of it does.
TEST(ConvergenceTest, OpsAheadOfTheirCausesWait) {
  Cluster c(2);
  std::unique_ptr<Node> late = c.Make();
  FileId d = MkOn(c[0], kRoot, "d", Dir());
  Cluster::Deliver(c[0], c[1]);
  FileId f = MkOn(c[1], d, "f", File());
  NS_ASSERT_OK(c[1]->SetXattr(d, "user.x", AsBytes("y"), 0));
  // `late` gets node 2's ops first: a name in a directory it does not know.
  Cluster::Deliver(c[1], *late);
  EXPECT_TRUE(Names(**late, kRoot).empty());
  NS_EXPECT_CODE((*late)->GetAttr(d), kNotFound);
  Cluster::Deliver(c[0], *late);
  EXPECT_EQ(At(*late, d, "f"), f);
  EXPECT_EQ(AsString(MUST((*late)->GetXattr(d, "user.x"))), "y");
  Cluster::Deliver(c[1], c[0]);
  EXPECT_EQ(Dump(**late), Dump(*c[0]));
  // A gap in one origin's ops is refused, a repeat ignored.
  MkOn(c[0], kRoot, "x", File());
  MkOn(c[0], kRoot, "y", File());
  NS_EXPECT_CODE(c[1]->ApplyRemoteOp(c[0].Log().back()), kUnavailable);
  EXPECT_FALSE(MUST(c[1]->ApplyRemoteOp(c[0].Log().front())));
}

// (e) Three nodes each make a few hundred random changes on their own view,
// with partial syncs now and then; after a full exchange in random order
// every node, and fresh nodes fed in other orders, show the same tree.
class RandomWorkload {
 public:
  RandomWorkload(Node& node, std::mt19937_64& rng) : n_(node), rng_(rng) {}

  void Step() {
    // A view a few ops old is fine: a name gone since gives kNotFound.
    if (steps_++ % 4 == 0) Scan();
    int kind = static_cast<int>(rng_() % 100);
    Status s = Status::Ok();
    const FileId& dir = Pick(dirs_);
    std::string name = Name();
    if (kind < 12) {
      s = n_->MakeNode(dir, name, Dir(0700 + static_cast<std::uint32_t>(rng_() % 077))).status();
    } else if (kind < 27) {
      s = n_->MakeNode(dir, name, File()).status();
    } else if (kind < 30) {
      s = n_->MakeNode(dir, name, Symlink(name + "-target")).status();
    } else if (kind < 50 && !items_.empty()) {
      const Item& it = Pick(items_);
      unsigned flags = 0;
      int f = static_cast<int>(rng_() % 10);
      if (f == 0) flags = FileServer::kRenameNoReplace;
      if (f == 1 && !items_.empty()) {
        const Item& other = Pick(items_);
        s = n_->Rename(it.parent, it.e.name, other.parent, other.e.name,
                       FileServer::kRenameExchange);
      } else {
        s = n_->Rename(it.parent, it.e.name, dir, name, flags);
      }
    } else if (kind < 62 && !items_.empty()) {
      const Item& it = Pick(items_);
      s = it.e.attr.type == FileType::kDirectory ? n_->RemoveDir(it.parent, it.e.name)
                                                  : n_->Unlink(it.parent, it.e.name);
    } else if (kind < 68 && !items_.empty()) {
      const Item& it = Pick(items_);
      s = n_->Link(it.e.attr.inode, dir, name).status();
    } else if (kind < 76 && !items_.empty()) {
      const Item& it = Pick(items_);
      AttrChange ch;
      if (rng_() % 2) ch.mode = static_cast<std::uint32_t>(rng_() % 07777);
      if (rng_() % 2) ch.uid = static_cast<std::uint32_t>(rng_() % 3);
      if (rng_() % 3 == 0) ch.mtime_ns = static_cast<std::int64_t>(rng_() % 1000000);
      if (rng_() % 3 == 0) ch.atime_ns = static_cast<std::int64_t>(rng_() % 1000000);
      s = n_->SetAttr(it.e.attr.inode, ch).status();
    } else if (kind < 86 && !items_.empty()) {
      const Item& it = Pick(items_);
      std::string xname = rng_() % 2 ? "user.a" : "user.b";
      if (rng_() % 4 == 0) {
        s = n_->RemoveXattr(it.e.attr.inode, xname);
      } else {
        int flags = static_cast<int>(rng_() % 3);  // 0, XATTR_CREATE, XATTR_REPLACE
        s = n_->SetXattr(it.e.attr.inode, xname, testing::RandomBytes(rng_() % 20, rng_()), flags);
      }
    } else if (!items_.empty()) {
      const Item& it = Pick(items_);
      Bytes data = testing::RandomBytes(rng_() % 3000, rng_());
      FileServer::ChunkPins pins(n_.fs.get());
      MemoryReader r(data);
      Result<Manifest> m = n_->StoreData(r, &pins);
      s = m.status();
      if (m.ok()) {
        Manifest man = *m;
        if (rng_() % 4 == 0) man.AppendHole(rng_() % 100000);
        s = n_->CommitContent(it.e.attr.inode, man, static_cast<std::int64_t>(rng_() % 1000), &pins);
      }
    }
    ErrorCode c = s.code();
    bool expected = c == ErrorCode::kOk || c == ErrorCode::kExists || c == ErrorCode::kNotEmpty ||
                    c == ErrorCode::kNotDirectory || c == ErrorCode::kIsDirectory ||
                    c == ErrorCode::kInvalidArgument || c == ErrorCode::kNotFound ||
                    c == ErrorCode::kNoAttribute;
    EXPECT_TRUE(expected) << "op kind " << kind << ": " << s.ToString();
    if (c == ErrorCode::kOk) ++done_;
  }

  int done() const { return done_; }

 private:
  struct Item {
    FileId parent;
    DirEntry e;
  };

  void Scan() {
    dirs_.assign(1, FileId::Root());
    items_.clear();
    std::function<void(const FileId&, int)> walk = [&](const FileId& dir, int depth) {
      if (depth > 100) return;
      for (const auto& [e, next] : List(*n_, dir)) {
        (void)next;
        items_.push_back(Item{dir, e});
        if (e.attr.type == FileType::kDirectory) {
          dirs_.push_back(e.entry);
          walk(e.entry, depth + 1);
        }
      }
    };
    walk(FileId::Root(), 0);
  }

  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[rng_() % v.size()];
  }
  std::string Name() {
    static const char* kNames[] = {"a", "b", "c", "d", "e", "f", "g"};
    return kNames[rng_() % 7];
  }

  Node& n_;
  std::mt19937_64& rng_;
  std::vector<FileId> dirs_;
  std::vector<Item> items_;
  int done_ = 0;
  int steps_ = 0;
};

TEST(ConvergenceTest, RandomWorkloadsConverge) {
  for (std::uint64_t seed : {11u, 22u, 33u}) {
    SCOPED_TRACE(seed);
    std::mt19937_64 rng(seed);
    Cluster c(3);
    std::vector<RandomWorkload> work;
    for (std::size_t i = 0; i < 3; ++i) work.emplace_back(c[i], rng);
    constexpr int kRounds = 25, kOpsPerRound = 10;
    for (int round = 0; round < kRounds; ++round) {
      for (std::size_t i = 0; i < 3; ++i) {
        for (int k = 0; k < kOpsPerRound; ++k) work[i].Step();
      }
      // A partial sync: some (from, to) pairs exchange, either the way
      // anti-entropy does (everything `from` has, of every origin) or just
      // some of `from`'s own ops (ahead of ops of others they depend on).
      for (std::size_t from = 0; from < 3; ++from) {
        for (std::size_t to = 0; to < 3; ++to) {
          if (from == to || rng() % 3 != 0) continue;
          if (rng() % 2 == 0) {
            c.Relay(c[from], c[to]);
          } else {
            Cluster::Deliver(c[from], c[to], 1 + rng() % 20);
          }
          ASSERT_FALSE(::testing::Test::HasFatalFailure());
        }
      }
      for (std::size_t i = 0; i < 3; ++i) ExpectNothingLost(*c[i], /*complete=*/false);
    }
    for (std::size_t i = 0; i < 3; ++i) EXPECT_GT(work[i].done(), kRounds * kOpsPerRound / 4);
    std::string tree = c.Converge(rng, 2);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    EXPECT_GT(std::count(tree.begin(), tree.end(), '\n'), 5) << tree;
  }
}

}  // namespace
}  // namespace dfs::core
