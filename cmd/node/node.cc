#include "cmd/node/node.h"

#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <future>
#include <map>
#include <set>

#include <fmt/chrono.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cmd/node/control_server.h"
#include "core/volume_crypto.h"

namespace dfs::node {

namespace asio = boost::asio;

namespace {

std::string Iso(std::chrono::system_clock::time_point t) {
  if (t.time_since_epoch().count() == 0) return "";
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::chrono::system_clock::to_time_t(t)));
}

}  // namespace

Node::Node(NodeConfig config) : config_(std::move(config)) {}

Node::~Node() { Stop(); }

template <typename Fn>
auto Node::OnIo(Fn fn) -> decltype(fn()) {
  using R = decltype(fn());
  auto done = std::make_shared<std::promise<R>>();
  std::future<R> fut = done->get_future();
  asio::post(io_, [fn = std::move(fn), done]() mutable { done->set_value(fn()); });
  if (fut.wait_for(std::chrono::seconds(10)) != std::future_status::ready) return R();
  return fut.get();
}

core::Status Node::OpenStores() {
  const std::filesystem::path& dir = config_.data_dir;
  if (!config_.volume_key.has_value()) {
    DFS_ASSIGN_OR_RETURN(keyless_store_, core::DiskChunkStore::Open(dir / "chunks"));
    DFS_ASSIGN_OR_RETURN(op_store_, core::OpStore::Open(dir / "ops.db"));
    local_store_ = keyless_store_.get();
    return core::Status::Ok();
  }
  core::FileServerOptions options;
  options.node_id = id_;
  options.lock_timeout = std::chrono::milliseconds(2000);
  // Workers wait on peers as much as they compute: more of them, more
  // chunks in flight (memory: about 2 x depth x chunk size per transfer).
  options.workers = 6;
  options.pipeline_depth = 6;
  // Peers push chunks here before the op that references them arrives.
  options.sweep_orphans = false;
  options.metrics = &metrics_;
  auto crypto = std::make_shared<core::VolumeCrypto>(*config_.volume_key);
  verify_ = [crypto](const core::ChunkId& id, core::ByteSpan sealed) {
    core::Bytes plain;
    return crypto->Unseal(id, sealed, &plain);
  };
  core::ReplicationOptions replication;
  replication.replicas = static_cast<std::size_t>(config_.replicas);
  // Sequential reads gain nothing from a large cache of fetched chunks.
  replication.cache_bytes = 16 << 20;
  options.wrap_store = [this, replication](std::unique_ptr<core::ChunkStore> local) {
    auto store = std::make_unique<core::ReplicatedChunkStore>(std::move(local), *network_,
                                                              replication, verify_);
    replicated_ = store.get();
    return std::unique_ptr<core::ChunkStore>(std::move(store));
  };
  DFS_ASSIGN_OR_RETURN(files_, core::FileServer::Open(dir, *config_.volume_key, std::move(options)));
  local_store_ = &replicated_->local();
  op_log_ = std::make_unique<core::VolumeOpLog>(*files_);
  return core::Status::Ok();
}

