// The tree op encoding (core/namespace.h): every step kind round-trips,
// truncated, padded, malformed and randomly damaged encodings are refused
// (never a crash), and names are validated. (tests/namespace_test.cc holds
// the tree calls on one node, tests/namespace_convergence_test.cc the
// convergence of replicas; their helpers are in tests/namespace_test_util.h.)
#include "core/namespace.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/file_server.h"
#include "tests/namespace_test_util.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

using namespace testing_ns;

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

  const FileId pieced = FileId::Random(), content_id = FileId::Random();
  TreeStep& part = AddStep(op, TreeStep::Kind::kContentPart, pieced);
  part.content = content_id;
  part.part = kContentPartsMax - 1;
  part.manifest.chunks.push_back(ChunkRef{testing::TestChunkId(10), 4096});
  part.manifest.size = 4096;
  part.manifest.AppendHole(3);

  TreeStep& parts = AddStep(op, TreeStep::Kind::kContentParts, pieced);
  parts.content = content_id;
  parts.part = kContentPartsMax;
  parts.manifest.size = 0xfedcba9876543210ull;  // its size alone travels
  parts.mtime_ns = -9;

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
    case TreeStep::Kind::kContentPart:
      EXPECT_TRUE(a.manifest == b.manifest);
      EXPECT_EQ(a.content, b.content);
      EXPECT_EQ(a.part, b.part);
      break;
    case TreeStep::Kind::kContentParts:
      EXPECT_EQ(a.manifest.size, b.manifest.size);
      EXPECT_TRUE(b.manifest.chunks.empty());
      EXPECT_EQ(a.content, b.content);
      EXPECT_EQ(a.part, b.part);
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
  for (std::uint8_t kind : {0, 8, 200, 255}) {
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

  // Pieces of a pieced content: a number in range, stored chunks only.
  TreeOp po;
  TreeStep p;
  p.kind = TreeStep::Kind::kContentPart;
  p.inode = FileId::Random();
  p.content = FileId::Random();
  p.manifest.chunks.push_back(ChunkRef{testing::TestChunkId(3), 10});
  p.manifest.size = 10;
  po.steps.push_back(p);
  NS_EXPECT_OK(TreeOp::Decode(po.Encode()));
  po.steps[0].part = kContentPartsMax;
  NS_EXPECT_CODE(TreeOp::Decode(po.Encode()), kCorrupt);
  po.steps[0].part = 0;
  po.steps[0].manifest = Manifest{};  // no chunk
  NS_EXPECT_CODE(TreeOp::Decode(po.Encode()), kCorrupt);
  po.steps[0].manifest.chunks.push_back(ChunkRef{testing::TestChunkId(3), 10});
  po.steps[0].manifest.size = 10;
  po.steps[0].manifest.inline_sealed = Bytes(40, 1);  // inline
  NS_EXPECT_CODE(TreeOp::Decode(po.Encode()), kCorrupt);
  for (std::uint32_t count : {0u, kContentPartsMax + 1}) {
    TreeOp jo;
    TreeStep j;
    j.kind = TreeStep::Kind::kContentParts;
    j.inode = FileId::Random();
    j.content = FileId::Random();
    j.part = count;
    jo.steps.push_back(j);
    NS_EXPECT_CODE(TreeOp::Decode(jo.Encode()), kCorrupt);
    jo.steps[0].part = 1;
    NS_EXPECT_OK(TreeOp::Decode(jo.Encode()));
  }
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

}  // namespace
}  // namespace dfs::core
