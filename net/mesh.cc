#include "net/mesh.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace dfs::net {
namespace {

constexpr std::uint8_t kAnnounce = 1;

std::string RemoteIp(const Connection& c) {
  const std::string& p = c.peer();
  std::size_t colon = p.rfind(':');
  return colon == std::string::npos ? p : p.substr(0, colon);
}

bool SplitHostPort(const std::string& s, std::string* host, std::uint16_t* port) {
  std::size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= s.size()) return false;
  unsigned long v = 0;
  for (std::size_t i = colon + 1; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + static_cast<unsigned long>(s[i] - '0');
    if (v > 65535) return false;
  }
  if (v == 0) return false;
  *host = s.substr(0, colon);
  *port = static_cast<std::uint16_t>(v);
  return true;
}

}  // namespace

Mesh::Mesh(asio::io_context& io, core::NodeId self, const NetworkKey& key, MeshOptions options)
    : io_(io), self_(self), key_(key), options_(options) {}

Mesh::~Mesh() { Stop(); }

std::error_code Mesh::Listen(const tcp::endpoint& endpoint) {
  boost::system::error_code ec;
  auto acceptor = std::make_unique<tcp::acceptor>(io_);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return ec;
  listen_port_ = acceptor->local_endpoint().port();
  acceptor_ = std::move(acceptor);
  Accept();
  return {};
}

void Mesh::Accept() {
  acceptor_->async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (stopped_ || ec == asio::error::operation_aborted) return;
    if (!ec) {
      // Forget closed ones so the list stays bounded.
      std::erase_if(accepted_, [](const auto& a) { return a->closed(); });
      std::size_t pending = std::count_if(accepted_.begin(), accepted_.end(),
                                          [](const auto& a) { return !a->established(); });
      if (pending >= options_.max_pending_handshakes) {
        spdlog::warn("refusing a connection: {} handshakes already pending", pending);
        boost::system::error_code ignored;
        socket.close(ignored);
      } else {
        auto c = Connection::Create(std::move(socket), key_, Role::kResponder,
                                    options_.dialer.connection);
        Attach(c);
        accepted_.push_back(c);
        c->Start();
      }
    }
    Accept();
  });
}

void Mesh::AddPeer(const std::string& host, std::uint16_t port) {
  if (stopped_) return;
  std::string address = host + ":" + std::to_string(port);
  if (dialers_.count(address) > 0 || self_addresses_.count(address) > 0) return;
  auto dialer = Dialer::Create(io_, host, port, key_, options_.dialer,
                               [this, address](const std::shared_ptr<Connection>& c) {
                                 dialed_[c.get()] = address;
                                 Attach(c);
                               });
  dialers_[address] = dialer;
  dialer->Start();
}

void Mesh::Attach(const std::shared_ptr<Connection>& c) {
  c->OnEstablished([this](Connection& conn) { SendAnnounce(conn); });
  c->OnFrame([this](Connection& conn, Frame f) {
    if (f.type == FrameType::kGossip) {
      OnAnnounce(conn, f);
      return;
    }
    auto it = identified_.find(&conn);
    if (it == identified_.end()) return;  // app frames only after the announce
    auto h = handlers_.find(f.type);
    if (h != handlers_.end()) h->second(it->second, conn, std::move(f));
  });
  c->OnClose([this](Connection& conn, std::error_code) {
    auto it = identified_.find(&conn);
    if (it != identified_.end()) {
      auto p = peers_.find(it->second);
      if (p != peers_.end()) p->second.info.last_seen = std::chrono::system_clock::now();
      identified_.erase(it);
    }
    dialed_.erase(&conn);
  });
}

void Mesh::SendAnnounce(Connection& c) {
  Frame f;
  f.type = FrameType::kGossip;
  Bytes& p = f.payload;
  p.push_back(kAnnounce);
  p.insert(p.end(), self_.bytes().begin(), self_.bytes().end());
  p.push_back(static_cast<std::uint8_t>(listen_port_));
  p.push_back(static_cast<std::uint8_t>(listen_port_ >> 8));
  std::vector<std::string> known;
  for (const auto& [id, peer] : peers_) {
    if (!peer.info.address.empty() && LiveConnection(peer)) known.push_back(peer.info.address);
    if (known.size() >= options_.max_peers_announced) break;
  }
  p.push_back(static_cast<std::uint8_t>(known.size()));
  for (const std::string& a : known) {
    p.push_back(static_cast<std::uint8_t>(a.size()));
    p.insert(p.end(), a.begin(), a.end());
  }
  c.Send(std::move(f));
}

