// dfsd as real processes on 127.0.0.1: the mesh forms from one --peer, dead
// members are noticed, outsiders and hostile bytes get nowhere.
#include <utility>  // before Asio, for GCC 12

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "core/key_file.h"
#include "core/volume_crypto.h"
#include "net/chunk_exchange.h"
#include "tests/dfsd_fixture.h"
#include "tests/test_util.h"

namespace dfs {
namespace {

using testing::WaitFor;
using namespace dfsd_test;


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

// At the most verbose level, through a put, a get, a keyless peer and an
// outsider with the wrong network key: the logs never show a key or file
// contents, and a refused peer is named by its address.
TEST_F(DfsdTest, LogsNameThePeerButNeverAKeyOrContents) {
  StartKeyed("a", {}, {"--log-level", "trace"});
  std::string a = Address("a");
  StartNode("b", {a}, "net.key", {"--log-level", "trace"});
  StartNode("outsider", {a}, "other.key", {"--log-level", "trace"});
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 1 && AlivePeers("b") == 1; }, 10s));
  const std::string marker = "plaintext-marker-7f3a9c-never-in-a-log";
  std::string text;
  for (int i = 0; i < 2000; ++i) text += marker + "\n";
  fs::path in = dir_ / "secret.txt";
  testing::WriteFile(in, core::Bytes(text.begin(), text.end()));
  ASSERT_EQ(Dfs({"--data", Data("a"), "put", "docs/secret.txt", in.string()}).exit_code, 0);
  auto got = Dfs({"--data", Data("a"), "get", "docs/secret.txt"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(got.out, text);
  EXPECT_FALSE(Dfs({"--data", Data("a"), "get", "docs/missing.txt"}).exit_code == 0);
  std::this_thread::sleep_for(1500ms);  // the outsider's attempts, b's sync

  // The secrets: the hex of each key file's key.
  std::vector<std::string> secrets = {marker};
  for (const char* key : {"net.key", "other.key", "volume.key"}) {
    std::string file = testing::Slurp(dir_ / key);
    std::size_t at = file.find("key ");
    ASSERT_NE(at, std::string::npos) << key;
    std::string hex = file.substr(at + 4, 64);
    secrets.push_back(hex);
    secrets.push_back(hex.substr(0, 16));  // nor a prefix of one
  }
  for (const char* node : {"a", "b", "outsider"}) {
    std::string log = testing::Slurp(dir_ / (std::string(node) + ".log"));
    EXPECT_FALSE(log.empty()) << node << ": trace logs nothing?";
    for (const std::string& secret : secrets) {
      EXPECT_EQ(log.find(secret), std::string::npos) << node << "'s log shows " << secret;
    }
  }
  // The refused handshake is logged, naming the peer by its address.
  std::istringstream lines(testing::Slurp(dir_ / "outsider.log") + testing::Slurp(dir_ / "a.log"));
  bool named = false;
  for (std::string line; std::getline(lines, line);) {
    named |= line.find("handshake failed") != std::string::npos &&
             line.find("peer 127.0.0.1:") != std::string::npos;
  }
  EXPECT_TRUE(named) << "no \"peer 127.0.0.1:...: handshake failed\" line";
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
  // Stops the mesh and joins the io thread however the test ends (an
  // early ASSERT must not leave a joinable thread, which would abort).
  struct Joiner {
    std::function<void()> fn;
    ~Joiner() { fn(); }
  } joiner{[&] {
    if (!io_thread.joinable()) return;
    boost::asio::post(io, [&] { mesh.Stop(); });
    guard.reset();
    io_thread.join();
  }};
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

  joiner.fn();

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

// Keyed nodes as real processes: files through `dfs --data DIR` and the
// running node, a writer killed with SIGKILL, a late joiner, a restart.

namespace dfs {
namespace {

TEST_F(DfsdTest, AWriterKilledRightAfterA256MiBPutLosesNothing) {
  int a = StartKeyed("a", {});
  std::string address = Address("a");
  StartKeyed("b", {address});
  StartKeyed("c", {address});
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 2 && AlivePeers("b") == 2 && AlivePeers("c") == 2; }, 10s));
  fs::path in = dir_ / "big.in";
  WriteRandomFile(in, 256, 1);
  auto put = Dfs({"--data", Data("a"), "put", "big", in.string()});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(testing::Stop(a, SIGKILL), 128 + SIGKILL);
  Forget(a);
  for (const char* reader : {"b", "c"}) {
    ASSERT_TRUE(WaitFor([&] { return Dfs({"--data", Data(reader), "has", "big"}).exit_code == 0; }, 10s))
        << reader << " never learned of the file";
    fs::path out = dir_ / (std::string("big.") + reader);
    auto get = Dfs({"--data", Data(reader), "get", "big", out.string()});
    ASSERT_EQ(get.exit_code, 0) << reader << ": " << get.err;
    EXPECT_TRUE(SameFile(in, out)) << reader;
    fs::remove(out);
  }
}

TEST_F(DfsdTest, ALateJoinerAndARestartedNodeCatchUp) {
  StartKeyed("a", {});
  std::string address = Address("a");
  int b = StartKeyed("b", {address});
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 1; }, 10s));
  fs::path small = dir_ / "small";
  WriteRandomFile(small, 2, 7);
  ASSERT_EQ(Dfs({"--data", Data("a"), "put", "before/1", small.string()}).exit_code, 0);
  // B is killed; A goes on writing; B comes back on the same directory.
  EXPECT_EQ(testing::Stop(b, SIGKILL), 128 + SIGKILL);
  Forget(b);
  for (int i = 2; i <= 4; ++i) {
    auto r = Dfs({"--data", Data("a"), "put", "before/" + std::to_string(i), small.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  ASSERT_EQ(Dfs({"--data", Data("a"), "rm", "before/1"}).exit_code, 0);
  StartKeyed("b", {address});
  auto listing = [&](const std::string& node) {
    auto r = Dfs({"--data", Data(node), "ls", "--json"});
    std::vector<std::string> keys;
    if (r.exit_code != 0) return keys;
    for (const auto& f : nlohmann::json::parse(r.out)) keys.push_back(f["key"]);
    return keys;
  };
  std::vector<std::string> want = {"before/2", "before/3", "before/4"};
  EXPECT_TRUE(WaitFor([&] { return listing("b") == want; }, 15s)) << nlohmann::json(listing("b")).dump();
  // A node that joins later, through B alone, lists and reads everything.
  StartKeyed("late", {Address("b")});
  EXPECT_TRUE(WaitFor([&] { return listing("late") == want; }, 15s)) << nlohmann::json(listing("late")).dump();
  fs::path out = dir_ / "late.out";
  auto get = Dfs({"--data", Data("late"), "get", "before/3", out.string()});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_TRUE(SameFile(small, out));
}

}  // namespace
}  // namespace dfs

