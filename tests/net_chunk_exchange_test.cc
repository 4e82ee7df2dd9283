// Chunks replicated and fetched between mesh nodes over real TCP, through
// the same ReplicatedChunkStore the in-memory tests exercise.
#include "net/chunk_exchange.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "core/memory_chunk_store.h"
#include "core/placement.h"
#include "core/replicated_chunk_store.h"
#include "tests/net_test_util.h"
#include "tests/test_util.h"

namespace dfs::net {
namespace {

using namespace testing_net;

struct TcpNode {
  core::MemoryChunkStore store;
  std::unique_ptr<Mesh> mesh;
  std::unique_ptr<ChunkServer> server;
  std::unique_ptr<MeshPeerNetwork> network;
  std::unique_ptr<core::ReplicatedChunkStore> replicated;
};

class ChunkExchangeTest : public ::testing::Test {
 protected:
  void Build(int n, std::size_t replicas) {
    for (int i = 0; i < n; ++i) {
      auto node = std::make_unique<TcpNode>();
      MeshOptions o;
      o.dialer.connection = Fast();
      o.dialer.backoff_min = 50ms;
      node->mesh = std::make_unique<Mesh>(io_, testing::TestNodeId(static_cast<std::uint8_t>(i + 1)), Key(1), o);
      ASSERT_FALSE(node->mesh->Listen(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)));
      node->server = std::make_unique<ChunkServer>(io_, *node->mesh, node->store);
      node->network = std::make_unique<MeshPeerNetwork>(io_, *node->mesh);
      core::ReplicationOptions r;
      r.replicas = replicas;
      r.deadline = 5000ms;
      node->replicated = std::make_unique<core::ReplicatedChunkStore>(node->store, *node->network, r);
      nodes_.push_back(std::move(node));
    }
    for (int i = 1; i < n; ++i) {
      nodes_[static_cast<std::size_t>(i)]->mesh->AddPeer("127.0.0.1", nodes_[0]->mesh->listen_port());
    }
    io_thread_ = std::thread([this] { io_.run(); });
    // Wait for a full mesh.
    for (int tries = 0; tries < 100; ++tries) {
      bool full = true;
      for (auto& node : nodes_) full &= node->network->LiveMembers().size() == nodes_.size();
      if (full) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "mesh did not form";
  }
  void TearDown() override {
    std::promise<void> stopped;
    asio::post(io_, [&] {
      for (auto& node : nodes_) node->mesh->Stop();
      stopped.set_value();
    });
    stopped.get_future().wait();
    work_guard_.reset();
    io_.stop();
    if (io_thread_.joinable()) io_thread_.join();
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_guard_ = asio::make_work_guard(io_);
  std::thread io_thread_;
  std::vector<std::unique_ptr<TcpNode>> nodes_;
};

TEST_F(ChunkExchangeTest, PutReplicatesToHoldersOverTcp) {
  Build(3, 3);
  for (std::uint32_t i = 0; i < 10; ++i) {
    core::Bytes data = testing::RandomBytes(100000 + i, i);
    core::Status s = nodes_[0]->replicated->Put(testing::TestChunkId(i), data);
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (auto& node : nodes_) {
      core::Bytes out;
      ASSERT_TRUE(node->store.Get(testing::TestChunkId(i), &out).ok());
      EXPECT_EQ(out, data);
    }
  }
}

TEST_F(ChunkExchangeTest, ANodeWithoutACopyFetchesItFromAPeer) {
  Build(3, 1);
  // R = 1: node 0 keeps its copy and places one on the top-ranked holder.
  std::vector<core::NodeId> members = {testing::TestNodeId(1), testing::TestNodeId(2), testing::TestNodeId(3)};
  std::uint32_t chosen = 0;
  for (std::uint32_t i = 0; i < 1000; ++i) {
    if (core::Holders(testing::TestChunkId(i), members, 1)[0] == testing::TestNodeId(2)) {
      chosen = i;
      break;
    }
  }
  core::Bytes data = testing::RandomBytes(4 << 20, 77);  // a full-size chunk
  ASSERT_TRUE(nodes_[0]->replicated->Put(testing::TestChunkId(chosen), data).ok());
  EXPECT_FALSE(*nodes_[2]->store.Has(testing::TestChunkId(chosen)));
  core::Bytes out;
  core::Status s = nodes_[2]->replicated->Get(testing::TestChunkId(chosen), &out);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(out, data);
}

TEST_F(ChunkExchangeTest, MissingEverywhereIsNotFound) {
  Build(2, 2);
  core::Bytes out;
  core::Status s = nodes_[1]->replicated->Get(testing::TestChunkId(999), &out);
  EXPECT_EQ(s.code(), core::ErrorCode::kNotFound) << s.ToString();
}

// A put to several holders at once: each holder stores it, and each
// answer comes back in the order asked, a member without a connection as
// kUnavailable without holding up the others.
TEST_F(ChunkExchangeTest, PutToAllHoldersAnswersForEachInOrder) {
  Build(3, 3);
  const core::ChunkId id = testing::TestChunkId(7);
  const core::Bytes data = testing::RandomBytes(2 << 20, 7);
  std::vector<core::NodeId> to = {testing::TestNodeId(3), testing::TestNodeId(9),
                                  testing::TestNodeId(2)};
  std::vector<core::Status> got = nodes_[0]->network->PutChunkToAll(to, id, data, 5000ms);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_TRUE(got[0].ok()) << got[0].ToString();
  EXPECT_EQ(got[1].code(), core::ErrorCode::kUnavailable) << got[1].ToString();
  EXPECT_TRUE(got[2].ok()) << got[2].ToString();
  for (std::size_t i : {std::size_t{1}, std::size_t{2}}) {
    core::Bytes out;
    ASSERT_TRUE(nodes_[i]->store.Get(id, &out).ok()) << "node " << i;
    EXPECT_EQ(out, data);
  }
  EXPECT_FALSE(*nodes_[0]->store.Has(id)) << "the asker's own copy is not this call's business";
}

// The answer's last byte is its status: a chunk of any size (one byte
// included) comes back whole, and a peer's error arrives with its code and
// its message.
TEST_F(ChunkExchangeTest, PeerAnswersCarryTheChunkOrTheErrorAndItsCode) {
  Build(2, 1);
  core::PeerNetwork& from1 = *nodes_[1]->network;
  const core::NodeId peer = testing::TestNodeId(1);
  for (std::size_t size : {std::size_t{1}, std::size_t{100}, std::size_t{3 << 20}}) {
    core::ChunkId id = testing::TestChunkId(static_cast<std::uint32_t>(size));
    core::Bytes data = testing::RandomBytes(size, static_cast<std::uint32_t>(size));
    ASSERT_TRUE(nodes_[0]->store.Put(id, data).ok());
    core::Bytes out;
    core::Status s = from1.GetChunk(peer, id, &out, 5000ms);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(out, data) << size << " bytes";
    core::Result<bool> has = from1.HasChunk(peer, id, 5000ms);
    ASSERT_TRUE(has.ok());
    EXPECT_TRUE(*has);
  }
  core::Result<bool> has = from1.HasChunk(peer, testing::TestChunkId(4242), 5000ms);
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);

  core::Bytes out;
  core::Status missing = from1.GetChunk(peer, testing::TestChunkId(4242), &out, 5000ms);
  EXPECT_EQ(missing.code(), core::ErrorCode::kNotFound) << missing.ToString();
  EXPECT_NE(missing.message().find("127.0.0.1:"), std::string::npos) << missing.ToString();
  EXPECT_TRUE(out.empty());

  ASSERT_TRUE(nodes_[0]->store.CorruptForTest(testing::TestChunkId(100)));
  core::Status corrupt = from1.GetChunk(peer, testing::TestChunkId(100), &out, 5000ms);
  EXPECT_EQ(corrupt.code(), core::ErrorCode::kCorrupt) << corrupt.ToString();
  EXPECT_NE(corrupt.message().find(testing::TestChunkId(100).ToHex().substr(0, 8)), std::string::npos)
      << "the serving store's message travels: " << corrupt.ToString();
}

}  // namespace
}  // namespace dfs::net