core::Status Node::Start() {
  std::error_code ec;
  if (!std::filesystem::exists(config_.data_dir, ec)) {
    std::filesystem::create_directories(config_.data_dir, ec);
    if (ec) return core::ErrnoStatus(ec.value(), "create " + config_.data_dir.string());
    ::chmod(config_.data_dir.c_str(), 0700);
  }
  std::filesystem::path id_file = config_.data_dir / "node-id";
  std::filesystem::path log_file = config_.data_dir / (config_.volume_key ? "index.db" : "ops.db");
  if (!std::filesystem::exists(log_file, ec) && std::filesystem::exists(id_file, ec)) {
    // A node id names a log: a fresh log under an old id would reuse
    // sequence numbers that peers already hold for other ops.
    spdlog::warn("{} is new: this node takes a new node id", log_file.string());
    std::filesystem::remove(id_file, ec);
  }
  DFS_ASSIGN_OR_RETURN(id_, core::LoadOrCreateNodeId(id_file.string()));

  mesh_ = std::make_unique<net::Mesh>(io_, id_, config_.network_key, net::MeshOptions{});
  network_ = std::make_unique<net::MeshPeerNetwork>(io_, *mesh_);
  DFS_RETURN_IF_ERROR(OpenStores());

  boost::system::error_code bec;
  auto address = asio::ip::make_address(config_.listen_host, bec);
  if (bec) return core::Status::InvalidArgument("bad --listen address: " + config_.listen_host);
  if (auto lec = mesh_->Listen(net::tcp::endpoint(address, config_.listen_port))) {
    return core::Status::Unavailable(fmt::format("cannot listen on {}:{}: {}", config_.listen_host,
                                                 config_.listen_port, lec.message()));
  }
  listen_port_ = mesh_->listen_port();
  core::OpReplica& replica = Replica();
  // Peers' chunk collectors ask which chunks a file of our volume needs.
  chunk_server_ = std::make_unique<net::ChunkServer>(
      io_, *mesh_, *local_store_, [this, &replica](const net::RefsQuery& q) {
        return core::AnswerRefs(replica, files_.get(), q.volume, q.vector, q.ids);
      });
  net::OpSyncOptions sync_options;
  sync_options.pull_interval = config_.pull_interval;
  op_sync_ = std::make_unique<net::OpSync>(io_, *mesh_, replica, sync_options);
  if (files_) {
    files_->SetOpListener([this](const core::Op& op, bool local) {
      if (local) {
        op_sync_->Publish(op_log_->SealLocal(op));
        return;
      }
      std::lock_guard lock(observer_mu_);
      if (remote_observer_) remote_observer_(op);
    });
  }
  op_sync_->Start();
  for (const auto& [host, port] : config_.peers) mesh_->AddPeer(host, port);

  ControlHandlers handlers;
  handlers.files = files_.get();
  handlers.status_json = [this] { return StatusJson(); };
  handlers.peers_json = [this] { return PeersJson(); };
  handlers.scrub = [this](const std::function<void(std::uint64_t, std::uint64_t)>& progress) {
    return Scrub(progress);
  };
  handlers.repair = [this](const std::function<void(std::uint64_t)>& progress) {
    return RepairNow(progress);
  };
  handlers.gc = [this](std::optional<std::int64_t> grace_s,
                       const std::function<void(std::uint64_t)>& progress) {
    std::optional<std::chrono::seconds> grace;
    if (grace_s) grace = std::chrono::seconds(*grace_s);
    return GcNow(grace, progress);
  };
  handlers.after_change = [this] { WaitOpsAcked(std::chrono::seconds(2)); };
  DFS_ASSIGN_OR_RETURN(control_,
                       ControlServer::Start(config_.data_dir / "control.sock", std::move(handlers)));

  io_thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(io_);
    io_.run();
  });
  repair_thread_ = std::thread([this] { RepairLoop(); });
  gc_thread_ = std::thread([this] { GcLoop(); });
  spdlog::info("node {} listening on {}:{} ({} peer(s) given{})", id_.ToHex().substr(0, 8),
               config_.listen_host, listen_port_, config_.peers.size(),
               files_ ? "" : ", keyless storage peer");
  return StartMetrics();
}