// A partition between two network namespaces: both sides go on writing,
// and when the link comes back the key index converges on both.

namespace dfs {
namespace {

// Two namespaces joined by a veth pair on 10.213.<n>.0/30. Torn down (with
// the link) on destruction.
class NetnsPair {
 public:
  NetnsPair() {
    std::string tag = std::to_string(::getpid() % 100000);
    a_ = "dfs-a-" + tag;
    b_ = "dfs-b-" + tag;
    subnet_ = "10.213." + std::to_string(::getpid() % 250) + ".";
  }
  ~NetnsPair() {
    Ip({"netns", "del", a_});
    Ip({"netns", "del", b_});
  }
  // Empty when it worked, else why not.
  std::string Create() {
    if (::geteuid() != 0) return "not running as root";
    if (!fs::exists("/usr/sbin/ip") && !fs::exists("/sbin/ip")) return "no ip(8) (iproute2)";
    std::string va = "va" + a_.substr(6), vb = "vb" + b_.substr(6);
    std::vector<std::vector<std::string>> steps = {
        {"netns", "add", a_},
        {"netns", "add", b_},
        {"link", "add", va, "type", "veth", "peer", "name", vb},
        {"link", "set", va, "netns", a_},
        {"link", "set", vb, "netns", b_},
        {"-n", a_, "addr", "add", subnet_ + "1/30", "dev", va},
        {"-n", b_, "addr", "add", subnet_ + "2/30", "dev", vb},
        {"-n", a_, "link", "set", va, "up"},
        {"-n", b_, "link", "set", vb, "up"},
        {"-n", a_, "link", "set", "lo", "up"},
        {"-n", b_, "link", "set", "lo", "up"},
    };
    for (const auto& step : steps) {
      testing::RunResult r = Ip(step);
      if (r.exit_code != 0) return "ip " + step[0] + " " + step[1] + " failed: " + r.err;
    }
    va_ = va;
    return "";
  }
  void Link(bool up) { Ip({"-n", a_, "link", "set", va_, up ? "up" : "down"}); }
  std::vector<std::string> Exec(const std::string& ns) const {
    return {IpPath(), "netns", "exec", ns};
  }
  const std::string& a() const { return a_; }
  const std::string& b() const { return b_; }
  std::string Address(int host) const { return subnet_ + std::to_string(host) + ":3000"; }

