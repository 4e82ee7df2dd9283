// dfsd as real processes on 127.0.0.1: the mesh forms from one --peer, dead
// members are noticed, outsiders and hostile bytes get nowhere.
#include <utility>  // before Asio, for GCC 12

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "core/key_file.h"
#include "core/volume_crypto.h"
#include "net/chunk_exchange.h"
#include "tests/test_util.h"

namespace dfs {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class DfsdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(Dfs({"keygen", (dir_ / "net.key").string()}).exit_code, 0);
    ASSERT_EQ(Dfs({"keygen", (dir_ / "other.key").string()}).exit_code, 0);
  }
  void TearDown() override {
    for (int pid : pids_) testing::Stop(pid, SIGKILL);
  }
  testing::RunResult Dfs(std::vector<std::string> args) {
    args.insert(args.begin(), testing::BinPath("dfs"));
    return testing::Run(args);
  }
  // Starts a node; returns its pid once its control socket answers.
  int StartNode(const std::string& name, const std::vector<std::string>& peers,
                const std::string& key = "net.key") {
    std::vector<std::string> argv = {testing::BinPath("dfsd"), "--data", Data(name), "--listen",
                                     "127.0.0.1:0", "--network-key", (dir_ / key).string()};
    for (const auto& p : peers) argv.insert(argv.end(), {"--peer", p});
    int pid = testing::Spawn(argv, (dir_ / (name + ".log")).string());
    pids_.push_back(pid);
    for (int i = 0; i < 100 && !fs::exists(fs::path(Data(name)) / "control.sock"); ++i) {
      std::this_thread::sleep_for(50ms);
    }
    return pid;
  }
  std::string Data(const std::string& name) { return (dir_ / name).string(); }
  nlohmann::json Status(const std::string& name) {
    auto r = Dfs({"--data", Data(name), "status", "--json"});
    if (r.exit_code != 0) return nlohmann::json();
    return nlohmann::json::parse(r.out);
  }
  std::string Address(const std::string& name) { return Status(name)["listen"]; }
  int AlivePeers(const std::string& name) {
    auto r = Dfs({"--data", Data(name), "peers", "--json"});
    if (r.exit_code != 0) return -1;
    int n = 0;
    for (const auto& p : nlohmann::json::parse(r.out)) n += p["alive"].get<bool>();
    return n;
  }
  bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      if (pred()) return true;
      std::this_thread::sleep_for(100ms);
    }
    return pred();
  }
  void Forget(int pid) { std::erase(pids_, pid); }

  testing::TempDir dir_;
  std::vector<int> pids_;
};

TEST_F(DfsdTest, OnePeerIsEnoughAndStatusShowsTheMesh) {
  StartNode("a", {});
  std::string a = Address("a");
  ASSERT_FALSE(a.empty());
  StartNode("b", {a});
  StartNode("c", {a});
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("c") == 2 && AlivePeers("b") == 2; }, 10s))
      << "b sees " << AlivePeers("b") << ", c sees " << AlivePeers("c");
  nlohmann::json s = Status("c");
  ASSERT_TRUE(s["peers"].is_array());
  for (const auto& p : s["peers"]) {
    EXPECT_TRUE(p["address"].is_string());
    EXPECT_TRUE(p["alive"].is_boolean());
  }
  EXPECT_TRUE(s["keyless"].get<bool>());
  auto human = Dfs({"--data", Data("c"), "status"});
  EXPECT_EQ(human.exit_code, 0);
  EXPECT_NE(human.out.find("ALIVE"), std::string::npos) << human.out;
}

TEST_F(DfsdTest, AKilledMemberIsSeenDead) {
  StartNode("a", {});
  std::string a = Address("a");
  int b = StartNode("b", {a});
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 1; }, 10s));
  EXPECT_EQ(testing::Stop(b, SIGKILL), 128 + SIGKILL);
  Forget(b);
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 0; }, 10s));
  auto peers = nlohmann::json::parse(Dfs({"--data", Data("a"), "peers", "--json"}).out);
  ASSERT_EQ(peers.size(), 1u);
  EXPECT_FALSE(peers[0]["alive"].get<bool>());
  EXPECT_FALSE(peers[0]["last_seen"].get<std::string>().empty());
}

