#include "net/op_sync.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/encoding.h"

namespace dfs::net {

using core::NodeId;
using core::Result;
using core::SealedOp;
using core::Status;
using core::VersionVector;

namespace {

constexpr std::size_t kVectorEntry = NodeId::kSize + 8;
constexpr std::size_t kOpHeader = NodeId::kSize + 8 + 4;
// The largest op a node makes, sealed, fits a push (a batch of one) and a
// pull answer.
static_assert(4 + kOpHeader + core::Op::kMaxEncodedSize + core::OpSealer::kOverhead <=
              kMaxChunkFramePayload);

std::string Short(const NodeId& id) { return id.ToHex().substr(0, 8); }

}  // namespace

Bytes EncodeVector(const VersionVector& v) {
  Bytes out(4 + v.entries().size() * kVectorEntry);
  core::StoreLe(out.data(), v.entries().size(), 4);
  std::uint8_t* p = out.data() + 4;
  for (const auto& [origin, seq] : v.entries()) {
    std::copy(origin.bytes().begin(), origin.bytes().end(), p);
    core::StoreLe(p + NodeId::kSize, seq, 8);
    p += kVectorEntry;
  }
  return out;
}

Result<VersionVector> DecodeVector(ByteSpan payload) {
  if (payload.size() < 4) return Status::Corrupt("op pull: truncated vector");
  std::uint64_t n = core::LoadLe(payload.data(), 4);
  if (payload.size() != 4 + n * kVectorEntry) return Status::Corrupt("op pull: vector length mismatch");
  VersionVector v;
  const std::uint8_t* p = payload.data() + 4;
  for (std::uint64_t i = 0; i < n; ++i, p += kVectorEntry) {
    NodeId origin = *NodeId::FromBytes(ByteSpan(p, NodeId::kSize));
    v.Raise(origin, core::LoadLe(p + NodeId::kSize, 8));
  }
  return v;
}

Bytes EncodeOps(const std::vector<SealedOp>& ops) {
  std::size_t size = 4;
  for (const SealedOp& op : ops) size += kOpHeader + op.blob.size();
  Bytes out(size);
  core::StoreLe(out.data(), ops.size(), 4);
  std::uint8_t* p = out.data() + 4;
  for (const SealedOp& op : ops) {
    std::copy(op.origin.bytes().begin(), op.origin.bytes().end(), p);
    core::StoreLe(p + NodeId::kSize, op.seq, 8);
    core::StoreLe(p + NodeId::kSize + 8, op.blob.size(), 4);
    std::copy(op.blob.begin(), op.blob.end(), p + kOpHeader);
    p += kOpHeader + op.blob.size();
  }
  return out;
}

Result<std::vector<SealedOp>> DecodeOps(ByteSpan payload) {
  if (payload.size() < 4) return Status::Corrupt("ops: truncated batch");
  std::uint64_t n = core::LoadLe(payload.data(), 4);
  // Every op takes at least its header: a count beyond that is a lie, and
  // is refused before anything is reserved for it.
  if (n > (payload.size() - 4) / kOpHeader) return Status::Corrupt("ops: count exceeds the batch");
  std::vector<SealedOp> ops;
  ops.reserve(n);
  std::size_t off = 4;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (payload.size() - off < kOpHeader) return Status::Corrupt("ops: truncated op header");
    const std::uint8_t* p = payload.data() + off;
    SealedOp op;
    op.origin = *NodeId::FromBytes(ByteSpan(p, NodeId::kSize));
    op.seq = core::LoadLe(p + NodeId::kSize, 8);
    std::uint64_t len = core::LoadLe(p + NodeId::kSize + 8, 4);
    off += kOpHeader;
    if (payload.size() - off < len) return Status::Corrupt("ops: truncated op");
    if (op.seq == 0) return Status::Corrupt("ops: sequence number 0");
    op.blob.assign(payload.data() + off, payload.data() + off + len);
    off += len;
    ops.push_back(std::move(op));
  }
  if (off != payload.size()) return Status::Corrupt("ops: trailing bytes");
  return ops;
}

