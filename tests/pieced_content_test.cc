// A file whose manifest does not fit one op (FileServerOptions::max_op_bytes,
// 4 MiB in a node: about 116,000 chunks) travels as pieces, one op each,
// and an op that joins them (TreeStep::kContentPart / kContentParts). These
// tests lower the limits so that a few hundred chunks need pieces: every op
// stays within the limit, the file reads back on the writer and on a replica
// that applied the ops, chunk references follow the joined manifest, a join
// without its pieces is refused, and a manifest past max_manifest_bytes is
// refused before anything commits.
#include <array>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/file_server.h"
#include "core/index.h"
#include "core/memory_chunk_store.h"
#include "core/namespace.h"
#include "core/sqlite_util.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

VolumeKey TestKey() {
  Bytes b(VolumeKey::kSize, 7);
  return *VolumeKey::FromBytes(b);
}

// About 500 chunks for 2 MiB; pieces of (8192 - 256) / 36 = 220 refs.
FileServerOptions Tight(std::uint8_t node) {
  FileServerOptions o;
  std::array<std::uint8_t, NodeId::kSize> raw{};
  raw.fill(node);
  o.node_id = NodeId(raw);
  o.chunker = {2048, 4096, 16384};
  o.lock_timeout = std::chrono::milliseconds(200);
  o.max_op_bytes = 8 << 10;
  return o;
}

class PiecedContentTest : public ::testing::Test {
 protected:
  std::unique_ptr<FileServer> Make(const std::string& name, FileServerOptions o) {
    auto index = Index::Open(dir_ / (name + ".db"));
    EXPECT_TRUE(index.ok()) << index.status().ToString();
    auto fs = FileServer::Create(std::make_unique<MemoryChunkStore>(), std::move(index).value(),
                                 TestKey(), o);
    EXPECT_TRUE(fs.ok()) << fs.status().ToString();
    return std::move(fs).value();
  }
  static Status Put(FileServer& fs, std::string_view key, ByteSpan data) {
    MemoryReader r(data);
    return fs.Store(key, r);
  }
  static Result<Bytes> Read(FileServer& fs, std::string_view key) {
    MemoryWriter w;
    DFS_RETURN_IF_ERROR(fs.Get(key, w));
    return w.data();
  }
  // The ops of `from`'s origin that `to` lacks, applied in order, after
  // the chunks (as a node receives them: chunks pushed first).
  static void Ship(FileServer& from, FileServer& to) {
    Status copied = testing::CopyChunks(from.chunk_store(), to.chunk_store());
    ASSERT_TRUE(copied.ok()) << copied.ToString();
    auto have = to.index().Vector();
    ASSERT_TRUE(have.ok());
    auto ops = from.index().OpsSince(from.node_id(), have->Get(from.node_id()) + 1, 100000);
    ASSERT_TRUE(ops.ok()) << ops.status().ToString();
    for (const Op& op : *ops) {
      auto r = to.ApplyRemoteOp(op);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_TRUE(*r);
    }
    ASSERT_TRUE(to.Flush().ok());
  }
  static std::vector<Op> OwnOps(FileServer& fs) {
    auto ops = fs.index().OpsSince(fs.node_id(), 1, 100000);
    EXPECT_TRUE(ops.ok());
    return ops.ok() ? *ops : std::vector<Op>{};
  }
  static std::uint64_t Held(FileServer& fs) { return fs.Usage()->chunks; }
  // Makes writer `a` (node 1) store 2 MiB of `seed` as "big"; returns its
  // ops (pieces and a join) and, in *data, the bytes.
  std::unique_ptr<FileServer> PiecedWriter(std::uint64_t seed, Bytes* data, std::vector<Op>* ops) {
    auto a = Make("a", Tight(1));
    *data = testing::RandomBytes(2 << 20, seed);
    EXPECT_TRUE(Put(*a, "big", *data).ok());
    *ops = OwnOps(*a);
    EXPECT_GE(ops->size(), 3u);
    return a;
  }