TEST_F(DfsdTest, OutsidersAndHostileBytesGetNowhere) {
  StartNode("a", {});
  std::string a = Address("a");
  StartNode("b", {a});
  StartNode("outsider", {a}, "other.key");
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 1; }, 10s));

  // Random bytes, an absurd length and a half-finished handshake.
  int port = std::stoi(a.substr(a.rfind(':') + 1));
  std::mt19937 rng(1);
  std::vector<std::string> attacks = {std::string(4096, '\0'), "\x01\x01\x00\x00", ""};
  for (auto& ch : attacks[0]) ch = static_cast<char>(rng());
  attacks[1] += std::string(8, '\0') + std::string("\xff\xff\xff\xff", 4);
  std::vector<int> fds;
  for (const auto& bytes : attacks) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    if (!bytes.empty()) {
      ASSERT_GT(::write(fd, bytes.data(), bytes.size()), 0);
    }
    fds.push_back(fd);
  }
  std::this_thread::sleep_for(1500ms);
  for (int fd : fds) ::close(fd);

  nlohmann::json s = Status("a");
  ASSERT_FALSE(s.is_null()) << "node a stopped answering";
  ASSERT_EQ(s["peers"].size(), 1u) << s.dump();
  EXPECT_TRUE(s["peers"][0]["alive"].get<bool>());
  EXPECT_EQ(AlivePeers("outsider"), 0);
  EXPECT_EQ(Status("outsider")["peers"].size(), 0u);
}

TEST_F(DfsdTest, SigtermStopsCleanly) {
  int a = StartNode("a", {});
  ASSERT_TRUE(fs::exists(fs::path(Data("a")) / "control.sock"));
  EXPECT_EQ(testing::Stop(a, SIGTERM), 0);
  Forget(a);
  EXPECT_FALSE(fs::exists(fs::path(Data("a")) / "control.sock"));
  auto r = Dfs({"--data", Data("a"), "status"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no dfsd is running"), std::string::npos) << r.err;
}

TEST_F(DfsdTest, BadArgumentsAreOneClearLine) {
  auto r = testing::Run({testing::BinPath("dfsd"), "--data", Data("x"), "--network-key",
                         (dir_ / "missing.key").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing.key"), std::string::npos) << r.err;
  r = testing::Run({testing::BinPath("dfsd"), "--data", Data("x"), "--network-key",
                    (dir_ / "net.key").string(), "--peer", "nohostport:99999"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--peer"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace dfs

// A keyless dfsd stores and serves a member's chunk as ciphertext.

namespace dfs {
namespace {

TEST_F(DfsdTest, AKeylessPeerHoldsChunksAsCiphertextOnly) {
  StartNode("store", {});
  nlohmann::json s = Status("store");
  ASSERT_TRUE(s["keyless"].get<bool>());
  auto store_id = core::NodeId::FromHex(s["node"].get<std::string>());
  ASSERT_TRUE(store_id.ok());
  std::string address = s["listen"];
  auto port = static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));

  // This test joins the mesh as a member holding the network key.
  auto nk = core::ReadKeyFile(dir_ / "net.key");
  ASSERT_TRUE(nk.ok());
  net::NetworkKey key;
  std::copy(nk->secret().begin(), nk->secret().end(), key.begin());
  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  net::Mesh mesh(io, testing::TestNodeId(0xee), key, net::MeshOptions{});
  mesh.AddPeer("127.0.0.1", port);
  std::thread io_thread([&] { io.run(); });
  net::MeshPeerNetwork network(io, mesh);
  for (int i = 0; i < 100 && network.LiveMembers().size() < 2; ++i) std::this_thread::sleep_for(50ms);
  ASSERT_EQ(network.LiveMembers().size(), 2u);

  core::VolumeCrypto crypto(core::VolumeKey::Generate());
  std::string text;
  while (text.size() < 200000) text += "KEYLESS-PEERS-SEE-ONLY-CIPHERTEXT ";
  core::ChunkId id = crypto.ComputeId(core::AsBytes(text));
  core::Bytes sealed;
  crypto.Seal(id, core::AsBytes(text), &sealed);
  core::Status put = network.PutChunk(*store_id, id, sealed, 5000ms);
  ASSERT_TRUE(put.ok()) << put.ToString();
  core::Bytes back;
  core::Status get = network.GetChunk(*store_id, id, &back, 5000ms);
  ASSERT_TRUE(get.ok()) << get.ToString();
  EXPECT_EQ(back, sealed);
  core::Bytes plain;
  ASSERT_TRUE(crypto.Unseal(id, back, &plain).ok());

  boost::asio::post(io, [&] { mesh.Stop(); });
  guard.reset();
  io_thread.join();

  std::string hex = id.ToHex();
  EXPECT_TRUE(fs::exists(fs::path(Data("store")) / "chunks" / hex.substr(0, 2) / hex.substr(2, 2) / hex));
  EXPECT_EQ(Status("store")["chunks"].get<int>(), 1);
  for (auto& e : fs::recursive_directory_iterator(Data("store"))) {
    if (!e.is_regular_file()) continue;
    core::Bytes bytes = testing::ReadFile(e.path());
    EXPECT_EQ(std::string(bytes.begin(), bytes.end()).find("KEYLESS-PEERS"), std::string::npos)
        << e.path();
  }
}

}  // namespace
}  // namespace dfs
