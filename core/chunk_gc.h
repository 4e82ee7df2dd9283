// ChunkCollector: removes the chunks that no file needs any more, on every
// node — with the volume key or without it (docs/architecture.md, "Crash
// safety and garbage").
//
// A node frees the chunks of its own volume as ops drop their last
// reference (FileServer, pending_free). That leaves chunks it cannot free
// that way: chunks on keyless peers (which never see a reference), chunks
// of an interrupted write, and copies that arrived after the op that freed
// them. A pass walks the local store and, for each chunk, asks whoever can
// tell whether a file still references it:
//
//   - a chunk of this node's own volume: its FileServer (references, and
//     the pins of writes in progress);
//   - a chunk of another volume (the key check in its envelope says which):
//     a live peer with that volume's key, over the network (GcPeers).
//
// Three rules keep a chunk that is on its way to being referenced:
//
//   - grace: a chunk whose last Put is less than `grace` old is kept: the
//     op that names it may still be on its way. A Put of a chunk already
//     held renews its time (ChunkStore::Stat), so a writer that finds it
//     in place keeps it too;
//   - currency: an answer about another volume counts only from a node that
//     has applied every op of that volume the asker holds (its version
//     vector covers the asker's). This node collects its own volume only
//     while its vector covers every live peer's for that volume;
//   - atomic removal: RemoveIfStoredBefore (and FileServer::CollectUnused,
//     ordered with pinning), so a Put between the answer and the removal
//     keeps the chunk.
//
// A chunk no node can answer for (no peer with its key is live, or none is
// current) is kept and counted as unanswered. Memory is bounded: at most
// `max_volumes` batches of `batch` ids wait for an answer at a time.
//
// Thread safety: one pass at a time per collector; the stores, replica and
// FileServer it uses are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/chunk_store.h"
#include "core/op_replica.h"

namespace dfs::core {

class FileServer;

// One node's answer about chunks of one volume.
struct RefsAnswer {
  enum class Code : std::uint8_t {
    kAnswered = 0,  // `live` holds the answer
    kNoKey = 1,     // the node does not hold that volume's key
    kBehind = 2,    // it lacks ops the asker holds: it cannot say
  };
  Code code = Code::kNoKey;
  VersionVector vector;    // the answerer's, for that volume (every code)
  std::vector<bool> live;  // kAnswered: per id asked, whether a file needs it
};

// The network side of a pass.
class GcPeers {
 public:
  virtual ~GcPeers() = default;
  // The live members other than this node.
  virtual std::vector<NodeId> LivePeers() = 0;
  // Asks `peer` which of `ids` (chunks sealed under `volume`) a file of that
  // volume references; `mine` is this node's vector for it. At most
  // kMaxRefsPerAsk ids; none asks for the peer's vector alone.
  virtual Result<RefsAnswer> AskRefs(const NodeId& peer, const KeyCheck& volume,
                                     const VersionVector& mine,
                                     const std::vector<ChunkId>& ids) = 0;
  static constexpr std::size_t kMaxRefsPerAsk = 4096;
};

// What a node answers a peer's AskRefs. `files` is its volume (nullptr on a
// keyless node); `replica` its op log (or store).
Result<RefsAnswer> AnswerRefs(OpReplica& replica, FileServer* files, const KeyCheck& volume,
                              const VersionVector& theirs, const std::vector<ChunkId>& ids);

// Whether `mine` holds every op `theirs` does.
bool Covers(const VersionVector& mine, const VersionVector& theirs);

struct GcOptions {
  std::chrono::seconds grace{std::chrono::hours(24)};
  std::size_t batch = 1024;     // ids per question (<= GcPeers::kMaxRefsPerAsk)
  std::size_t max_volumes = 16;  // batches waiting at once
};

struct GcStats {
  std::uint64_t chunks = 0;       // looked at
  std::uint64_t young = 0;        // kept: put within the grace period
  std::uint64_t live = 0;         // kept: a file references it
  std::uint64_t unanswered = 0;   // kept: no current node with its key answered
  std::uint64_t unknown = 0;      // kept: not a chunk envelope
  std::uint64_t removed = 0;
  std::uint64_t removed_bytes = 0;
  std::vector<std::string> notes;  // why chunks went unanswered (a few lines)
};

class ChunkCollector {
 public:
  // `store`: this node's own chunks. `files`: its volume (nullptr: keyless).
  ChunkCollector(ChunkStore& store, OpReplica& replica, FileServer* files, GcPeers& peers,
                 GcOptions options);

  // One pass over the store; `progress(chunks looked at)` now and then. It
  // ends early, keeping what it has not judged, once `*stop` is true.
  // Errors: the store's or the index's (what was removed stays removed).
  Result<GcStats> Run(const std::function<void(std::uint64_t)>& progress = {},
                      const std::atomic<bool>* stop = nullptr);

 private:
  struct Candidate {
    ChunkId id;
    std::uint64_t size;
  };
  Status Process(const KeyCheck& volume, std::vector<Candidate>& batch, GcStats* stats);
  // Whether this node's vector for its own volume covers every live peer's.
  bool OwnVolumeCurrent(GcStats* stats);
  void Note(GcStats* stats, std::string line);

  ChunkStore& store_;
  OpReplica& replica_;
  FileServer* files_;
  GcPeers& peers_;
  GcOptions options_;
  std::chrono::system_clock::time_point cutoff_{};
  int own_current_ = -1;  // per pass: -1 not asked yet, 0 no, 1 yes
};

}  // namespace dfs::core
