#include "net/mesh.h"

#include <gtest/gtest.h>

#include "tests/test_util.h"

#include "tests/net_test_util.h"

namespace dfs::net {
namespace {

using namespace testing_net;

MeshOptions Opts() {
  MeshOptions o;
  o.dialer.connection = Fast();
  o.dialer.backoff_min = 50ms;
  o.dialer.backoff_max = 300ms;
  return o;
}

std::unique_ptr<Mesh> Node(asio::io_context& io, std::uint8_t id, NetworkKey key = Key(1)) {
  auto m = std::make_unique<Mesh>(io, testing::TestNodeId(id), key, Opts());
  EXPECT_FALSE(m->Listen(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)));
  return m;
}

std::size_t Alive(const Mesh& m) {
  std::size_t n = 0;
  for (const PeerInfo& p : m.Peers()) n += p.alive;
  return n;
}

TEST(MeshTest, OnePeerIsEnoughToLearnTheWholeMesh) {
  asio::io_context io;
  auto a = Node(io, 1), b = Node(io, 2), c = Node(io, 3), d = Node(io, 4);
  b->AddPeer("127.0.0.1", a->listen_port());
  c->AddPeer("127.0.0.1", a->listen_port());
  d->AddPeer("127.0.0.1", c->listen_port());
  ASSERT_TRUE(RunUntil(io, [&] {
    return Alive(*a) == 3 && Alive(*b) == 3 && Alive(*c) == 3 && Alive(*d) == 3;
  }, 5000ms)) << Alive(*a) << Alive(*b) << Alive(*c) << Alive(*d);
  // Everyone knows everyone's listening address.
  for (const PeerInfo& p : b->Peers()) {
    EXPECT_FALSE(p.address.empty());
    EXPECT_NE(p.id, b->self());
  }
}

TEST(MeshTest, BroadcastReachesEveryLivePeerOnce) {
  asio::io_context io;
  auto a = Node(io, 1), b = Node(io, 2), c = Node(io, 3);
  b->AddPeer("127.0.0.1", a->listen_port());
  c->AddPeer("127.0.0.1", b->listen_port());
  ASSERT_TRUE(RunUntil(io, [&] { return Alive(*a) == 2 && Alive(*b) == 2 && Alive(*c) == 2; }));
  std::map<core::NodeId, int> got;
  auto count = [&](const core::NodeId& me) {
    return [&, me](const core::NodeId& from, Connection&, Frame) {
      if (from == testing::TestNodeId(1)) ++got[me];
    };
  };
  b->Handle(FrameType::kRequest, count(b->self()));
  c->Handle(FrameType::kRequest, count(c->self()));
  EXPECT_EQ(a->Broadcast(Req("hello all")), 2u);
  ASSERT_TRUE(RunUntil(io, [&] { return got[testing::TestNodeId(2)] == 1 && got[testing::TestNodeId(3)] == 1; }));
  RunUntil(io, [] { return false; }, 100ms);
  EXPECT_EQ(got[testing::TestNodeId(2)], 1);
  EXPECT_EQ(got[testing::TestNodeId(3)], 1);
}

TEST(MeshTest, AStoppedNodeIsSeenAsDeadAndAWrongKeyNeverJoins) {
  asio::io_context io;
  auto a = Node(io, 1), b = Node(io, 2);
  auto outsider = Node(io, 9, Key(7));
  b->AddPeer("127.0.0.1", a->listen_port());
  outsider->AddPeer("127.0.0.1", a->listen_port());
  ASSERT_TRUE(RunUntil(io, [&] { return Alive(*a) == 1 && Alive(*b) == 1; }));
  RunUntil(io, [] { return false; }, 300ms);
  EXPECT_EQ(a->Peers().size(), 1u) << "the outsider is not a member";
  EXPECT_TRUE(outsider->Peers().empty());
  b->Stop();
  ASSERT_TRUE(RunUntil(io, [&] { return Alive(*a) == 0; }, 3000ms));
  ASSERT_EQ(a->Peers().size(), 1u);
  EXPECT_FALSE(a->Peers()[0].alive);
}

TEST(MeshTest, PendingHandshakesAreCapped) {
  asio::io_context io;
  MeshOptions o = Opts();
  o.max_pending_handshakes = 3;
  Mesh a(io, testing::TestNodeId(1), Key(1), o);
  ASSERT_FALSE(a.Listen(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)));
  std::vector<std::unique_ptr<tcp::socket>> strangers;
  for (int i = 0; i < 10; ++i) {  // connect and say nothing
    auto s = std::make_unique<tcp::socket>(io);
    s->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), a.listen_port()));
    strangers.push_back(std::move(s));
  }
  RunUntil(io, [] { return false; }, 100ms);
  // The surplus strangers were hung up on at once.
  int hung_up = 0;
  for (auto& s : strangers) {
    s->non_blocking(true);
    std::uint8_t b;
    boost::system::error_code ec;
    s->read_some(asio::buffer(&b, 1), ec);
    if (ec == asio::error::eof || ec == asio::error::connection_reset) ++hung_up;
  }
  EXPECT_EQ(hung_up, 7);
}

TEST(MeshTest, DialingItselfIsDetectedAndDropped) {
  asio::io_context io;
  auto a = Node(io, 1);
  a->AddPeer("127.0.0.1", a->listen_port());
  RunUntil(io, [] { return false; }, 500ms);
  EXPECT_TRUE(a->Peers().empty());
}

}  // namespace
}  // namespace dfs::net
