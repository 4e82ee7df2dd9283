// Node: a whole dfs node — what dfsd runs, and what dfsmount runs under its
// mount.
//
//   - its identity (DIR/node-id) and its place in the mesh (net::Mesh);
//   - with the volume key: a FileServer on DIR whose chunk store is a
//     ReplicatedChunkStore over the mesh (Store returns once the write
//     quorum holds each chunk; Get fetches what this node lacks), whose
//     local ops are pushed to every peer and whose missing ops are pulled
//     (net::OpSync over core::VolumeOpLog);
//   - without it: a keyless storage peer, holding and serving sealed chunks
//     and sealed ops (core::OpStore) that it cannot read;
//   - either way it serves its chunks to peers (net::ChunkServer) and the
//     local control socket DIR/control.sock (ControlServer) through which
//     `dfs --data DIR ...` works.
//
// Threading: Start runs the network on a thread of its own. Stop and the
// destructor may be called from any other thread; file operations through
// files() from any thread.
#pragma once

#include <utility>  // before Asio, for GCC 12

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/chunk_gc.h"
#include "core/disk_chunk_store.h"
#include "core/file_server.h"
#include "core/key_file.h"
#include "core/metrics.h"
#include "core/node_id.h"
#include "core/op_replica.h"
#include "core/op_store.h"
#include "core/repair.h"
#include "core/replicated_chunk_store.h"
#include "core/status.h"
#include "net/chunk_exchange.h"
#include "net/mesh.h"
#include "net/metrics_http.h"
#include "net/op_sync.h"

namespace dfs::node {

class ControlServer;

struct NodeConfig {
  std::filesystem::path data_dir;
  std::string listen_host = "0.0.0.0";
  std::uint16_t listen_port = 3000;
  std::vector<std::pair<std::string, std::uint16_t>> peers;
  net::NetworkKey network_key{};
  std::optional<core::VolumeKey> volume_key;  // none: a keyless storage peer
  int replicas = 3;
  std::chrono::milliseconds pull_interval{5000};
  // A member unreachable this long is gone: its chunks are re-replicated.
  std::chrono::milliseconds dead_time{std::chrono::minutes(5)};
  // A repair pass at least this often (0: only on changes of membership
  // and `dfs repair`).
  std::chrono::seconds repair_interval{std::chrono::hours(24)};
  // How often the repair loop looks at membership.
  std::chrono::milliseconds repair_check{std::chrono::seconds(1)};
  // Chunk collection (core/chunk_gc.h): a pass every gc_interval (0: only
  // on demand, `dfs gc`), keeping chunks put within gc_grace.
  std::chrono::seconds gc_interval{std::chrono::hours(6)};
  std::chrono::seconds gc_grace{std::chrono::hours(24)};
  // Serve Prometheus metrics over HTTP on this address (port 0: any).
  std::optional<std::pair<std::string, std::uint16_t>> metrics_address;
};

// What the last repair pass found and did.
struct RepairState {
  bool running = false;
  std::uint64_t passes = 0;
  core::RepairStats last;
  std::chrono::system_clock::time_point started{};  // of the last pass begun
  std::chrono::system_clock::time_point finished{};
};

// What the last chunk collection pass found and did.
struct GcState {
  bool running = false;
  std::uint64_t passes = 0;
  core::GcStats last;
  std::string error;  // the last pass's failure ("" when it ran through)
  std::chrono::seconds grace{};  // the last pass's
  std::chrono::system_clock::time_point finished{};
};

class Node {
 public:
  explicit Node(NodeConfig config);
  ~Node();

  // Loads or creates DIR/node-id, opens the store (and the FileServer when
  // there is a volume key), listens, dials the peers, serves
  // DIR/control.sock, and starts the network thread. Errors name what failed.
  core::Status Start();
  // Stops serving the control socket (waiting for requests in progress),
  // then the network. Idempotent.
  void Stop();

  core::FileServer* files() { return files_.get(); }
  // Called (on the applying thread, with the FileServer's op lock held: it
  // must not call back into it) for each op from a peer once it applied:
  // the mount invalidates the kernel's caches with it. Any time; nullptr clears.
  void SetRemoteOpObserver(std::function<void(const core::Op&)> fn) {
    std::lock_guard lock(observer_mu_);
    remote_observer_ = std::move(fn);
  }
  const core::NodeId& id() const { return id_; }
  std::uint16_t listen_port() const { return listen_port_; }

  // The JSON `dfs status` and `dfs peers` print. Any thread.
  std::string StatusJson();
  std::string PeersJson();