  testing::TempDir dir_;
};

TEST_F(PiecedContentTest, ALargeManifestTravelsInPiecesAndReadsBackOnAReplica) {
  auto a = Make("a", Tight(1));
  FileServerOptions plain = Tight(2);
  plain.max_op_bytes = Op::kMaxEncodedSize;
  auto b = Make("b", plain);

  Bytes big = testing::RandomBytes(2 << 20, 71);
  ASSERT_TRUE(Put(*a, "big", big).ok());
  ASSERT_TRUE(a->Flush().ok());
  std::vector<Op> ops = OwnOps(*a);
  // The pieces and the op that joins them; every op fits the limit.
  ASSERT_GE(ops.size(), 3u);
  std::size_t pieces = 0, joins = 0;
  for (const Op& op : ops) {
    EXPECT_LE(op.Encode().size(), std::size_t{8 << 10});
    auto tree = TreeOp::Decode(op.value);
    ASSERT_TRUE(tree.ok()) << tree.status().ToString();
    for (const TreeStep& st : tree->steps) {
      pieces += st.kind == TreeStep::Kind::kContentPart;
      joins += st.kind == TreeStep::Kind::kContentParts;
      EXPECT_NE(st.kind, TreeStep::Kind::kContent) << "the manifest went whole";
    }
  }
  EXPECT_GE(pieces, 2u);
  EXPECT_EQ(joins, 1u);
  EXPECT_EQ(ops.size(), pieces + 1) << "the pieces, then the join (with the name)";

  auto back = Read(*a, "big");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == big);
  auto info = a->Stat("big");
  ASSERT_TRUE(info.ok());
  EXPECT_GT(info->chunks, 220u);
  EXPECT_EQ(pieces, (info->chunks + 219) / 220) << "(8192 - 256) / 36 = 220 refs a piece";

  Ship(*a, *b);
  back = Read(*b, "big");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == big);

  // Overwritten with other large content: the old chunks lose their
  // references on both (the joined manifest is what counts), the new read back.
  Bytes other = testing::RandomBytes(2 << 20, 72);
  ASSERT_TRUE(Put(*a, "big", other).ok());
  ASSERT_TRUE(a->Flush().ok());
  Ship(*a, *b);
  for (FileServer* fs : {a.get(), b.get()}) {
    back = Read(*fs, "big");
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_TRUE(*back == other);
    auto now = fs->Stat("big");
    ASSERT_TRUE(now.ok());
    EXPECT_EQ(Held(*fs), now->chunks) << "only the current content's chunks are held";
  }
  // Removed: every chunk is freed on both.
  ASSERT_TRUE(a->Delete("big").ok());
  ASSERT_TRUE(a->Flush().ok());
  Ship(*a, *b);
  EXPECT_EQ(Held(*a), 0u);
  EXPECT_EQ(Held(*b), 0u);
}

TEST_F(PiecedContentTest, AJoinWithoutItsPiecesIsRefusedAndAppliesNothing) {
  Bytes big;
  std::vector<Op> ops;
  auto a = PiecedWriter(73, &big, &ops);
  ASSERT_GE(ops.size(), 3u);
  // A replica given the join in place of the first piece (same origin and
  // number, so the op log takes it) refuses it: a piece is missing.
  auto b = Make("b", Tight(2));
  Op join = ops.back();
  join.seq = 1;
  auto r = b->ApplyRemoteOp(join);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kCorrupt) << r.status().ToString();
  EXPECT_NE(r.status().message().find("pieces arrived"), std::string::npos)
      << r.status().ToString();
  EXPECT_FALSE(*b->Has("big"));
  auto v = b->index().Vector();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->Get(a->node_id()), 0u) << "the refused op is not in the log";
  // The real sequence then applies.
  Ship(*a, *b);
  auto back = Read(*b, "big");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == big);
}