core::Status Node::StartMetrics() {
  core::MetricsRegistry& m = metrics_;
  auto usage = [this](bool bytes) {
    auto u = local_store_->Usage();
    if (!u.ok()) return 0.0;
    return static_cast<double>(bytes ? u->bytes : u->chunks);
  };
  m.AddGaugeFn("dfs_store_chunks", "Chunks held in this node's local store.",
               [usage] { return usage(false); });
  m.AddGaugeFn("dfs_store_bytes", "Bytes of the chunks held in this node's local store.",
               [usage] { return usage(true); });
  auto peers = [this](bool alive_only) {
    double n = 0;
    for (const net::PeerInfo& p : OnIo([this] { return mesh_->Peers(); })) n += !alive_only || p.alive;
    return n;
  };
  m.AddGaugeFn("dfs_peers_known", "Members of the mesh this node has heard of.",
               [peers] { return peers(false); });
  m.AddGaugeFn("dfs_peers_alive", "Members with an established connection right now.",
               [peers] { return peers(true); });
  m.AddCounterFn("dfs_ops_received_total", "Ops from peers accepted by op sync.",
                 [this] { return static_cast<double>(op_sync_->accepted()); });
  if (replicated_ != nullptr) {
    m.AddGaugeFn("dfs_fetch_cache_bytes", "Bytes of chunks fetched from peers kept in memory.",
                 [this] { return static_cast<double>(replicated_->cached_bytes()); });
  }
  m.AddGaugeFn("dfs_replicas", "Copies of every chunk the node aims for (--replicas).",
               [this] { return static_cast<double>(config_.replicas); });
  auto repair = [this](auto field) {
    return [this, field] { return static_cast<double>(field(repair_state())); };
  };
  auto seconds = [](std::chrono::system_clock::time_point t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
  };
  m.AddGaugeFn("dfs_under_replicated_chunks",
               "Chunks that lacked a copy at the last repair pass and could not all be fixed "
               "(as dfs status).",
               repair([](const RepairState& r) { return r.last.failed > 0 ? r.last.under_replicated : 0; }));
  m.AddGaugeFn("dfs_repair_running", "1 while a repair pass runs.",
               repair([](const RepairState& r) { return r.running; }));
  m.AddGaugeFn("dfs_repair_progress_chunks", "Chunks the running (or last) repair pass has checked.",
               [this] { return static_cast<double>(repair_progress_.load()); });
  m.AddCounterFn("dfs_repair_passes_total", "Repair passes finished.",
                 repair([](const RepairState& r) { return r.passes; }));
  m.AddGaugeFn("dfs_repair_last_checked_chunks", "Local chunks the last repair pass checked.",
               repair([](const RepairState& r) { return r.last.checked; }));
  m.AddGaugeFn("dfs_repair_last_under_replicated_chunks",
               "Chunks that lacked a copy on a holder at the last repair pass.",
               repair([](const RepairState& r) { return r.last.under_replicated; }));
  m.AddGaugeFn("dfs_repair_last_copies_made", "Copies the last repair pass sent to holders.",
               repair([](const RepairState& r) { return r.last.copies_made; }));
  m.AddGaugeFn("dfs_repair_last_copies_failed",
               "Copies the last repair pass could not make (retried on the next).",
               repair([](const RepairState& r) { return r.last.failed; }));
  auto gc = [this](auto field) {
    return [this, field] { return static_cast<double>(field(gc_state())); };
  };
  m.AddCounterFn("dfs_gc_passes_total", "Chunk collection passes finished (dfs gc, --gc-interval).",
                 gc([](const GcState& g) { return g.passes; }));
  m.AddGaugeFn("dfs_gc_last_removed_chunks", "Chunks the last collection pass removed.",
               gc([](const GcState& g) { return g.last.removed; }));
  m.AddGaugeFn("dfs_gc_last_removed_bytes", "Bytes the last collection pass removed.",
               gc([](const GcState& g) { return g.last.removed_bytes; }));
  m.AddGaugeFn("dfs_gc_last_unanswered_chunks",
               "Chunks the last collection pass kept because no current node with their "
               "volume's key answered for them.",
               gc([](const GcState& g) { return g.last.unanswered; }));
  m.AddGaugeFn("dfs_repair_last_started_timestamp_seconds",
               "When the last repair pass started (unix time; 0: none yet).",
               repair([seconds](const RepairState& r) { return seconds(r.started); }));
  m.AddGaugeFn("dfs_repair_last_finished_timestamp_seconds",
               "When the last repair pass finished (unix time; 0: none yet).",
               repair([seconds](const RepairState& r) { return seconds(r.finished); }));
  core::AddProcessMetrics(m);
  if (!config_.metrics_address) return core::Status::Ok();
  const auto& [host, port] = *config_.metrics_address;
  DFS_ASSIGN_OR_RETURN(metrics_http_,
                       net::MetricsHttpServer::Start(host, port, [this] { return metrics_.Render(); }));
  spdlog::info("metrics on http://{}:{}/metrics", host, metrics_http_->port());
  return core::Status::Ok();
}

