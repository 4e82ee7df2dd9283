#include "net/chunk_exchange.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <tuple>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/encoding.h"
#include "net/op_sync.h"

namespace dfs::net {
namespace {

constexpr std::uint8_t kPut = 1;
constexpr std::uint8_t kGet = 2;
constexpr std::uint8_t kHas = 3;
constexpr std::uint8_t kRefs = 4;

// The answer's payload is the chunk (get), one byte (has) or an error
// message, then the status code as its last byte: the asker drops that byte
// and keeps the chunk where it is (no copy of megabytes to shift it).
Frame Reply(std::uint64_t request_id, const core::Status& s, core::ByteSpan data = {}) {
  Frame f;
  f.type = FrameType::kChunkResponse;
  f.request_id = request_id;
  if (s.ok()) {
    f.payload.reserve(data.size() + 1);
    f.payload.insert(f.payload.end(), data.begin(), data.end());
  } else {
    std::string m = s.message().substr(0, 1024);
    f.payload.insert(f.payload.end(), m.begin(), m.end());
  }
  f.payload.push_back(static_cast<std::uint8_t>(s.code()));
  return f;
}

}  // namespace

Bytes EncodeRefsQuery(const RefsQuery& q) {
  Bytes vector = EncodeVector(q.vector);
  Bytes out;
  out.reserve(1 + q.volume.size() + 4 + q.ids.size() * core::ChunkId::kSize + vector.size());
  out.push_back(kRefs);
  out.insert(out.end(), q.volume.begin(), q.volume.end());
  out.resize(out.size() + 4);
  core::StoreLe(out.data() + out.size() - 4, q.ids.size(), 4);
  for (const core::ChunkId& id : q.ids) out.insert(out.end(), id.bytes().begin(), id.bytes().end());
  out.insert(out.end(), vector.begin(), vector.end());
  return out;
}

core::Result<RefsQuery> DecodeRefsQuery(ByteSpan p) {
  constexpr std::size_t kFixed = 1 + std::tuple_size_v<core::KeyCheck> + 4;
  if (p.size() < kFixed || p[0] != kRefs) return core::Status::Corrupt("refs: truncated question");
  RefsQuery q;
  std::copy_n(p.data() + 1, q.volume.size(), q.volume.begin());
  std::uint64_t n = core::LoadLe(p.data() + kFixed - 4, 4);
  if (n > core::GcPeers::kMaxRefsPerAsk || p.size() - kFixed < n * core::ChunkId::kSize) {
    return core::Status::Corrupt("refs: the count exceeds the question");
  }
  q.ids.reserve(n);
  const std::uint8_t* at = p.data() + kFixed;
  for (std::uint64_t i = 0; i < n; ++i, at += core::ChunkId::kSize) {
    q.ids.push_back(*core::ChunkId::FromBytes(ByteSpan(at, core::ChunkId::kSize)));
  }
  DFS_ASSIGN_OR_RETURN(q.vector, DecodeVector(ByteSpan(at, p.data() + p.size() - at)));
  return q;
}

Bytes EncodeRefsAnswer(const core::RefsAnswer& a) {
  Bytes vector = EncodeVector(a.vector);
  Bytes out(1 + 4 + a.live.size());
  out[0] = static_cast<std::uint8_t>(a.code);
  core::StoreLe(out.data() + 1, a.live.size(), 4);
  for (std::size_t i = 0; i < a.live.size(); ++i) out[5 + i] = a.live[i] ? 1 : 0;
  out.insert(out.end(), vector.begin(), vector.end());
  return out;
}

core::Result<core::RefsAnswer> DecodeRefsAnswer(ByteSpan p, std::size_t asked) {
  if (p.size() < 5 || p[0] > static_cast<std::uint8_t>(core::RefsAnswer::Code::kBehind)) {
    return core::Status::Corrupt("refs: a malformed answer");
  }
  core::RefsAnswer a;
  a.code = static_cast<core::RefsAnswer::Code>(p[0]);
  std::uint64_t n = core::LoadLe(p.data() + 1, 4);
  const bool answered = a.code == core::RefsAnswer::Code::kAnswered;
  if (n != (answered ? asked : 0) || p.size() - 5 < n) {
    return core::Status::Corrupt("refs: the answer does not match the question");
  }
  a.live.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    if (p[5 + i] > 1) return core::Status::Corrupt("refs: a malformed answer");
    a.live.push_back(p[5 + i] == 1);
  }
  DFS_ASSIGN_OR_RETURN(a.vector, DecodeVector(p.subspan(5 + n)));
  return a;
}

ChunkServer::ChunkServer(asio::io_context& io, Mesh& mesh, core::ChunkStore& store,
                         RefsAnswerer refs, std::size_t threads)
    : io_(io), store_(store), refs_(std::move(refs)), pool_(threads) {
  mesh.Handle(FrameType::kChunkRequest, [this](const core::NodeId&, Connection& conn, Frame f) {
    Handle(conn, std::move(f));
  });
}

