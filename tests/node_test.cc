// Whole nodes in one process, over real TCP on 127.0.0.1 and real data
// directories: replication of files, a late joiner, and a keyless storage
// peer that holds ciphertext and relays the op log between members that
// never meet.
#include "cmd/node/node.h"

#include <array>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/io.h"
#include "tests/test_util.h"

namespace dfs::node {
namespace {

using testing::WaitFor;

using namespace std::chrono_literals;
namespace fs = std::filesystem;

core::VolumeKey TestKey() { return *core::VolumeKey::FromBytes(core::Bytes(32, 42)); }

class NodeTest : public ::testing::Test {
 protected:
  Node& Start(const std::string& name, const std::vector<Node*>& peers, bool keyed = true) {
    NodeConfig c;
    c.data_dir = dir_ / name;
    c.listen_host = "127.0.0.1";
    c.listen_port = 0;
    c.network_key.fill(9);
    if (keyed) c.volume_key = TestKey();
    c.pull_interval = 300ms;
    c.dead_time = 1500ms;
    c.repair_check = 200ms;
    for (Node* p : peers) c.peers.emplace_back("127.0.0.1", p->listen_port());
    auto node = std::make_unique<Node>(std::move(c));
    core::Status s = node->Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
    nodes_.push_back(std::move(node));
    return *nodes_.back();
  }

  // Nodes a, b and c (b and c given a), once each sees the other two; c is
  // null if they never do.
  std::array<Node*, 3> StartThree() {
    Node& a = Start("a", {});
    Node& b = Start("b", {&a});
    Node& c = Start("c", {&a});
    bool meshed = WaitFor([&] { return AlivePeers(a) == 2 && AlivePeers(b) == 2 && AlivePeers(c) == 2; });
    return {&a, &b, meshed ? &c : nullptr};
  }
  static bool Has(Node& n, const std::string& key) {
    auto r = n.files()->Has(key);
    return r.ok() && *r;
  }
  static core::Status Put(Node& n, const std::string& key, const core::Bytes& data) {
    core::MemoryReader r(data);
    return n.files()->Store(key, r);
  }
  static core::Result<core::Bytes> Read(Node& n, const std::string& key) {
    core::MemoryWriter w;
    DFS_RETURN_IF_ERROR(n.files()->Get(key, w));
    return w.data();
  }
  static std::uint64_t Chunks(const fs::path& data) {
    std::uint64_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(data / "chunks")) {
      n += e.is_regular_file() && e.path().filename().string().size() == 64;
    }
    return n;
  }
  static int AlivePeers(Node& n) {
    auto j = nlohmann::json::parse(n.PeersJson());
    int alive = 0;
    for (const auto& p : j) alive += p["alive"].get<bool>();
    return alive;
  }

