// Mesh: this node's view of the network. It accepts connections, keeps a
// Dialer per known peer address, learns who is at the other end of each
// connection, and spreads what it knows (peer exchange), so that a node
// given one --peer comes to know, and connect to, every member.
//
// After a handshake each side sends a Gossip "announce": its node id, the
// port it listens on, and the addresses of the members it knows. Addresses
// it has not seen are dialed. A connection to itself is closed and its
// dialer stopped. When both sides of a pair dial each other, both
// connections may stay up; the peer table has one row per node id and
// broadcasts use one connection per node.
//
// Threading: one io_context thread; every method must run on it.
#pragma once

#include <utility>  // before Asio, for GCC 12

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/node_id.h"
#include "net/connection.h"
#include "net/dialer.h"

namespace dfs::net {

struct MeshOptions {
  DialerOptions dialer;
  std::size_t max_peers_announced = 64;  // addresses per announce
  // Accepted connections still in their handshake; more are refused at
  // once, so strangers cost bounded memory however many connect.
  std::size_t max_pending_handshakes = 64;
};

struct PeerInfo {
  core::NodeId id;
  std::string address;  // host:port it listens on
  bool alive = false;   // an established connection right now
  std::chrono::system_clock::time_point last_seen{};
};

class Mesh {
 public:
  // App frames (any type the mesh does not consume) from a known peer.
  using FrameHandler = std::function<void(const core::NodeId& from, Connection&, Frame)>;
  // A connection to a member became usable (its announce arrived): once per
  // connection, so again after every reconnect.
  using PeerUpHandler = std::function<void(const core::NodeId& peer, Connection&)>;

  Mesh(asio::io_context& io, core::NodeId self, const NetworkKey& key, MeshOptions options);
  ~Mesh();

  // Listens on `endpoint` (port 0 picks one). Errors: the bind failure.
  std::error_code Listen(const tcp::endpoint& endpoint);
  std::uint16_t listen_port() const { return listen_port_; }

  // Dials host:port and keeps the connection alive. Idempotent per address.
  void AddPeer(const std::string& host, std::uint16_t port);

  // The handler for app frames of `type` (one per type; frames of a type
  // without one are dropped).
  void Handle(FrameType type, FrameHandler h) { handlers_[type] = std::move(h); }
  void OnPeerUp(PeerUpHandler h) { peer_up_.push_back(std::move(h)); }

  // Sends `frame` to every live peer; returns how many it was queued for.
  std::size_t Broadcast(const Frame& frame);

  // A live connection to `node`, if there is one.
  std::shared_ptr<Connection> ConnectionTo(const core::NodeId& node) const;

  // One row per node id ever announced, sorted by address.
  std::vector<PeerInfo> Peers() const;
  const core::NodeId& self() const { return self_; }

  void Stop();

 private:
  struct Peer {
    PeerInfo info;
    std::vector<std::weak_ptr<Connection>> connections;
  };

  void Accept();
  void Attach(const std::shared_ptr<Connection>& c);
  void SendAnnounce(Connection& c);
  void OnAnnounce(Connection& c, const Frame& f);
  std::shared_ptr<Connection> LiveConnection(const Peer& p) const;

  asio::io_context& io_;
  core::NodeId self_;
  NetworkKey key_;
  MeshOptions options_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::uint16_t listen_port_ = 0;
  std::map<std::string, std::shared_ptr<Dialer>> dialers_;  // by "host:port"
  std::map<core::NodeId, Peer> peers_;
  std::map<Connection*, core::NodeId> identified_;
  std::map<Connection*, std::string> dialed_;  // connections we dialed -> address
  std::set<std::string> self_addresses_;       // addresses that turned out to be us
  std::vector<std::shared_ptr<Connection>> accepted_;
  std::map<FrameType, FrameHandler> handlers_;
  std::vector<PeerUpHandler> peer_up_;
  bool stopped_ = false;
};

}  // namespace dfs::net