 private:
  static std::string IpPath() { return fs::exists("/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip"; }
  static testing::RunResult Ip(std::vector<std::string> args) {
    args.insert(args.begin(), IpPath());
    return testing::Run(args);
  }
  std::string a_, b_, va_, subnet_;
};

TEST_F(DfsdTest, APartitionHealsAndTheIndexConvergesOnBothSides) {
  NetnsPair net;
  if (std::string why = net.Create(); !why.empty()) {
    GTEST_SKIP() << "skipped: network namespaces are not available here (" << why << ")";
  }
  auto start = [&](const std::string& name, const std::string& ns, const std::string& listen,
                   const std::string& peer) {
    std::vector<std::string> argv = net.Exec(ns);
    std::vector<std::string> node = {testing::BinPath("dfsd"), "--data", Data(name), "--listen", listen,
                                     "--network-key", (dir_ / "net.key").string(), "--key",
                                     (dir_ / "volume.key").string()};
    argv.insert(argv.end(), node.begin(), node.end());
    if (!peer.empty()) argv.insert(argv.end(), {"--peer", peer});
    pids_.push_back(testing::Spawn(argv, (dir_ / (name + ".log")).string()));
    WaitFor([&] { return fs::exists(fs::path(Data(name)) / "control.sock"); }, 5s);
  };
  start("a", net.a(), net.Address(1), "");
  start("b", net.b(), net.Address(2), net.Address(1));
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 1 && AlivePeers("b") == 1; }, 15s));
  fs::path one = dir_ / "one", two = dir_ / "two";
  WriteRandomFile(one, 1, 1);
  WriteRandomFile(two, 1, 2);
  ASSERT_EQ(Dfs({"--data", Data("a"), "put", "shared", one.string()}).exit_code, 0);

