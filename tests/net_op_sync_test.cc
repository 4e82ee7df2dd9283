// Op sync over real TCP: the payload codecs against hostile bytes, and
// meshes of op stores that converge by push and by pull, batch by batch.
#include "net/op_sync.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "core/op_store.h"
#include "tests/net_test_util.h"
#include "tests/test_util.h"

namespace dfs::net {
namespace {

using testing::WaitFor;

using namespace testing_net;
using core::SealedOp;

SealedOp Blob(std::uint8_t origin, std::uint64_t seq, std::size_t size = 200) {
  return SealedOp{testing::TestNodeId(origin), seq, testing::RandomBytes(size, seq * 256 + origin)};
}

TEST(OpSyncCodecTest, RoundTrips) {
  std::vector<SealedOp> ops = {Blob(1, 1), Blob(1, 2, 0), Blob(2, 9, 5000)};
  auto back = DecodeOps(EncodeOps(ops));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 3u);
  for (std::size_t i = 0; i < ops.size(); ++i) {
    EXPECT_EQ((*back)[i].origin, ops[i].origin);
    EXPECT_EQ((*back)[i].seq, ops[i].seq);
    EXPECT_EQ((*back)[i].blob, ops[i].blob);
  }
  core::VersionVector v;
  v.Raise(testing::TestNodeId(1), 5);
  v.Raise(testing::TestNodeId(3), 1u << 31);
  auto vb = DecodeVector(EncodeVector(v));
  ASSERT_TRUE(vb.ok());
  EXPECT_EQ(vb->entries(), v.entries());
  EXPECT_TRUE(DecodeOps(EncodeOps({}))->empty());
}

TEST(OpSyncCodecTest, HostilePayloadsAreRefusedNeverTrusted) {
  Bytes good = EncodeOps({Blob(1, 1), Blob(1, 2)});
  for (std::size_t cut = 0; cut < good.size(); cut += 7) {
    EXPECT_FALSE(DecodeOps(ByteSpan(good.data(), cut)).ok()) << "truncated at " << cut;
  }
  Bytes trailing = good;
  trailing.push_back(0);
  EXPECT_FALSE(DecodeOps(trailing).ok());
  Bytes liar = good;
  liar[0] = liar[1] = liar[2] = liar[3] = 0xff;  // 4 billion ops in a few hundred bytes
  auto r = DecodeOps(liar);
  EXPECT_EQ(r.status().code(), core::ErrorCode::kCorrupt);
  Bytes long_blob = good;
  long_blob[4 + core::NodeId::kSize + 8 + 3] = 0x7f;  // first op claims a 2 GiB blob
  EXPECT_FALSE(DecodeOps(long_blob).ok());
  Bytes seq0 = EncodeOps({SealedOp{testing::TestNodeId(1), 0, Bytes(3)}});
  EXPECT_FALSE(DecodeOps(seq0).ok());

  Bytes vec = EncodeVector(core::VersionVector());
  vec[0] = 200;
  EXPECT_FALSE(DecodeVector(vec).ok()) << "count without entries";
  std::mt19937 rng(11);
  for (int i = 0; i < 2000; ++i) {
    Bytes junk(rng() % 300);
    for (auto& b : junk) b = static_cast<std::uint8_t>(rng());
    (void)DecodeOps(junk);  // must not crash or over-allocate
    (void)DecodeVector(junk);
  }
}

struct SyncNode {
  std::unique_ptr<core::OpStore> store;
  std::unique_ptr<Mesh> mesh;
  std::unique_ptr<OpSync> sync;
};

class OpSyncTest : public ::testing::Test {
 protected:
  ~OpSyncTest() override {
    std::promise<void> stopped;
    asio::post(io_, [&] {
      for (auto& n : nodes_) {
        if (n->sync) n->sync->Stop();
        n->mesh->Stop();
      }
      stopped.set_value();
    });
    stopped.get_future().wait();
    guard_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
    nodes_.clear();
  }

  // Adds node `n` (its own op store); it joins through node 0 when there is one.
  SyncNode& Add(std::uint8_t n, std::size_t batch_bytes = 1 << 20,
                std::chrono::milliseconds pull_interval = 200ms) {
    auto node = std::make_unique<SyncNode>();
    node->store = std::move(core::OpStore::Open(dir_ / ("ops" + std::to_string(n) + ".db"))).value();
    OnIo([&] {
      MeshOptions o;
      o.dialer.connection = Fast();
      o.dialer.backoff_min = 50ms;
      node->mesh = std::make_unique<Mesh>(io_, testing::TestNodeId(n), Key(1), o);
      EXPECT_FALSE(node->mesh->Listen(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)));
      OpSyncOptions so;
      so.pull_interval = pull_interval;
      so.batch_bytes = batch_bytes;
      node->sync = std::make_unique<OpSync>(io_, *node->mesh, *node->store, so);
      node->sync->Start();
      if (!nodes_.empty()) node->mesh->AddPeer("127.0.0.1", nodes_[0]->mesh->listen_port());
    });
    nodes_.push_back(std::move(node));
    return *nodes_.back();
  }

