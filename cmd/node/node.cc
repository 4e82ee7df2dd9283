#include "cmd/node/node.h"

#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <fstream>

#include <fmt/chrono.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace dfs::node {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

namespace {

std::string Iso(std::chrono::system_clock::time_point t) {
  if (t.time_since_epoch().count() == 0) return "";
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::chrono::system_clock::to_time_t(t)));
}

}  // namespace

Node::Node(asio::io_context& io, NodeConfig config) : io_(io), config_(std::move(config)) {}

Node::~Node() { Stop(); }

core::Status Node::Start() {
  std::error_code ec;
  if (!std::filesystem::exists(config_.data_dir, ec)) {
    std::filesystem::create_directories(config_.data_dir, ec);
    if (ec) return core::ErrnoStatus(ec.value(), "create " + config_.data_dir.string());
    ::chmod(config_.data_dir.c_str(), 0700);
  }
  DFS_ASSIGN_OR_RETURN(id_, core::LoadOrCreateNodeId((config_.data_dir / "node-id").string()));
  DFS_ASSIGN_OR_RETURN(store_, core::DiskChunkStore::Open(config_.data_dir / "chunks"));

  mesh_ = std::make_unique<net::Mesh>(io_, id_, config_.network_key, net::MeshOptions{});
  boost::system::error_code bec;
  auto address = asio::ip::make_address(config_.listen_host, bec);
  if (bec) return core::Status::InvalidArgument("bad --listen address: " + config_.listen_host);
  if (auto lec = mesh_->Listen(net::tcp::endpoint(address, config_.listen_port))) {
    return core::Status::Unavailable(fmt::format("cannot listen on {}:{}: {}", config_.listen_host,
                                                 config_.listen_port, lec.message()));
  }
  if (!config_.has_volume_key) {
    chunk_server_ = std::make_unique<net::ChunkServer>(io_, *mesh_, *store_);
  }
  for (const auto& [host, port] : config_.peers) mesh_->AddPeer(host, port);

  control_path_ = config_.data_dir / "control.sock";
  ::unlink(control_path_.c_str());  // a stale socket from a crashed node
  control_ = std::make_unique<local::acceptor>(io_);
  control_->open(local(), bec);
  if (!bec) control_->bind(local::endpoint(control_path_.string()), bec);
  if (!bec) control_->listen(16, bec);
  if (bec) return core::Status::Io(fmt::format("control socket {}: {}", control_path_.string(), bec.message()));
  ::chmod(control_path_.c_str(), 0600);
  AcceptControl();
  spdlog::info("node {} listening on {}:{} ({} peer(s) given{})", id_.ToHex().substr(0, 8),
               config_.listen_host, mesh_->listen_port(), config_.peers.size(),
               config_.has_volume_key ? "" : ", keyless storage peer");
  return core::Status::Ok();
}

void Node::Stop() {
  if (mesh_) mesh_->Stop();
  if (control_) {
    boost::system::error_code ignored;
    control_->close(ignored);
    control_.reset();
    ::unlink(control_path_.c_str());
  }
}

void Node::AcceptControl() {
  control_->async_accept([this](boost::system::error_code ec, local::socket socket) {
    if (ec) return;  // closed
    // One short request line, one JSON answer. Requests are tiny and local,
    // so a bounded synchronous read with a small limit is enough.
    auto sock = std::make_shared<local::socket>(std::move(socket));
    auto buf = std::make_shared<asio::streambuf>(256);
    asio::async_read_until(*sock, *buf, '\n',
                           [this, sock, buf](boost::system::error_code rec, std::size_t) {
                             if (rec) return;
                             std::istream in(buf.get());
                             std::string cmd;
                             std::getline(in, cmd);
                             std::string out;
                             if (cmd == "status") {
                               out = StatusJson();
                             } else if (cmd == "peers") {
                               out = PeersJson();
                             } else {
                               out = nlohmann::json{{"error", "unknown request"}}.dump();
                             }
                             out += "\n";
                             auto data = std::make_shared<std::string>(std::move(out));
                             asio::async_write(*sock, asio::buffer(*data),
                                               [sock, data](boost::system::error_code, std::size_t) {});
                           });
    AcceptControl();
  });
}

std::string Node::PeersJson() {
  nlohmann::json peers = nlohmann::json::array();
  for (const net::PeerInfo& p : mesh_->Peers()) {
    peers.push_back({{"address", p.address},
                     {"id", p.id.ToHex()},
                     {"alive", p.alive},
                     {"last_seen", Iso(p.last_seen)}});
  }
  return peers.dump(2);
}

std::string Node::StatusJson() {
  nlohmann::json j;
  j["node"] = id_.ToHex();
  j["listen"] = fmt::format("{}:{}", config_.listen_host, mesh_->listen_port());
  j["data"] = config_.data_dir.string();
  j["keyless"] = !config_.has_volume_key;
  j["replicas"] = config_.replicas;
  j["peers"] = nlohmann::json::parse(PeersJson());
  auto usage = store_->Usage();
  if (usage.ok()) {
    j["chunks"] = usage->chunks;
    j["bytes"] = usage->bytes;
  }
  return j.dump(2);
}

}  // namespace dfs::node