  // Verifies every local chunk and replaces bad ones from peers (dfs scrub).
  core::ScrubStats Scrub(const std::function<void(std::uint64_t, std::uint64_t)>& progress);
  RepairState repair_state();
  // Runs a repair pass now (`dfs repair`), after any pass already running;
  // returns it as JSON (status's "repair" object).
  std::string RepairNow(const std::function<void(std::uint64_t checked)>& progress);
  GcState gc_state();
  // Runs a chunk collection pass now (`dfs gc`; grace: the node's unless
  // given), after any pass already running; returns it as JSON (status's
  // "gc" object).
  std::string GcNow(std::optional<std::chrono::seconds> grace,
                    const std::function<void(std::uint64_t chunks)>& progress);
  // Waits (at most `limit`) until every live peer that takes this volume's
  // ops has acknowledged holding this node's last durable op durably
  // (net::OpSync's acks): what `dfs put`, `rm` and fsync acknowledge then
  // survives the loss of this node. A peer that does not answer in time is
  // logged (it pulls the op later) and not waited for again until its acks
  // have caught up.
  void WaitOpsAcked(std::chrono::milliseconds limit);

  // This node's metrics (the FileServer's and, under a mount, the FUSE
  // calls' register here); served over HTTP with --metrics.
  core::MetricsRegistry& metrics() { return metrics_; }
  // The port --metrics serves on (0: not serving).
  std::uint16_t metrics_port() const { return metrics_http_ ? metrics_http_->port() : 0; }

 private:
  core::Status OpenStores();
  // The op log ops sync drives: the volume's with the key, else the keyless store.
  core::OpReplica& Replica() {
    return files_ ? static_cast<core::OpReplica&>(*op_log_) : *op_store_;
  }
  // Registers what the node knows (store usage, peers, repair, process) and
  // serves it when --metrics is given.
  core::Status StartMetrics();
  void RepairLoop();
  // One pass, after any other running (repair_pass_mu_), recorded in repair_.
  core::RepairStats RunRepairPass(const std::function<void(std::uint64_t)>& progress);
  // What status and dfs repair show of a pass: counts, and where copies lacked.
  nlohmann::json RepairJson(const RepairState& r);
  void GcLoop();
  void RunGcPass(std::chrono::seconds grace, const std::function<void(std::uint64_t)>& progress);
  static nlohmann::json GcJson(const GcState& g);
  // Runs fn on the network thread and waits for it.
  template <typename Fn>
  auto OnIo(Fn fn) -> decltype(fn());

  NodeConfig config_;
  // Outlives everything that registers in it or that its callbacks read.
  core::MetricsRegistry metrics_;
  boost::asio::io_context io_;
  core::NodeId id_;
  std::uint16_t listen_port_ = 0;
  std::unique_ptr<net::Mesh> mesh_;
  std::unique_ptr<net::MeshPeerNetwork> network_;
  // With the key: the FileServer owns the replicated store, which owns the disk store.
  std::unique_ptr<core::FileServer> files_;
  core::ReplicatedChunkStore* replicated_ = nullptr;
  core::ChunkVerifier verify_;  // a copy counts only if it opens under the volume key
  std::unique_ptr<core::VolumeOpLog> op_log_;
  // Without it.
  std::unique_ptr<core::DiskChunkStore> keyless_store_;
  std::unique_ptr<core::OpStore> op_store_;

  core::ChunkStore* local_store_ = nullptr;  // this node's own chunks, either way
  std::unique_ptr<net::ChunkServer> chunk_server_;
  std::unique_ptr<net::OpSync> op_sync_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<net::MetricsHttpServer> metrics_http_;
  std::thread io_thread_;
  bool stopped_ = false;

  std::thread repair_thread_;
  std::mutex repair_mu_;
  std::condition_variable repair_cv_;
  std::atomic<bool> stopping_{false};
  RepairState repair_;  // guarded by repair_mu_
  std::mutex repair_pass_mu_;  // one pass at a time (the loop's, dfs repair's)
  std::atomic<std::uint64_t> repair_progress_{0};  // chunks checked by the pass running

  std::thread gc_thread_;
  std::mutex gc_mu_;  // guards gc_; waited on (repair_cv_'s stop) by the loop
  std::condition_variable gc_cv_;
  GcState gc_;
  std::mutex gc_pass_mu_;  // one pass at a time

  std::mutex lagging_mu_;
  std::set<core::NodeId> lagging_;  // missed an ack deadline: not waited for until caught up

  std::mutex observer_mu_;
  std::function<void(const core::Op&)> remote_observer_;
};

}  // namespace dfs::node