OpSync::OpSync(asio::io_context& io, Mesh& mesh, core::OpReplica& replica, OpSyncOptions options)
    : io_(io),
      mesh_(mesh),
      replica_(replica),
      options_(options),
      timer_(io),
      alive_(std::make_shared<bool>(true)) {}

OpSync::~OpSync() { Stop(); }

void OpSync::Start() {
  mesh_.Handle(FrameType::kOpPull, [this](const NodeId&, Connection& conn, Frame f) {
    ServePull(conn, std::move(f));
  });
  mesh_.Handle(FrameType::kOpPush, [this](const NodeId& from, Connection&, Frame f) {
    OnPush(from, std::move(f));
  });
  mesh_.Handle(FrameType::kOpAck, [this](const NodeId& from, Connection&, Frame f) {
    OnAck(from, f);
  });
  mesh_.OnPeerUp([this, alive = alive_](const NodeId& peer, Connection&) {
    if (*alive) PullFrom(peer);
  });
  Tick();
}

void OpSync::Stop() {
  *alive_ = false;
  timer_.cancel();
}

void OpSync::Tick() {
  timer_.expires_after(options_.pull_interval);
  timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (ec || !*alive) return;
    for (const PeerInfo& p : mesh_.Peers()) {
      if (p.alive) PullFrom(p.id);
    }
    Tick();
  });
}

void OpSync::Publish(SealedOp op) {
  asio::post(io_, [this, alive = alive_, op = std::move(op)]() mutable {
    if (!*alive) return;
    Frame f;
    f.type = FrameType::kOpPush;
    f.payload = EncodeOps({op});
    if (f.payload.size() > *MaxPayload(static_cast<std::uint8_t>(FrameType::kOpPush)) - kSealOverhead) {
      spdlog::error("op {} of {} is too large to replicate ({} bytes)", op.seq, Short(op.origin),
                    f.payload.size());
      return;
    }
    // A peer whose queue is full misses the push and pulls the op later.
    mesh_.Broadcast(f);
  });
}

void OpSync::PullFrom(const NodeId& peer) {
  if (pulling_.count(peer) > 0) {
    pull_again_.insert(peer);
    return;
  }
  pulling_.insert(peer);
  pool_.Submit([this, alive = alive_, peer] {
    Result<VersionVector> mine = replica_.Vector();
    if (!mine.ok()) spdlog::warn("op sync: {}", mine.status().ToString());
    asio::post(io_, [this, alive, peer, ok = mine.ok(),
                     v = mine.ok() ? std::move(mine).value() : VersionVector()]() mutable {
      if (!*alive) return;
      if (!ok) return FinishPull(peer, false);
      SendPull(peer, std::move(v));
    });
  });
}

void OpSync::SendPull(const NodeId& peer, VersionVector mine) {
  std::shared_ptr<Connection> conn = mesh_.ConnectionTo(peer);
  if (!conn) return FinishPull(peer, false);
  Frame request;
  request.type = FrameType::kOpPull;
  request.payload = EncodeVector(mine);
  asio::co_spawn(
      io_,
      [this, alive = alive_, conn, peer, request = std::move(request)]() mutable
          -> asio::awaitable<void> {
        auto reply = co_await conn->Request(std::move(request), options_.deadline);
        if (!*alive) co_return;
        if (auto* ec = std::get_if<std::error_code>(&reply)) {
          spdlog::debug("op pull from {}: {}", conn->peer(), ec->message());
          FinishPull(peer, false);
          co_return;
        }
        Frame& f = std::get<Frame>(reply);
        Result<std::vector<SealedOp>> ops = DecodeOps(f.payload);
        if (!ops.ok()) {
          spdlog::warn("op pull from {}: {}", conn->peer(), ops.status().ToString());
          FinishPull(peer, false);
          co_return;
        }
        if (ops->empty()) {
          FinishPull(peer, false);
          co_return;
        }
        pool_.Submit([this, alive, peer, ops = std::move(ops).value()] {
          auto [applied, gap] = AcceptAll(ops, peer);
          (void)gap;
          asio::post(io_, [this, alive, peer, applied = applied] {
            if (*alive) FinishPull(peer, applied);
          });
        });
      },
      asio::detached);
}