  void OnIo(const std::function<void()>& fn) {
    std::promise<void> done;
    asio::post(io_, [&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }


  static std::uint64_t Have(SyncNode& n, std::uint8_t origin) {
    return n.store->Vector()->Get(testing::TestNodeId(origin));
  }

  testing::TempDir dir_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_ = asio::make_work_guard(io_);
  std::thread thread_{[this] { io_.run(); }};
  std::vector<std::unique_ptr<SyncNode>> nodes_;
};

TEST_F(OpSyncTest, PushedOpsReachEveryPeer) {
  SyncNode& a = Add(1);
  SyncNode& b = Add(2);
  SyncNode& c = Add(3);
  (void)b;
  (void)c;
  ASSERT_TRUE(WaitFor([&] {
    std::size_t alive = 0;
    OnIo([&] {
      for (const auto& p : a.mesh->Peers()) alive += p.alive;
    });
    return alive == 2;
  }));
  for (std::uint64_t seq = 1; seq <= 20; ++seq) {
    SealedOp op = Blob(1, seq);
    ASSERT_EQ(*a.store->Accept(op), core::AcceptResult::kApplied);
    a.sync->Publish(op);
  }
  EXPECT_TRUE(WaitFor([&] { return Have(*nodes_[1], 1) == 20 && Have(*nodes_[2], 1) == 20; }))
      << Have(*nodes_[1], 1) << " " << Have(*nodes_[2], 1);
  // Each peer tells the origin how far it holds its ops (durably).
  EXPECT_TRUE(WaitFor([&] {
    return a.sync->Acked(testing::TestNodeId(2)) == 20 && a.sync->Acked(testing::TestNodeId(3)) == 20;
  })) << a.sync->Acked(testing::TestNodeId(2)) << " " << a.sync->Acked(testing::TestNodeId(3));
  EXPECT_EQ(a.sync->Acked(testing::TestNodeId(9)), 0u) << "no such peer";
  EXPECT_FALSE(a.sync->Refuses(testing::TestNodeId(2)));
  // Nobody acknowledges other origins' ops to a.
  EXPECT_EQ(nodes_[1]->sync->Acked(testing::TestNodeId(1)), 0u);
  auto got = *nodes_[2]->store->Since(testing::TestNodeId(1), 7, 1);
  EXPECT_EQ(got[0].blob, Blob(1, 7).blob);
}

TEST_F(OpSyncTest, ALateJoinerPullsAWholeBacklogInSmallBatches) {
  SyncNode& a = Add(1, /*batch_bytes=*/2000);
  // 300 ops of 3 origins, before anyone else exists.
  for (std::uint8_t origin = 1; origin <= 3; ++origin) {
    for (std::uint64_t seq = 1; seq <= 100; ++seq) ASSERT_TRUE(a.store->Accept(Blob(origin, seq)).ok());
  }
  SyncNode& late = Add(4, 2000);
  EXPECT_TRUE(WaitFor([&] {
    return Have(late, 1) == 100 && Have(late, 2) == 100 && Have(late, 3) == 100;
  })) << Have(late, 1) << " " << Have(late, 2) << " " << Have(late, 3);
  // The counter moves just after each op commits: wait for the last one.
  EXPECT_TRUE(WaitFor([&] { return late.sync->accepted() == 300u; }, 2s)) << late.sync->accepted();
  // And the other way: what only the newcomer holds reaches the old node.
  for (std::uint64_t seq = 1; seq <= 5; ++seq) ASSERT_TRUE(late.store->Accept(Blob(4, seq)).ok());
  EXPECT_TRUE(WaitFor([&] { return Have(a, 4) == 5; })) << "periodic pull";
}

TEST_F(OpSyncTest, APushAfterAGapIsFilledByAPull) {
  // No periodic pulls within the test: only the gap can trigger one.
  SyncNode& a = Add(1, 1 << 20, 600s);
  SyncNode& b = Add(2, 1 << 20, 600s);
  ASSERT_TRUE(WaitFor([&] {
    bool up = false;
    OnIo([&] { up = b.mesh->ConnectionTo(testing::TestNodeId(1)) != nullptr; });
    return up;
  }));
  std::this_thread::sleep_for(200ms);  // the pulls on connect are done
  // b never saw ops 1..3 pushed (they were stored before); the push of 4 is a gap.
  for (std::uint64_t seq = 1; seq <= 4; ++seq) ASSERT_TRUE(a.store->Accept(Blob(1, seq)).ok());
  a.sync->Publish(Blob(1, 4));
  EXPECT_TRUE(WaitFor([&] { return Have(b, 1) == 4; }, 3s));
  // The push alone could not be acknowledged past the gap; the pull that
  // filled it is.
  EXPECT_TRUE(WaitFor([&] { return a.sync->Acked(testing::TestNodeId(2)) == 4; }, 3s))
      << a.sync->Acked(testing::TestNodeId(2));
}

}  // namespace
}  // namespace dfs::net
