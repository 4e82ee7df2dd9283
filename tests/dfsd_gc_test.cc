// Chunk collection with real dfsd processes: a keyless peer drops the chunks
// of removed files once a keyed peer says no file needs them; a keyed node
// sweeps its own orphans; the grace period keeps everything younger.
#include <signal.h>

#include <set>

#include <fmt/format.h>

#include "core/disk_chunk_store.h"
#include "core/key_file.h"
#include "core/volume_crypto.h"
#include "tests/dfsd_fixture.h"

namespace dfs {
namespace {

using namespace dfsd_test;
using testing::WaitFor;

std::set<std::string> Names(const std::vector<fs::path>& files) {
  std::set<std::string> out;
  for (const fs::path& f : files) out.insert(f.filename().string());
  return out;
}

TEST_F(DfsdTest, AKeylessPeerDropsTheChunksOfRemovedFilesAndNothingElse) {
  const std::vector<std::string> no_timer = {"--gc-interval", "0"};
  StartKeyed("a", {}, no_timer);
  StartNode("c", {Address("a")}, "net.key", no_timer);  // keyless
  StartKeyed("b", {Address("a")}, no_timer);
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 2 && AlivePeers("c") == 2; }, 10s));

  fs::path keep = dir_ / "keep.in", drop = dir_ / "drop.in";
  WriteRandomFile(keep, 3, 41);
  WriteRandomFile(drop, 3, 42);
  ASSERT_EQ(Dfs({"--data", Data("a"), "put", "keep", keep.string()}).exit_code, 0);
  ASSERT_EQ(Dfs({"--data", Data("a"), "put", "drop", drop.string()}).exit_code, 0);
  const std::set<std::string> all = Names(ChunkFiles(Data("a")));
  ASSERT_GE(all.size(), 4u);
  // R = 3 on three nodes: every chunk on c too.
  ASSERT_TRUE(WaitFor([&] { return Names(ChunkFiles(Data("c"))) == all; }, 10s));

  auto rm = Dfs({"--data", Data("a"), "rm", "drop"});
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  // The nodes with the key free the file's chunks themselves; c cannot.
  ASSERT_TRUE(WaitFor([&] { return Dfs({"--data", Data("b"), "has", "drop"}).exit_code == 1; }, 10s));
  const std::set<std::string> kept = Names(ChunkFiles(Data("a")));
  ASSERT_LT(kept.size(), all.size());
  ASSERT_TRUE(WaitFor([&] { return Names(ChunkFiles(Data("b"))) == kept; }, 10s));
  EXPECT_EQ(Names(ChunkFiles(Data("c"))), all);

  // The node's own grace period (a day) keeps them all.
  auto r = Dfs({"--data", Data("c"), "gc"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(fmt::format("looked at {} chunks: removed 0 (0 bytes)", all.size())),
            std::string::npos)
      << r.out;
  EXPECT_EQ(Names(ChunkFiles(Data("c"))), all);

  // Without one, exactly the removed file's chunks go, once c holds the op
  // that removed it (a keyed peer must have seen every op c holds).
  ASSERT_TRUE(WaitFor([&] { return Status("c")["ops_received"].get<int>() >= 3; }, 10s));
  r = Dfs({"--data", Data("c"), "gc", "--grace", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["last_chunks"], all.size()) << r.out;
  EXPECT_EQ(j["last_removed"], all.size() - kept.size()) << r.out;
  EXPECT_EQ(j["last_live"], kept.size()) << r.out;
  EXPECT_EQ(j["last_unanswered"], 0) << r.out;
  EXPECT_GT(j["last_removed_bytes"].get<std::uint64_t>(), 2u << 20) << r.out;
  EXPECT_EQ(Names(ChunkFiles(Data("c"))), kept);
  EXPECT_EQ(Status("c")["gc"]["passes"], 2);
  auto human = Dfs({"--data", Data("c"), "status"});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find(fmt::format("{} chunks removed (", all.size() - kept.size())),
            std::string::npos)
      << human.out;
  EXPECT_EQ(Status("c")["chunks"], kept.size());

  // What is kept still reads, from c's copies alone.
  fs::path out = dir_ / "keep.out";
  for (const char* n : {"a", "b"}) {
    for (const fs::path& f : ChunkFiles(Data(n))) fs::remove(f);
  }
  auto get = Dfs({"--data", Data("b"), "get", "keep", out.string()});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_TRUE(SameFile(keep, out));
}

TEST_F(DfsdTest, AKeyedNodeSweepsItsOrphansOnlyPastTheGracePeriod) {
  int pid = StartKeyed("a", {}, {"--gc-interval", "0", "--gc-grace", "3600"});
  fs::path in = dir_ / "f.in";
  WriteRandomFile(in, 2, 43);
  ASSERT_EQ(Dfs({"--data", Data("a"), "put", "f", in.string()}).exit_code, 0);
  const std::size_t referenced = ChunkFiles(Data("a")).size();
  ASSERT_EQ(testing::Stop(pid, SIGTERM), 0);
  Forget(pid);

  // While it is down: a chunk of the volume that no file names (as an
  // interrupted write leaves one), and a record that is no sealed chunk.
  {
    auto store = core::DiskChunkStore::Open(fs::path(Data("a")) / "chunks");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    core::VolumeCrypto crypto(*core::ReadKeyFile(dir_ / "volume.key"));
    core::Bytes plain = testing::RandomBytes(300000, 44), sealed;
    core::ChunkId id = crypto.ComputeId(plain);
    crypto.Seal(id, plain, &sealed);
    ASSERT_TRUE((*store)->Put(id, sealed).ok());
    ASSERT_TRUE((*store)->Put(testing::TestChunkId(7), core::AsBytes("not a sealed chunk")).ok());
    ASSERT_TRUE((*store)->Sync().ok());
  }
  StartKeyed("a", {}, {"--gc-interval", "0", "--gc-grace", "3600"});
  ASSERT_EQ(ChunkFiles(Data("a")).size(), referenced + 2);

  auto r = Dfs({"--data", Data("a"), "gc", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["grace_seconds"], 3600) << r.out;
  EXPECT_EQ(j["last_young"], referenced + 2) << r.out;
  EXPECT_EQ(j["last_removed"], 0) << r.out;

  r = Dfs({"--data", Data("a"), "gc", "--grace", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["last_removed"], 1) << r.out;
  EXPECT_EQ(j["last_unknown"], 1) << r.out;
  EXPECT_EQ(j["last_live"], referenced) << r.out;
  EXPECT_EQ(ChunkFiles(Data("a")).size(), referenced + 1);
  fs::path out = dir_ / "f.out";
  ASSERT_EQ(Dfs({"--data", Data("a"), "get", "f", out.string()}).exit_code, 0);
  EXPECT_TRUE(SameFile(in, out));

  auto bad = Dfs({"--data", Data("a"), "gc", "--grace", "-5"});
  EXPECT_NE(bad.exit_code, 0);
}

}  // namespace
}  // namespace dfs