void OpSync::FinishPull(const NodeId& peer, bool progressed) {
  pulling_.erase(peer);
  bool again = pull_again_.erase(peer) > 0;
  if (progressed || again) PullFrom(peer);
}

std::pair<bool, bool> OpSync::AcceptAll(const std::vector<SealedOp>& ops, const NodeId& from) {
  bool applied = false, gap = false;
  std::map<NodeId, bool> origins;  // -> refused (another volume's)
  for (const SealedOp& op : ops) {
    if (op.origin != mesh_.self()) origins.try_emplace(op.origin, false);
    Result<core::AcceptResult> r = replica_.Accept(op);
    if (!r.ok()) {
      if (r.status().code() == core::ErrorCode::kWrongKey) {
        origins[op.origin] = true;
        spdlog::debug("op {} of {} from peer {}: {}", op.seq, Short(op.origin), Short(from),
                      r.status().ToString());
        continue;
      }
      spdlog::warn("op {} of {} from peer {}: {}", op.seq, Short(op.origin), Short(from),
                   r.status().ToString());
      // Later ops of that origin would only be gaps now; the others may go on.
      continue;
    }
    if (*r == core::AcceptResult::kApplied) {
      applied = true;
      accepted_.fetch_add(1);
    } else if (*r == core::AcceptResult::kGap) {
      gap = true;
    }
  }
  // One sync and one ack per origin for every batch the worker has queued
  // now: a burst of pushes costs one fdatasync, not one each.
  for (const auto& [origin, refused] : origins) pending_acks_[origin] |= refused;
  if (!pending_acks_.empty() && !acks_scheduled_) {
    acks_scheduled_ = true;
    pool_.Submit([this] {
      acks_scheduled_ = false;
      std::map<NodeId, bool> due;
      due.swap(pending_acks_);
      SendAcks(due);
    });
  }
  return {applied, gap};
}

void OpSync::SendAcks(const std::map<NodeId, bool>& origins) {
  // Durable first: an ack is a promise that the ops survive a crash here.
  if (Status s = replica_.Sync(); !s.ok()) {
    spdlog::warn("op sync: {}", s.ToString());
    return;
  }
  Result<VersionVector> v = replica_.Vector();
  if (!v.ok()) return;
  std::vector<std::pair<NodeId, Bytes>> acks;
  for (const auto& [origin, refused] : origins) {
    acks.emplace_back(origin, EncodeAck(origin, v->Get(origin), refused));
  }
  asio::post(io_, [this, alive = alive_, acks = std::move(acks)]() mutable {
    if (!*alive) return;
    for (auto& [origin, payload] : acks) {
      std::shared_ptr<Connection> conn = mesh_.ConnectionTo(origin);
      if (!conn) continue;  // it asks for none: it pulls what it lacks, or waits no more
      Frame f;
      f.type = FrameType::kOpAck;
      f.payload = std::move(payload);
      (void)conn->Send(std::move(f));
    }
  });
}

Bytes OpSync::EncodeAck(const NodeId& origin, std::uint64_t seq, bool refused) {
  Bytes out(NodeId::kSize + 8 + 1);
  std::copy(origin.bytes().begin(), origin.bytes().end(), out.begin());
  core::StoreLe(out.data() + NodeId::kSize, seq, 8);
  out[NodeId::kSize + 8] = refused ? 1 : 0;
  return out;
}