void Mesh::OnAnnounce(Connection& c, const Frame& f) {
  const Bytes& p = f.payload;
  auto malformed = [&] {
    spdlog::warn("peer {}: malformed announce; closing", c.peer());
    c.Close(make_error_code(NetError::kHandshakeFailed));
  };
  if (p.size() < 1 + core::NodeId::kSize + 3 || p[0] != kAnnounce) return malformed();
  core::NodeId id = *core::NodeId::FromBytes(ByteSpan(p.data() + 1, core::NodeId::kSize));
  std::size_t off = 1 + core::NodeId::kSize;
  std::uint16_t port = static_cast<std::uint16_t>(p[off] | p[off + 1] << 8);
  off += 2;
  std::size_t count = p[off++];
  std::vector<std::string> addresses;
  for (std::size_t i = 0; i < count; ++i) {
    if (off >= p.size()) return malformed();
    std::size_t len = p[off++];
    if (off + len > p.size()) return malformed();
    addresses.emplace_back(reinterpret_cast<const char*>(p.data() + off), len);
    off += len;
  }
  if (off != p.size()) return malformed();

  auto dialed = dialed_.find(&c);
  if (id == self_) {
    // We dialed ourselves (an address that is us): never again.
    if (dialed != dialed_.end()) {
      self_addresses_.insert(dialed->second);
      auto d = dialers_.find(dialed->second);
      if (d != dialers_.end()) {
        d->second->Stop();
        dialers_.erase(d);
      }
    }
    c.Close(std::make_error_code(std::errc::connection_refused));
    return;
  }
  bool is_new = peers_.count(id) == 0;
  Peer& peer = peers_[id];
  peer.info.id = id;
  if (dialed != dialed_.end()) {
    peer.info.address = dialed->second;
  } else if (peer.info.address.empty() && port != 0) {
    peer.info.address = RemoteIp(c) + ":" + std::to_string(port);
  }
  peer.info.last_seen = std::chrono::system_clock::now();
  std::erase_if(peer.connections, [](const auto& w) { return w.expired(); });
  for (const auto& conn : accepted_) {
    if (conn.get() == &c) peer.connections.push_back(conn);
  }
  for (const auto& [address, dialer] : dialers_) {
    if (dialer->current().get() == &c) peer.connections.push_back(dialer->current());
  }
  bool first_announce = identified_.count(&c) == 0;
  identified_[&c] = id;

  // Peer exchange: dial members we have not met.
  for (const std::string& a : addresses) {
    std::string host;
    std::uint16_t a_port;
    if (!SplitHostPort(a, &host, &a_port)) continue;
    bool known_alive = false;
    for (const auto& [pid, other] : peers_) {
      if (other.info.address == a && LiveConnection(other)) known_alive = true;
    }
    if (!known_alive) AddPeer(host, a_port);
  }
  if (first_announce) {
    for (const PeerUpHandler& h : peer_up_) h(id, c);
  }
  if (is_new) {
    spdlog::info("peer {} ({}) joined", peer.info.address, id.ToHex().substr(0, 8));
    // Tell everyone else about the newcomer.
    for (auto& [pid, other] : peers_) {
      if (pid == id) continue;
      if (auto live = LiveConnection(other)) SendAnnounce(*live);
    }
  }
}

std::shared_ptr<Connection> Mesh::LiveConnection(const Peer& p) const {
  for (const auto& w : p.connections) {
    if (auto c = w.lock(); c && c->established() && !c->closed()) return c;
  }
  return nullptr;
}

std::shared_ptr<Connection> Mesh::ConnectionTo(const core::NodeId& node) const {
  auto it = peers_.find(node);
  return it == peers_.end() ? nullptr : LiveConnection(it->second);
}

std::size_t Mesh::Broadcast(const Frame& frame) {
  std::size_t sent = 0;
  for (auto& [id, peer] : peers_) {
    if (auto c = LiveConnection(peer); c && c->Send(frame)) ++sent;
  }
  return sent;
}

std::vector<PeerInfo> Mesh::Peers() const {
  std::vector<PeerInfo> out;
  for (const auto& [id, peer] : peers_) {
    PeerInfo info = peer.info;
    info.alive = LiveConnection(peer) != nullptr;
    if (info.alive) info.last_seen = std::chrono::system_clock::now();
    out.push_back(info);
  }
  std::sort(out.begin(), out.end(),
            [](const PeerInfo& a, const PeerInfo& b) { return a.address < b.address; });
  return out;
}

void Mesh::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (acceptor_) {
    boost::system::error_code ignored;
    acceptor_->close(ignored);
  }
  for (auto& [address, d] : dialers_) d->Stop();
  for (auto& c : accepted_) c->Close(std::make_error_code(std::errc::operation_canceled));
}

}  // namespace dfs::net