void ChunkServer::Handle(Connection& conn, Frame frame) {
  auto self = conn.shared_from_this();
  const Bytes& p = frame.payload;
  if (!p.empty() && p[0] == kRefs) {
    pool_.Submit([this, self, frame = std::move(frame)] {
      core::Result<RefsQuery> q = DecodeRefsQuery(frame.payload);
      core::Result<core::RefsAnswer> a = q.status();
      if (q.ok()) a = refs_ ? refs_(*q) : core::RefsAnswer{};  // none: "no key"
      Frame reply = a.ok() ? Reply(frame.request_id, core::Status::Ok(), EncodeRefsAnswer(*a))
                           : Reply(frame.request_id, a.status());
      asio::post(io_, [self, reply = std::move(reply)]() mutable { self->Send(std::move(reply)); });
    });
    return;
  }
  if (p.size() < 1 + core::ChunkId::kSize || (p[0] != kPut && p[0] != kGet && p[0] != kHas) ||
      (p[0] != kPut && p.size() != 1 + core::ChunkId::kSize)) {
    conn.Send(Reply(frame.request_id, core::Status::InvalidArgument("malformed chunk request")));
    return;
  }
  pool_.Submit([this, self, frame = std::move(frame)]() mutable {
    const Bytes& q = frame.payload;
    core::ChunkId id = *core::ChunkId::FromBytes(core::ByteSpan(q.data() + 1, core::ChunkId::kSize));
    Frame reply;
    if (q[0] == kPut) {
      core::ByteSpan data(q.data() + 1 + core::ChunkId::kSize, q.size() - 1 - core::ChunkId::kSize);
      core::Status s = store_.Put(id, data);
      if (s.ok()) s = store_.Sync();  // durable before we say so
      reply = Reply(frame.request_id, s);
    } else if (q[0] == kGet) {
      // Straight from the store's read buffer into the answer: one copy.
      core::Bytes scratch;
      core::Status s = store_.View(id, core::ChunkStore::ReadCheck::kChecksum,
                                   core::ChunkStore::ReadHint::kStreaming, &scratch,
                                   [&](core::ByteSpan chunk) {
                                     reply = Reply(frame.request_id, core::Status::Ok(), chunk);
                                     return core::Status::Ok();
                                   });
      if (!s.ok()) reply = Reply(frame.request_id, s);
    } else {
      core::Result<bool> has = store_.Has(id);
      std::uint8_t answer = has.ok() && *has ? 1 : 0;
      reply = Reply(frame.request_id, has.status(), core::ByteSpan(&answer, 1));
    }
    asio::post(io_, [self, reply = std::move(reply)]() mutable {
      if (!self->Send(std::move(reply))) {
        spdlog::warn("peer {}: chunk reply dropped (queue full or closed)", self->peer());
      }
    });
  });
}

std::vector<core::NodeId> MeshPeerNetwork::LiveMembers() {
  auto done = std::make_shared<std::promise<std::vector<core::NodeId>>>();
  auto fut = done->get_future();
  asio::post(io_, [this, done] {
    std::vector<core::NodeId> ids = {mesh_.self()};
    for (const PeerInfo& p : mesh_.Peers()) {
      if (p.alive) ids.push_back(p.id);
    }
    done->set_value(std::move(ids));
  });
  if (fut.wait_for(std::chrono::seconds(10)) != std::future_status::ready) return {mesh_.self()};
  return fut.get();
}

std::future<MeshPeerNetwork::Answer> MeshPeerNetwork::Start(const core::NodeId& peer,
                                                            Frame request,
                                                            std::chrono::milliseconds deadline) {
  auto done = std::make_shared<std::promise<Answer>>();
  auto fut = done->get_future();
  asio::post(io_, [this, peer, request = std::move(request), deadline, done]() mutable {
    std::shared_ptr<Connection> conn = mesh_.ConnectionTo(peer);
    if (!conn) {
      done->set_value({core::Status::Unavailable(fmt::format(
                           "no connection to node {}", peer.ToHex().substr(0, 8)))});
      return;
    }
    asio::co_spawn(
        io_,
        [conn, request = std::move(request), deadline, done]() mutable -> asio::awaitable<void> {
          auto r = co_await conn->Request(std::move(request), deadline);
          if (auto* ec = std::get_if<std::error_code>(&r)) {
            done->set_value({core::Status::Unavailable(fmt::format("peer {}: {}", conn->peer(),
                                                                   ec->message()))});
            co_return;
          }
          // The answer is taken apart on the caller's thread: the io thread
          // only hands the payload over (a chunk is megabytes).
          done->set_value(
              {core::Status::Ok(), std::move(std::get<Frame>(r).payload), conn->peer()});
        },
        [done](std::exception_ptr e) {
          if (e) {
            try {
              done->set_value({core::Status::Io("chunk request failed")});
            } catch (const std::future_error&) {
            }
          }
        });
  });
  return fut;
}