void Node::Stop() {
  if (stopped_) return;
  stopped_ = true;
  // What is committed goes out while the network still runs.
  if (files_) (void)files_->Flush();
  // A scrub or repair pass in progress stops early; other requests in
  // progress finish (or fail) while the network still runs.
  stopping_ = true;
  repair_cv_.notify_all();
  {
    std::lock_guard lock(gc_mu_);  // the loop checks stopping_ under it
  }
  gc_cv_.notify_all();
  control_.reset();
  metrics_http_.reset();  // its callbacks read what follows (and the network thread)
  if (repair_thread_.joinable()) repair_thread_.join();
  if (gc_thread_.joinable()) gc_thread_.join();
  if (io_thread_.joinable()) {
    asio::post(io_, [this] {
      if (op_sync_) op_sync_->Stop();
      if (mesh_) mesh_->Stop();
    });
    // Let the stops run, then end the loop.
    asio::post(io_, [this] { io_.stop(); });
    io_thread_.join();
  }
  // Ops committed from here on are published by no one; they are durable
  // (the FileServer flushes as it closes) and peers pull them later.
  if (files_) files_->SetOpListener(nullptr);
  chunk_server_.reset();  // joins its workers
  op_sync_.reset();
  op_log_.reset();
  files_.reset();  // records a clean shutdown
  keyless_store_.reset();
  op_store_.reset();
  network_.reset();
  mesh_.reset();
}

void Node::RepairLoop() {
  using Clock = std::chrono::steady_clock;
  std::set<core::NodeId> last_pass;  // the members the last pass placed copies on
  std::map<core::NodeId, Clock::time_point> missing_since;
  bool first = true;
  Clock::time_point stable_since = Clock::now();
  Clock::time_point last_run = Clock::now();
  std::set<core::NodeId> previous;
  std::unique_lock lock(repair_mu_);
  while (!stopping_) {
    repair_cv_.wait_for(lock, config_.repair_check, [this] { return stopping_.load(); });
    if (stopping_) break;
    lock.unlock();
    std::vector<core::NodeId> members = network_->LiveMembers();
    std::set<core::NodeId> live(members.begin(), members.end());
    Clock::time_point now = Clock::now();
    if (live != previous) stable_since = now;
    previous = live;
    for (const core::NodeId& n : last_pass) {
      if (live.count(n) == 0) missing_since.try_emplace(n, now);
    }
    std::erase_if(missing_since, [&](const auto& e) { return live.count(e.first) > 0; });
    bool joined = false, gone = false;
    for (const core::NodeId& n : live) joined |= last_pass.count(n) == 0;
    for (const auto& [n, since] : missing_since) gone |= now - since >= config_.dead_time;
    // A first pass once membership has settled (copies a node could not
    // place while alone); then whenever a member joins or is gone for good.
    bool settled = now - stable_since >= std::chrono::seconds(2);
    // And every repair_interval whatever happened: a copy a holder lost
    // (a disk error, a removal by hand) comes back without a change of members.
    bool due = config_.repair_interval.count() > 0 && now - last_run >= config_.repair_interval;
    if (settled && (first || (joined && live.size() > 1) || gone || due)) {
      first = false;
      last_run = now;
      core::RepairStats stats = RunRepairPass({});
      // Members that failed copies are tried again on the next change.
      if (stats.failed == 0) {
        last_pass = live;
        missing_since.clear();
      }
    }
    lock.lock();
  }
}

core::RepairStats Node::RunRepairPass(const std::function<void(std::uint64_t)>& progress) {
  std::lock_guard one_at_a_time(repair_pass_mu_);
  {
    std::lock_guard state(repair_mu_);
    repair_.running = true;
    repair_.started = std::chrono::system_clock::now();
  }
  repair_progress_ = 0;
  core::RepairStats stats = core::RepairPass(
      *local_store_, *network_, static_cast<std::size_t>(config_.replicas), std::chrono::seconds(10),
      stopping_, [&](std::uint64_t checked) {
        repair_progress_ = checked;
        if (progress) progress(checked);
      });
  if (stats.copies_made > 0 || stats.failed > 0) {
    spdlog::info("repair: {} chunks checked, {} lacked copies, {} copies made, {} failed",
                 stats.checked, stats.under_replicated, stats.copies_made, stats.failed);
  }
  std::lock_guard state(repair_mu_);
  repair_.running = false;
  ++repair_.passes;
  repair_.last = stats;
  repair_.finished = std::chrono::system_clock::now();
  return stats;
}