  net.Link(false);
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 0 && AlivePeers("b") == 0; }, 15s));
  // Both sides write while apart, one key on both.
  ASSERT_EQ(Dfs({"--data", Data("a"), "put", "from-a", one.string()}).exit_code, 0);
  ASSERT_EQ(Dfs({"--data", Data("b"), "put", "from-b", two.string()}).exit_code, 0);
  ASSERT_EQ(Dfs({"--data", Data("b"), "put", "conflict", two.string()}).exit_code, 0);
  ASSERT_EQ(Dfs({"--data", Data("a"), "put", "conflict", one.string()}).exit_code, 0);  // later
  ASSERT_EQ(Dfs({"--data", Data("b"), "rm", "shared"}).exit_code, 0);

  net.Link(true);
  auto listing = [&](const std::string& node) {
    auto r = Dfs({"--data", Data(node), "ls", "--json"});
    return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
  };
  auto keys = [&](const std::string& node) {
    std::vector<std::string> k;
    for (const auto& f : listing(node)) k.push_back(f["key"]);
    return k;
  };
  // Both creates of "conflict" are kept (nothing written is lost): the
  // later one keeps the name, the other is listed as "conflict~<8 hex>"
  // (docs/consistency.md), the same on both sides.
  auto settled = [&] {
    std::vector<std::string> ka = keys("a"), kb = keys("b");
    return ka == kb && ka.size() == 4 && ka[0] == "conflict" && ka[1].rfind("conflict~", 0) == 0 &&
           ka[2] == "from-a" && ka[3] == "from-b";
  };
  ASSERT_TRUE(WaitFor(settled, 30s)) << listing("a").dump() << "\n" << listing("b").dump();
  std::string older = keys("a")[1];
  // The later write holds the name on both sides, the earlier one the other
  // name, and both are readable on both.
  for (const char* node : {"a", "b"}) {
    fs::path out = dir_ / (std::string("conflict.") + node);
    auto get = Dfs({"--data", Data(node), "get", "conflict", out.string()});
    ASSERT_EQ(get.exit_code, 0) << node << ": " << get.err;
    EXPECT_TRUE(SameFile(one, out)) << node;
    fs::path out2 = dir_ / (std::string("older.") + node);
    auto get2 = Dfs({"--data", Data(node), "get", older, out2.string()});
    ASSERT_EQ(get2.exit_code, 0) << node << ": " << get2.err;
    EXPECT_TRUE(SameFile(two, out2)) << node;
  }
}

}  // namespace
}  // namespace dfs

// dfs scrub through a running node: a damaged chunk is replaced by a peer's
// verified copy; without a node, scrub says to start one.

