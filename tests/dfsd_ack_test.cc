// What `dfs put` and `rm` acknowledge is already held by the live peers:
// real dfsd processes; the writer waits for its peers' op acks.
#include <fmt/format.h>

#include "tests/dfsd_fixture.h"

namespace dfs {
namespace {

using namespace dfsd_test;
using testing::WaitFor;

nlohmann::json PeerEntry(const nlohmann::json& peers, const std::string& id) {
  for (const auto& p : peers) {
    if (p["id"] == id) return p;
  }
  return nlohmann::json();
}

TEST_F(DfsdTest, APutReturnsOnceEveryLivePeerHoldsItsOp) {
  StartKeyed("a", {});
  StartKeyed("b", {Address("a")});
  StartNode("c", {Address("a")});  // keyless: holds the op sealed
  // A member of the mesh with another volume's key: it refuses a's ops, and
  // a does not wait for it.
  StartNode("x", {Address("a")}, "net.key", {"--key", (dir_ / "other.key").string()});
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 3 && AlivePeers("b") == 3; }, 10s));

  fs::path in = dir_ / "f.in";
  WriteRandomFile(in, 1, 51);
  for (int i = 0; i < 5; ++i) {
    const std::string key = fmt::format("f{}", i);
    auto put = Dfs({"--data", Data("a"), "put", key, in.string()});
    ASSERT_EQ(put.exit_code, 0) << put.err;
    // No waiting here: the put returned only once b held the op.
    EXPECT_EQ(Dfs({"--data", Data("b"), "has", key}).exit_code, 0) << key;
  }
  auto rm = Dfs({"--data", Data("a"), "rm", "f0"});
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_EQ(Dfs({"--data", Data("b"), "has", "f0"}).exit_code, 1);

  auto peers = Dfs({"--data", Data("a"), "peers", "--json"});
  ASSERT_EQ(peers.exit_code, 0) << peers.err;
  auto j = nlohmann::json::parse(peers.out);
  const std::string b = Status("b")["node"], c = Status("c")["node"], x = Status("x")["node"];
  // Six changes: every one acknowledged by b and c.
  EXPECT_GE(PeerEntry(j, b)["ops_acked"].get<int>(), 6) << peers.out;
  EXPECT_GE(PeerEntry(j, c)["ops_acked"].get<int>(), 6) << peers.out;
  EXPECT_FALSE(PeerEntry(j, b)["other_volume"].get<bool>()) << peers.out;
  EXPECT_TRUE(PeerEntry(j, x)["other_volume"].get<bool>()) << peers.out;
  EXPECT_EQ(PeerEntry(j, x)["ops_acked"], 0) << peers.out;
  // No change waited out its limit for anyone.
  core::Bytes log = testing::ReadFile(dir_ / "a.log");
  std::string text(log.begin(), log.end());
  EXPECT_EQ(text.find("has not acknowledged"), std::string::npos) << text;
}

}  // namespace
}  // namespace dfs