  testing::TempDir dir_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(NodeTest, AFileStoredOnOneNodeIsReadOnEveryOtherAndHeldThreeTimes) {
  auto [pa, pb, pc] = StartThree();
  ASSERT_NE(pc, nullptr) << "the mesh of three did not form";
  Node &a = *pa, &b = *pb, &c = *pc;
  core::Bytes data = testing::RandomBytes(9 << 20, 5);
  core::Status s = Put(a, "big/file", data);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(WaitFor([&] { return Has(b, "big/file") && Has(c, "big/file"); }));
  for (Node* n : {&b, &c}) {
    auto got = Read(*n, "big/file");
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_TRUE(*got == data);
  }
  // R = 3 on three nodes: every node holds every chunk.
  std::uint64_t chunks = a.files()->Stat("big/file")->chunks;
  EXPECT_GE(chunks, 3u);
  for (const char* name : {"a", "b", "c"}) EXPECT_EQ(Chunks(dir_ / name), chunks) << name;

  // A delete on C is a tombstone everywhere, and frees the chunks everywhere.
  ASSERT_TRUE(c.files()->Delete("big/file").ok());
  EXPECT_TRUE(WaitFor([&] { return !Has(a, "big/file") && !Has(b, "big/file"); }));
  EXPECT_TRUE(WaitFor([&] { return Chunks(dir_ / "a") == 0 && Chunks(dir_ / "b") == 0; }));
}

TEST_F(NodeTest, ANodeThatJoinsLateListsAndReadsEverything) {
  Node& a = Start("a", {});
  Node& b = Start("b", {&a});
  ASSERT_TRUE(WaitFor([&] { return AlivePeers(a) == 1; }));
  std::vector<core::Bytes> files;
  for (int i = 0; i < 30; ++i) {
    files.push_back(testing::RandomBytes(1000 + 40000 * i, 100 + i));
    Node& writer = i % 2 ? a : b;
    ASSERT_TRUE(Put(writer, "f" + std::to_string(i), files.back()).ok());
  }
  Node& late = Start("late", {&b});
  ASSERT_TRUE(WaitFor([&] { return late.files()->Totals()->files == 30; }))
      << late.files()->Totals()->files;
  for (int i = 0; i < 30; ++i) {
    auto got = Read(late, "f" + std::to_string(i));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_TRUE(*got == files[static_cast<std::size_t>(i)]) << i;
  }
}

TEST_F(NodeTest, AKeylessPeerHoldsOnlyCiphertextAndRelaysTheLog) {
  Node& a = Start("a", {});
  Node& k = Start("k", {&a}, /*keyed=*/false);
  ASSERT_TRUE(WaitFor([&] { return AlivePeers(a) == 1; }));
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "plain words of a secret file ";
  core::Bytes data(text.begin(), text.end());
  ASSERT_TRUE(Put(a, "secret/name.txt", data).ok());
  // A small file travels inside its op (sealed into the manifest): the
  // keyless peer relays it without reading it either.
  const std::string tiny_text = "tiny inline words";
  core::Bytes tiny(tiny_text.begin(), tiny_text.end());
  ASSERT_TRUE(Put(a, "secret/tiny.txt", tiny).ok());
  ASSERT_TRUE(WaitFor([&] { return nlohmann::json::parse(k.StatusJson())["ops_received"] == 2; }));
  // Nothing on the keyless peer's disk reads as the file or its name.
  for (const auto& e : fs::recursive_directory_iterator(dir_ / "k")) {
    if (!e.is_regular_file()) continue;
    core::Bytes bytes = testing::ReadFile(e.path());
    std::string_view all(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    EXPECT_EQ(all.find("plain words"), std::string_view::npos) << e.path();
    EXPECT_EQ(all.find("inline words"), std::string_view::npos) << e.path();
    EXPECT_EQ(all.find("secret/name"), std::string_view::npos) << e.path();
  }
  EXPECT_GT(Chunks(dir_ / "k"), 0u);
  a.Stop();
  // B never meets A: it learns the file from K's sealed log and reads K's chunks.
  Node& b = Start("b", {&k});
  ASSERT_TRUE(WaitFor([&] { return Has(b, "secret/name.txt"); }));
  auto got = Read(b, "secret/name.txt");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == data);
  ASSERT_TRUE(WaitFor([&] { return Has(b, "secret/tiny.txt"); }));
  got = Read(b, "secret/tiny.txt");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == tiny);
}

TEST_F(NodeTest, AfterAMemberIsGoneEveryChunkRegainsThreeCopies) {
  auto [pa, pb, pc] = StartThree();
  ASSERT_NE(pc, nullptr) << "the mesh of three did not form";
  Node &a = *pa, &b = *pb, &c = *pc;
  core::Bytes data = testing::RandomBytes(12 << 20, 8);
  ASSERT_TRUE(Put(a, "f", data).ok());
  std::uint64_t chunks = a.files()->Stat("f")->chunks;
  ASSERT_EQ(Chunks(dir_ / "c"), chunks);
  c.Stop();
  fs::remove_all(dir_ / "c");  // gone for good, with its copies
  // Two live members: each holds every chunk already. A fourth joins and
  // must receive a copy of each from the survivors.
  Node& d = Start("d", {&b});
  EXPECT_TRUE(WaitFor([&] { return Chunks(dir_ / "d") == chunks; }, 30s))
      << Chunks(dir_ / "d") << " of " << chunks;
  EXPECT_EQ(Chunks(dir_ / "a"), chunks);
  EXPECT_EQ(Chunks(dir_ / "b"), chunks);
  ASSERT_TRUE(WaitFor([&] { return Has(d, "f"); }));
  // D's own pass over its copies finds every holder supplied.
  EXPECT_TRUE(WaitFor([&] {
    auto status = nlohmann::json::parse(d.StatusJson());
    return status["repair"]["passes"] >= 1 && status["under_replicated"] == 0;
  })) << d.StatusJson();
  a.Stop();
  b.Stop();
  auto got = Read(d, "f");  // from its own copies alone
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == data);
}

TEST_F(NodeTest, ScrubReplacesADamagedChunkFromAPeer) {
  Node& a = Start("a", {});
  Node& b = Start("b", {&a});
  ASSERT_TRUE(WaitFor([&] { return AlivePeers(a) == 1 && AlivePeers(b) == 1; }));
  core::Bytes data = testing::RandomBytes(3 << 20, 9);
  ASSERT_TRUE(Put(a, "f", data).ok());
  fs::path victim;
  for (const auto& e : fs::recursive_directory_iterator(dir_ / "a" / "chunks")) {
    if (e.is_regular_file() && e.path().filename().string().size() == 64) victim = e.path();
  }
  ASSERT_FALSE(victim.empty());
  testing::FlipByte(victim, static_cast<std::streamoff>(fs::file_size(victim) / 2));
  core::ScrubStats s = a.Scrub({});
  EXPECT_EQ(s.bad, 1u);
  EXPECT_EQ(s.repaired, 1u);
  EXPECT_EQ(s.unrepaired, 0u);
  b.Stop();
  auto got = Read(a, "f");  // every chunk from a's own disk
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == data);
}

}  // namespace
}  // namespace dfs::node
