// OpSync: replicates the volume's op log over the mesh (docs/protocol.md,
// "op sync"). It knows ops only as sealed blobs with an origin and a
// sequence number (core::OpReplica), so a keyless storage peer runs it too.
//
//   Push  a new local op is sent at once to every live peer (kOpPush).
//   Ack   a node that took ops (pushed or pulled) makes them durable and
//         tells their origin, when connected to it, how far it now holds
//         that origin's ops (kOpAck); a node with another volume's key says
//         it refuses them. The origin waits for these acks before it calls
//         a change acknowledged (Node::WaitOpsAcked: `dfs put`, fsync).
//   Pull  anti-entropy: a node sends a peer its version vector (kOpPull);
//         the peer answers with a batch of the ops the vector lacks
//         (kOpPullReply, up to batch_bytes). A non-empty batch makes the
//         puller pull again, so a long backlog streams batch by batch with
//         one request in flight per peer — that is the flow control.
//         Pulls happen when a connection to a member comes up, when a
//         pushed op arrives after a gap, and every pull_interval.
//
// Replica access (disk) runs on one worker thread, in arrival order; the io
// thread only moves frames.
// Threading: construct, Start and Stop on the io thread; Publish from any.
#pragma once

#include <utility>  // before Asio, for GCC 12

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "core/op_replica.h"
#include "core/worker_pool.h"
#include "net/mesh.h"

namespace dfs::net {

struct OpSyncOptions {
  std::chrono::milliseconds pull_interval{5000};
  std::chrono::milliseconds deadline{30000};  // for one pull's answer
  std::size_t batch_bytes = 1 << 20;          // sealed op bytes per answer
};

// Frame payload codecs (exposed for tests and fuzzing). Decoders validate
// every length and fail with kCorrupt.
Bytes EncodeVector(const core::VersionVector& v);
core::Result<core::VersionVector> DecodeVector(ByteSpan payload);
Bytes EncodeOps(const std::vector<core::SealedOp>& ops);
core::Result<std::vector<core::SealedOp>> DecodeOps(ByteSpan payload);

class OpSync {
 public:
  OpSync(asio::io_context& io, Mesh& mesh, core::OpReplica& replica, OpSyncOptions options = {});
  ~OpSync();

  void Start();
  void Stop();

  // Sends one of this node's new ops to every live peer. Any thread.
  void Publish(core::SealedOp op);

  // Ops taken from peers (applied, or stored on a keyless node) so far.
  std::uint64_t accepted() const { return accepted_.load(); }

  // How far `peer` has acknowledged holding this node's ops durably (0:
  // none yet), and whether it refuses them (it holds another volume's
  // key). Any thread.
  std::uint64_t Acked(const core::NodeId& peer) const;
  bool Refuses(const core::NodeId& peer) const;

  // kOpAck payload (exposed for tests): origin (16) || seq (u64) || flags
  // (bit 0: the ops are refused, sealed under another volume's key).
  static Bytes EncodeAck(const core::NodeId& origin, std::uint64_t seq, bool refused);

 private:
  void PullFrom(const core::NodeId& peer);
  void SendPull(const core::NodeId& peer, core::VersionVector mine);
  void FinishPull(const core::NodeId& peer, bool progressed);
  void ServePull(Connection& conn, Frame frame);
  void OnPush(const core::NodeId& from, Frame frame);
  void OnAck(const core::NodeId& from, const Frame& frame);
  // On the worker, after accepting: syncs the replica, then tells each
  // origin (-> whether its ops were refused) how far it is held here.
  void SendAcks(const std::map<core::NodeId, bool>& origins);
  // Accepts ops in order on the worker; returns (any applied, any gap).
  std::pair<bool, bool> AcceptAll(const std::vector<core::SealedOp>& ops, const core::NodeId& from);
  void Tick();

  asio::io_context& io_;
  Mesh& mesh_;
  core::OpReplica& replica_;
  OpSyncOptions options_;
  asio::steady_timer timer_;
  std::set<core::NodeId> pulling_;     // a pull is in flight to these
  std::set<core::NodeId> pull_again_;  // asked for another while one was in flight
  std::atomic<std::uint64_t> accepted_{0};
  mutable std::mutex ack_mu_;
  std::map<core::NodeId, std::uint64_t> acked_;  // guarded by ack_mu_
  std::set<core::NodeId> refusing_;              // guarded by ack_mu_
  std::map<core::NodeId, bool> pending_acks_;    // the worker's: origins to ack
  bool acks_scheduled_ = false;                  // the worker's
  std::shared_ptr<bool> alive_;  // false once stopped: late callbacks do nothing
  core::WorkerPool pool_{1};     // the replica's one thread; declared last, joined first
};

}  // namespace dfs::net