void OpSync::OnAck(const NodeId& from, const Frame& frame) {
  const Bytes& p = frame.payload;
  if (p.size() != NodeId::kSize + 8 + 1 || p[NodeId::kSize + 8] > 1) {
    spdlog::warn("op ack from {}: malformed", Short(from));
    return;
  }
  if (*NodeId::FromBytes(ByteSpan(p.data(), NodeId::kSize)) != mesh_.self()) return;  // not ours
  std::uint64_t seq = core::LoadLe(p.data() + NodeId::kSize, 8);
  std::lock_guard lock(ack_mu_);
  if (p[NodeId::kSize + 8] == 1) {
    refusing_.insert(from);
    return;
  }
  refusing_.erase(from);
  std::uint64_t& have = acked_[from];
  have = std::max(have, seq);
}

std::uint64_t OpSync::Acked(const NodeId& peer) const {
  std::lock_guard lock(ack_mu_);
  auto it = acked_.find(peer);
  return it == acked_.end() ? 0 : it->second;
}

bool OpSync::Refuses(const NodeId& peer) const {
  std::lock_guard lock(ack_mu_);
  return refusing_.count(peer) > 0;
}

void OpSync::ServePull(Connection& conn, Frame frame) {
  std::shared_ptr<Connection> c = conn.shared_from_this();
  pool_.Submit([this, alive = alive_, c, frame = std::move(frame)] {
    Frame reply;
    reply.type = FrameType::kOpPullReply;
    reply.request_id = frame.request_id;
    std::vector<SealedOp> batch;
    Result<VersionVector> theirs = DecodeVector(frame.payload);
    Result<VersionVector> mine = replica_.Vector();
    if (!theirs.ok()) {
      spdlog::warn("op pull from {}: {}", c->peer(), theirs.status().ToString());
    } else if (!mine.ok()) {
      spdlog::warn("op pull: {}", mine.status().ToString());
    } else {
      std::size_t bytes = 0;
      for (const auto& [origin, from_seq] : mine->Missing(*theirs)) {
        if (bytes >= options_.batch_bytes) break;
        Result<std::vector<SealedOp>> ops =
            replica_.Since(origin, from_seq, options_.batch_bytes - bytes);
        if (!ops.ok()) {
          spdlog::warn("op pull: {}", ops.status().ToString());
          break;
        }
        for (SealedOp& op : *ops) {
          bytes += op.blob.size() + kOpHeader;
          batch.push_back(std::move(op));
        }
      }
    }
    reply.payload = EncodeOps(batch);
    std::uint32_t max = *MaxPayload(static_cast<std::uint8_t>(FrameType::kOpPullReply)) - kSealOverhead;
    while (reply.payload.size() > max && batch.size() > 1) {
      batch.pop_back();  // one op beyond the budget made it too large
      reply.payload = EncodeOps(batch);
    }
    if (reply.payload.size() > max) {
      spdlog::error("op {} of {} is too large to replicate", batch[0].seq, Short(batch[0].origin));
      reply.payload = EncodeOps({});
    }
    asio::post(io_, [alive, c, reply = std::move(reply)]() mutable {
      if (*alive && !c->Send(std::move(reply))) {
        spdlog::debug("op pull reply to {} dropped (queue full or closed)", c->peer());
      }
    });
  });
}

void OpSync::OnPush(const NodeId& from, Frame frame) {
  Result<std::vector<SealedOp>> ops = DecodeOps(frame.payload);
  if (!ops.ok()) {
    spdlog::warn("op push from {}: {}", Short(from), ops.status().ToString());
    return;
  }
  pool_.Submit([this, alive = alive_, from, ops = std::move(ops).value()] {
    auto [applied, gap] = AcceptAll(ops, from);
    (void)applied;
    if (gap) {
      asio::post(io_, [this, alive, from] {
        if (*alive) PullFrom(from);
      });
    }
  });
}

}  // namespace dfs::net