// Rows of content_parts in the index database at `path` (closed); -1 on error.
std::int64_t PieceRows(const std::filesystem::path& path) {
  auto db = OpenSqlite(path, "index");
  if (!db.ok()) return -1;
  std::int64_t rows = -1;
  {
    Stmt s(*db, "SELECT count(*) FROM content_parts");
    auto row = s.Step("count");
    if (row.ok() && *row) rows = s.Int(0);
  }
  StmtCache::Drop(*db);
  sqlite3_close(*db);
  return rows;
}

TEST_F(PiecedContentTest, PiecesWhoseJoinNeverCameAreDroppedByTheOriginsNextOp) {
  Bytes big;
  std::vector<Op> pieced;
  auto a = PiecedWriter(74, &big, &pieced);
  ASSERT_GE(pieced.size(), 3u);
  // What the writer's next op would have been had it died before the
  // join: another change of the same origin, numbered right after the pieces.
  auto a2 = Make("a2", Tight(1));
  ASSERT_TRUE(Put(*a2, "small", testing::RandomBytes(100 << 10, 75)).ok());
  std::vector<Op> next = OwnOps(*a2);
  ASSERT_EQ(next.size(), 1u);
  next[0].seq = pieced.size();  // the join's number

  {
    auto b = Make("b", Tight(2));
    for (std::size_t i = 0; i + 1 < pieced.size(); ++i) {
      auto r = b->ApplyRemoteOp(pieced[i]);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
    ASSERT_TRUE(b->Flush().ok());
  }
  EXPECT_EQ(PieceRows(dir_ / "b.db"), static_cast<std::int64_t>(pieced.size() - 1));
  {
    auto b = Make("b", Tight(2));  // reopened: its chunk store is new and empty
    ASSERT_TRUE(testing::CopyChunks(a2->chunk_store(), b->chunk_store()).ok());
    auto r = b->ApplyRemoteOp(next[0]);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_FALSE(*b->Has("big"));
    auto back = Read(*b, "small");
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    ASSERT_TRUE(b->Flush().ok());
  }
  EXPECT_EQ(PieceRows(dir_ / "b.db"), 0);
  // And a completed join leaves none either (checked on the writer).
  a.reset();
  EXPECT_EQ(PieceRows(dir_ / "a.db"), 0);
}

TEST_F(PiecedContentTest, AManifestPastTheLimitIsRefusedAndChangesNothing) {
  FileServerOptions o = Tight(1);
  o.max_manifest_bytes = 12 << 10;  // about 340 chunks
  auto a = Make("a", o);

  Bytes small = testing::RandomBytes(200 << 10, 61);  // about 50 chunks
  ASSERT_TRUE(Put(*a, "f", small).ok());
  ASSERT_TRUE(a->Flush().ok());
  const std::uint64_t before = Held(*a);
  const std::size_t ops_before = OwnOps(*a).size();
  Status s = Put(*a, "f", testing::RandomBytes(2 << 20, 62));  // about 500
  EXPECT_EQ(s.code(), ErrorCode::kFileTooLarge) << s.ToString();
  EXPECT_NE(s.message().find("manifest"), std::string::npos) << s.ToString();
  s = Put(*a, "g", testing::RandomBytes(2 << 20, 63));
  EXPECT_EQ(s.code(), ErrorCode::kFileTooLarge) << s.ToString();
  EXPECT_FALSE(*a->Has("g"));
  auto back = Read(*a, "f");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == small);
  ASSERT_TRUE(a->Flush().ok());
  EXPECT_EQ(Held(*a), before);
  EXPECT_EQ(OwnOps(*a).size(), ops_before) << "no piece committed";
  // Pieced but under the limit still goes: about 270 chunks, two pieces.
  Bytes mid = testing::RandomBytes(1100 << 10, 64);
  ASSERT_TRUE(Put(*a, "h", mid).ok());
  back = Read(*a, "h");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == mid);
  EXPECT_GT(OwnOps(*a).size(), ops_before + 1);
}

}  // namespace
}  // namespace dfs::core