std::string Node::RepairNow(const std::function<void(std::uint64_t)>& progress) {
  (void)RunRepairPass(progress);
  return RepairJson(repair_state()).dump(2);
}

nlohmann::json Node::RepairJson(const RepairState& r) {
  nlohmann::json holders = nlohmann::json::array();
  if (!r.last.holders.empty()) {
    std::vector<net::PeerInfo> peers = OnIo([this] { return mesh_->Peers(); });
    for (const auto& [id, where] : r.last.holders) {
      std::string address;
      for (const net::PeerInfo& p : peers) {
        if (p.id == id) address = p.address;
      }
      holders.push_back({{"node", id.ToHex()},
                         {"address", address},
                         {"lacked", where.lacked},
                         {"copied", where.copied},
                         {"failed", where.failed}});
    }
  }
  return {{"running", r.running},
          {"passes", r.passes},
          {"last_checked", r.last.checked},
          {"last_under_replicated", r.last.under_replicated},
          {"last_copies_made", r.last.copies_made},
          {"last_failed", r.last.failed},
          {"last_finished", Iso(r.finished)},
          {"holders", std::move(holders)}};
}

void Node::WaitOpsAcked(std::chrono::milliseconds limit) {
  if (!files_) return;
  const std::uint64_t target = files_->DurableSeq();  // our last durable op
  if (target == 0) return;
  const auto until = std::chrono::steady_clock::now() + limit;
  std::vector<core::NodeId> waiting;
  while (!stopping_) {
    waiting.clear();
    std::vector<core::NodeId> live = network_->LivePeers();
    {
      std::lock_guard lock(lagging_mu_);
      for (const core::NodeId& peer : live) {
        if (op_sync_->Refuses(peer) || op_sync_->Acked(peer) >= target) {
          lagging_.erase(peer);  // caught up: waited for again
        } else if (lagging_.count(peer) == 0) {
          waiting.push_back(peer);
        }
      }
    }
    if (waiting.empty()) return;
    if (std::chrono::steady_clock::now() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // A peer that is behind (busy with a backlog, a slow disk) would make every
  // change wait the whole limit: it is not waited for until it has caught up.
  std::lock_guard lock(lagging_mu_);
  for (const core::NodeId& peer : waiting) {
    lagging_.insert(peer);
    spdlog::info("node {} has not acknowledged op {} within {} ms: it pulls it later, and "
                 "changes do not wait for it until it has caught up",
                 peer.ToHex().substr(0, 8), target, limit.count());
  }
}

void Node::GcLoop() {
  if (config_.gc_interval.count() <= 0) return;  // on demand only
  std::unique_lock lock(gc_mu_);
  while (!stopping_) {
    gc_cv_.wait_for(lock, config_.gc_interval, [this] { return stopping_.load(); });
    if (stopping_) break;
    lock.unlock();
    RunGcPass(config_.gc_grace, {});
    lock.lock();
  }
}

void Node::RunGcPass(std::chrono::seconds grace,
                     const std::function<void(std::uint64_t)>& progress) {
  std::lock_guard one_at_a_time(gc_pass_mu_);
  {
    std::lock_guard state(gc_mu_);
    gc_.running = true;
  }
  core::GcOptions options;
  options.grace = grace;
  core::Result<core::GcStats> stats =
      core::ChunkCollector(*local_store_, Replica(), files_.get(), *network_, options)
          .Run(progress, &stopping_);
  if (stats.ok()) {
    spdlog::info("gc: {} chunks looked at, {} removed ({} bytes), {} in use, {} within the grace "
                 "period, {} that no node could answer for",
                 stats->chunks, stats->removed, stats->removed_bytes, stats->live, stats->young,
                 stats->unanswered);
    for (const std::string& note : stats->notes) spdlog::info("gc: kept: {}", note);
  } else {
    spdlog::error("gc: {}", stats.status().ToString());
  }
  std::lock_guard state(gc_mu_);
  gc_.running = false;
  ++gc_.passes;
  gc_.last = stats.ok() ? *stats : core::GcStats{};
  gc_.error = stats.ok() ? "" : stats.status().ToString();
  gc_.grace = grace;
  gc_.finished = std::chrono::system_clock::now();
}

std::string Node::GcNow(std::optional<std::chrono::seconds> grace,
                        const std::function<void(std::uint64_t)>& progress) {
  RunGcPass(grace.value_or(config_.gc_grace), progress);
  return GcJson(gc_state()).dump(2);
}

GcState Node::gc_state() {
  std::lock_guard lock(gc_mu_);
  return gc_;
}

nlohmann::json Node::GcJson(const GcState& g) {
  nlohmann::json j = {{"running", g.running},
                      {"passes", g.passes},
                      {"grace_seconds", g.grace.count()},
                      {"last_chunks", g.last.chunks},
                      {"last_removed", g.last.removed},
                      {"last_removed_bytes", g.last.removed_bytes},
                      {"last_live", g.last.live},
                      {"last_young", g.last.young},
                      {"last_unanswered", g.last.unanswered},
                      {"last_unknown", g.last.unknown},
                      {"last_notes", g.last.notes},
                      {"last_finished", Iso(g.finished)}};
  if (!g.error.empty()) j["error"] = g.error;
  return j;
}

RepairState Node::repair_state() {
  std::lock_guard lock(repair_mu_);
  return repair_;
}

core::ScrubStats Node::Scrub(const std::function<void(std::uint64_t, std::uint64_t)>& progress) {
  // Keyless: verify_ is empty and the store's checksum is the only check.
  core::ScrubStats stats =
      core::Scrub(*local_store_, *network_, verify_, std::chrono::seconds(10), stopping_, progress);
  for (const core::ChunkId& id : stats.unrepaired_ids) {
    spdlog::error("scrub: chunk {} is bad here and no peer has a good copy", id.ToHex());
  }
  return stats;
}

std::string Node::PeersJson() {
  std::vector<net::PeerInfo> peers = OnIo([this] { return mesh_->Peers(); });
  nlohmann::json out = nlohmann::json::array();
  for (const net::PeerInfo& p : peers) {
    out.push_back({{"address", p.address},
                   {"id", p.id.ToHex()},
                   {"alive", p.alive},
                   {"last_seen", Iso(p.last_seen)},
                   // How far it holds this node's ops (its acks), and whether it
                   // refuses them (it holds another volume's key).
                   {"ops_acked", op_sync_->Acked(p.id)},
                   {"other_volume", op_sync_->Refuses(p.id)}});
  }
  return out.dump(2);
}

std::string Node::StatusJson() {
  nlohmann::json j;
  j["node"] = id_.ToHex();
  j["listen"] = fmt::format("{}:{}", config_.listen_host, listen_port_);
  j["data"] = config_.data_dir.string();
  j["keyless"] = !files_;
  j["replicas"] = config_.replicas;
  j["peers"] = nlohmann::json::parse(PeersJson());
  auto usage = local_store_->Usage();
  if (usage.ok()) {
    j["chunks"] = usage->chunks;
    j["bytes"] = usage->bytes;
  }
  j["ops_received"] = op_sync_->accepted();
  if (metrics_http_) j["metrics"] = fmt::format("{}:{}", config_.metrics_address->first, metrics_port());
  RepairState r = repair_state();
  j["repair"] = RepairJson(r);
  // Chunks that lacked a copy at the last pass and could not all be fixed.
  j["under_replicated"] = r.last.failed > 0 ? r.last.under_replicated : 0;
  j["gc"] = GcJson(gc_state());
  if (files_) {
    auto totals = files_->Totals();
    if (totals.ok()) {
      j["files"] = totals->files;
      j["logical_bytes"] = totals->logical_bytes;
    }
  }
  return j.dump(2);
}

}  // namespace dfs::node