namespace dfs {
namespace {

// The chunk files of a node: DIR/chunks/ab/cd/<64 hex>.
TEST_F(DfsdTest, ScrubReplacesADamagedChunkFromAPeer) {
  StartKeyed("a", {});
  std::string address = Address("a");
  StartKeyed("b", {address});
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 1 && AlivePeers("b") == 1; }, 10s));
  fs::path in = dir_ / "scrub.in";
  WriteRandomFile(in, 3, 5);
  auto put = Dfs({"--data", Data("a"), "put", "scrubbed", in.string()});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  // The put returned once both nodes (the write quorum of two) held every
  // chunk; one of a's copies is now damaged in the middle.
  std::vector<fs::path> chunks = ChunkFiles(Data("a"));
  ASSERT_GE(chunks.size(), 2u);
  fs::path victim = chunks[chunks.size() / 2];
  testing::FlipByte(victim, static_cast<std::streamoff>(fs::file_size(victim) / 2));

  auto r = Dfs({"--data", Data("a"), "scrub", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.err, "");
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["checked"], chunks.size()) << r.out;
  EXPECT_EQ(j["bad"], 1) << r.out;
  EXPECT_EQ(j["repaired"], 1) << r.out;
  EXPECT_EQ(j["unrepaired"], 0) << r.out;
  EXPECT_TRUE(j["unrepaired_ids"].empty()) << r.out;

  fs::path out = dir_ / "scrub.out";
  auto get = Dfs({"--data", Data("a"), "get", "scrubbed", out.string()});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_TRUE(SameFile(in, out));
  // The copy on a's disk is good again, not just read around.
  r = Dfs({"--data", Data("a"), "scrub"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, fmt::format("checked {} chunks: 0 bad, 0 repaired, 0 could not be repaired\n",
                               chunks.size()));

  auto status = Dfs({"--data", Data("a"), "status"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("under-replicated: "), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("last repair:"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("files:    1, 3.0 MiB"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("ALIVE"), std::string::npos) << status.out;
}

// dfs repair: a pass on demand gives every chunk its copies now, and says
// where they were missing (also in status).
TEST_F(DfsdTest, RepairOnDemandRestoresCopiesAndSaysWhere) {
  StartKeyed("a", {}, {"--replicas", "2"});
  fs::path in = dir_ / "repair.in";
  WriteRandomFile(in, 3, 8);
  auto put = Dfs({"--data", Data("a"), "put", "repaired", in.string()});
  ASSERT_EQ(put.exit_code, 0) << put.err;  // alone: a write quorum of one
  const std::size_t n = ChunkFiles(Data("a")).size();
  ASSERT_GE(n, 2u);
  StartKeyed("b", {Address("a")}, {"--replicas", "2"});
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 1 && AlivePeers("b") == 1; }, 10s));

  // Whether or not the pass the join starts got there first, b holds every
  // chunk once dfs repair returns.
  auto r = Dfs({"--data", Data("a"), "repair", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["last_checked"], n) << r.out;
  EXPECT_EQ(j["last_failed"], 0) << r.out;
  EXPECT_EQ(ChunkFiles(Data("b")).size(), n);

  // Two of b's copies go missing: the next pass finds exactly those, on b.
  std::vector<fs::path> on_b = ChunkFiles(Data("b"));
  fs::remove(on_b[0]);
  fs::remove(on_b[1]);
  r = Dfs({"--data", Data("a"), "repair", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["last_under_replicated"], 2) << r.out;
  EXPECT_EQ(j["last_copies_made"], 2) << r.out;
  ASSERT_EQ(j["holders"].size(), 1u) << r.out;
  EXPECT_EQ(j["holders"][0]["address"], Address("b")) << r.out;
  EXPECT_EQ(j["holders"][0]["node"], Status("b")["node"]) << r.out;
  EXPECT_EQ(j["holders"][0]["lacked"], 2) << r.out;
  EXPECT_EQ(j["holders"][0]["copied"], 2) << r.out;
  EXPECT_EQ(j["holders"][0]["failed"], 0) << r.out;
  EXPECT_TRUE(fs::exists(on_b[0]) && fs::exists(on_b[1]));

  // The human forms say the same.
  auto status = Dfs({"--data", Data("a"), "status"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find(fmt::format("lacked on {} (", Address("b"))), std::string::npos)
      << status.out;
  EXPECT_NE(status.out.find("2 chunks, 2 copied, 0 failed"), std::string::npos) << status.out;
  r = Dfs({"--data", Data("a"), "repair"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, fmt::format("checked {} chunks: 0 lacked a copy on a holder, 0 copies made, 0 failed\n", n));
}

// With --repair-interval, copies a holder lost come back on their own,
// though no member joined or left.
TEST_F(DfsdTest, PeriodicRepairRestoresLostCopiesWithoutAChangeOfMembers) {
  const std::vector<std::string> opts = {"--replicas", "2", "--repair-interval", "1"};
  StartKeyed("a", {}, opts);
  StartKeyed("b", {Address("a")}, opts);
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 1 && AlivePeers("b") == 1; }, 10s));
  fs::path in = dir_ / "periodic.in";
  WriteRandomFile(in, 3, 9);
  ASSERT_EQ(Dfs({"--data", Data("a"), "put", "f", in.string()}).exit_code, 0);
  const std::size_t n = ChunkFiles(Data("a")).size();
  ASSERT_TRUE(WaitFor([&] { return ChunkFiles(Data("b")).size() == n; }, 10s));
  auto passes = [&] {
    return Status("a")["repair"]["passes"].get<int>() + Status("b")["repair"]["passes"].get<int>();
  };
  // The passes after the start and the join are done: what follows is the timer's.
  ASSERT_TRUE(WaitFor([&] {
    return Status("a")["repair"]["passes"].get<int>() >= 1 &&
           Status("b")["repair"]["passes"].get<int>() >= 1;
  }, 15s));
  const int before = passes();
  std::vector<fs::path> on_b = ChunkFiles(Data("b"));
  fs::remove(on_b[0]);
  fs::remove(on_b[1]);
  EXPECT_TRUE(WaitFor([&] { return fs::exists(on_b[0]) && fs::exists(on_b[1]); }, 15s));
  EXPECT_GT(passes(), before);
}

TEST_F(DfsdTest, ScrubWithoutARunningNodeSaysToStartOne) {
  StartKeyed("a", {});
  ASSERT_EQ(Dfs({"--data", Data("a"), "put", "k", (dir_ / "net.key").string()}).exit_code, 0);
  EXPECT_EQ(testing::Stop(pids_.back(), SIGTERM), 0);
  Forget(pids_.back());
  for (const std::string& data : {Data("a"), Data("never")}) {
    for (bool json : {false, true}) {
      std::vector<std::string> args = {"--data", data, "scrub"};
      if (json) args.push_back("--json");
      auto r = Dfs(args);
      EXPECT_EQ(r.exit_code, 1) << data;
      EXPECT_EQ(r.out, "") << data;
      EXPECT_EQ(r.err, fmt::format("dfs: unavailable: no dfsd is running on {} (start one: dfsd "
                                   "--data {} --network-key FILE)\n",
                                   data, data));
    }
  }
  EXPECT_FALSE(fs::exists(Data("never"))) << "scrub does not create a data directory";
}

}  // namespace
}  // namespace dfs