core::Status MeshPeerNetwork::Finish(std::future<Answer>& answer,
                                     std::chrono::milliseconds deadline, core::Bytes* reply) {
  // A little beyond the request's own deadline, for the trip through the io thread.
  if (answer.wait_for(deadline + std::chrono::seconds(1)) != std::future_status::ready) {
    return core::Status::Unavailable("chunk request: no answer by the deadline");
  }
  auto [status, payload, from] = answer.get();
  if (!status.ok()) return status;
  // The answer: the chunk or the error's message, then a status code byte.
  if (payload.empty()) return core::Status::Io("empty chunk response");
  auto code = static_cast<core::ErrorCode>(payload.back());
  payload.pop_back();
  if (code != core::ErrorCode::kOk) {
    return core::Status(code, fmt::format("peer {}: {}", from,
                                          std::string(payload.begin(), payload.end())));
  }
  if (reply) *reply = std::move(payload);
  return core::Status::Ok();
}

core::Status MeshPeerNetwork::Call(const core::NodeId& peer, Frame request,
                                   std::chrono::milliseconds deadline, core::Bytes* reply) {
  std::future<Answer> answer = Start(peer, std::move(request), deadline);
  return Finish(answer, deadline, reply);
}

namespace {

Frame PutFrame(const core::ChunkId& id, core::ByteSpan sealed) {
  Frame f;
  f.type = FrameType::kChunkRequest;
  f.payload.reserve(1 + core::ChunkId::kSize + sealed.size());
  f.payload.push_back(kPut);
  f.payload.insert(f.payload.end(), id.bytes().begin(), id.bytes().end());
  f.payload.insert(f.payload.end(), sealed.begin(), sealed.end());
  return f;
}

}  // namespace

core::Status MeshPeerNetwork::PutChunk(const core::NodeId& to, const core::ChunkId& id,
                                       core::ByteSpan sealed, std::chrono::milliseconds deadline) {
  return Call(to, PutFrame(id, sealed), deadline, nullptr);
}

std::vector<core::Status> MeshPeerNetwork::PutChunkToAll(const std::vector<core::NodeId>& to,
                                                         const core::ChunkId& id,
                                                         core::ByteSpan sealed,
                                                         std::chrono::milliseconds deadline) {
  std::vector<std::future<Answer>> answers;
  answers.reserve(to.size());
  for (const core::NodeId& n : to) answers.push_back(Start(n, PutFrame(id, sealed), deadline));
  std::vector<core::Status> out;
  out.reserve(to.size());
  for (std::future<Answer>& a : answers) out.push_back(Finish(a, deadline, nullptr));
  return out;
}

core::Status MeshPeerNetwork::GetChunk(const core::NodeId& from, const core::ChunkId& id,
                                       core::Bytes* sealed, std::chrono::milliseconds deadline) {
  Frame f;
  f.type = FrameType::kChunkRequest;
  f.payload.push_back(kGet);
  f.payload.insert(f.payload.end(), id.bytes().begin(), id.bytes().end());
  return Call(from, std::move(f), deadline, sealed);
}

core::Result<bool> MeshPeerNetwork::HasChunk(const core::NodeId& on, const core::ChunkId& id,
                                             std::chrono::milliseconds deadline) {
  Frame f;
  f.type = FrameType::kChunkRequest;
  f.payload.push_back(kHas);
  f.payload.insert(f.payload.end(), id.bytes().begin(), id.bytes().end());
  core::Bytes answer;
  DFS_RETURN_IF_ERROR(Call(on, std::move(f), deadline, &answer));
  if (answer.size() != 1) return core::Status::Io("malformed has answer");
  return answer[0] == 1;
}

std::vector<core::NodeId> MeshPeerNetwork::LivePeers() {
  std::vector<core::NodeId> ids = LiveMembers();
  std::erase(ids, mesh_.self());
  return ids;
}

core::Result<core::RefsAnswer> MeshPeerNetwork::AskRefs(const core::NodeId& peer,
                                                        const core::KeyCheck& volume,
                                                        const core::VersionVector& mine,
                                                        const std::vector<core::ChunkId>& ids) {
  Frame f;
  f.type = FrameType::kChunkRequest;
  f.payload = EncodeRefsQuery({volume, ids, mine});
  core::Bytes answer;
  DFS_RETURN_IF_ERROR(Call(peer, std::move(f), std::chrono::seconds(30), &answer));
  return DecodeRefsAnswer(answer, ids.size());
}

}  // namespace dfs::net