// Repair across real processes: a member killed for good, past the dead
// time; a fourth joins; every chunk is back to three copies.

namespace dfs {
namespace {

TEST_F(DfsdTest, AfterAMemberIsGonePastTheDeadTimeEveryChunkHasThreeCopiesAgain) {
  const std::vector<std::string> fast = {"--dead-time", "2"};
  StartKeyed("a", {}, fast);
  std::string address = Address("a");
  StartKeyed("b", {address}, fast);
  int c = StartKeyed("c", {address}, fast);
  ASSERT_TRUE(WaitFor([&] { return AlivePeers("a") == 2 && AlivePeers("b") == 2 && AlivePeers("c") == 2; }, 10s));
  fs::path in = dir_ / "in";
  WriteRandomFile(in, 12, 3);
  ASSERT_EQ(Dfs({"--data", Data("a"), "put", "f", in.string()}).exit_code, 0);
  auto stat = nlohmann::json::parse(Dfs({"--data", Data("a"), "stat", "f", "--json"}).out);
  int chunks = stat["chunks"].get<int>();
  ASSERT_GE(chunks, 3);
  auto held = [&](const std::string& node) {
    nlohmann::json s = Status(node);
    return s.is_null() ? -1 : s["chunks"].get<int>();
  };
  EXPECT_EQ(held("c"), chunks);
  EXPECT_EQ(testing::Stop(c, SIGKILL), 128 + SIGKILL);
  Forget(c);
  fs::remove_all(Data("c"));  // gone for good, with its copies
  std::this_thread::sleep_for(2500ms);  // past the dead time
  StartKeyed("d", {Address("b")}, fast);
  EXPECT_TRUE(WaitFor([&] { return held("d") == chunks; }, 30s)) << held("d") << " of " << chunks;
  EXPECT_EQ(held("a"), chunks);
  EXPECT_EQ(held("b"), chunks);
  EXPECT_TRUE(WaitFor([&] {
    nlohmann::json s = Status("d");
    return !s.is_null() && s["repair"]["passes"].get<int>() >= 1 && s["under_replicated"].get<int>() == 0;
  }, 15s)) << Status("d").dump();
  fs::path out = dir_ / "out";
  ASSERT_EQ(Dfs({"--data", Data("d"), "get", "f", out.string()}).exit_code, 0);
  EXPECT_TRUE(SameFile(in, out));
}

}  // namespace
}  // namespace dfs
