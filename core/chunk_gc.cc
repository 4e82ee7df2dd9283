#include "core/chunk_gc.h"

#include <algorithm>
#include <map>
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/file_server.h"
#include "core/volume_crypto.h"

namespace dfs::core {
namespace {

std::string VolumeName(const KeyCheck& volume) {
  return fmt::format("{:02x}", fmt::join(volume, ""));
}

}  // namespace

bool Covers(const VersionVector& mine, const VersionVector& theirs) {
  return theirs.Missing(mine).empty();
}

Result<RefsAnswer> AnswerRefs(OpReplica& replica, FileServer* files, const KeyCheck& volume,
                              const VersionVector& theirs, const std::vector<ChunkId>& ids) {
  RefsAnswer answer;
  DFS_ASSIGN_OR_RETURN(answer.vector, replica.VectorFor(volume));
  if (files == nullptr || files->crypto().key_check() != volume) {
    answer.code = RefsAnswer::Code::kNoKey;
    return answer;
  }
  if (!Covers(answer.vector, theirs)) {
    answer.code = RefsAnswer::Code::kBehind;
    return answer;
  }
  DFS_ASSIGN_OR_RETURN(answer.live, files->InUse(ids));
  answer.code = RefsAnswer::Code::kAnswered;
  return answer;
}

ChunkCollector::ChunkCollector(ChunkStore& store, OpReplica& replica, FileServer* files,
                               GcPeers& peers, GcOptions options)
    : store_(store), replica_(replica), files_(files), peers_(peers), options_(options) {
  options_.batch = std::clamp<std::size_t>(options_.batch, 1, GcPeers::kMaxRefsPerAsk);
  options_.max_volumes = std::max<std::size_t>(options_.max_volumes, 1);
}

void ChunkCollector::Note(GcStats* stats, std::string line) {
  if (std::find(stats->notes.begin(), stats->notes.end(), line) != stats->notes.end()) return;
  if (stats->notes.size() < 8) stats->notes.push_back(std::move(line));
}

Result<GcStats> ChunkCollector::Run(const std::function<void(std::uint64_t)>& progress,
                                    const std::atomic<bool>* stop) {
  auto stopped = [stop] { return stop != nullptr && stop->load(); };
  GcStats stats;
  cutoff_ = std::chrono::system_clock::now() - options_.grace;
  own_current_ = -1;
  std::map<KeyCheck, std::vector<Candidate>> waiting;
  Status failed = Status::Ok();

  auto process = [&](std::map<KeyCheck, std::vector<Candidate>>::iterator it) {
    Status s = Process(it->first, it->second, &stats);
    waiting.erase(it);
    if (!s.ok()) failed = s;
    return s.ok();
  };
  DFS_RETURN_IF_ERROR(store_.ForEach([&](const ChunkId& id, std::uint64_t) {
    if (stopped()) return false;
    ++stats.chunks;
    if (progress && stats.chunks % 256 == 0) progress(stats.chunks);
    Result<ChunkStat> st = store_.Stat(id);
    if (!st.ok()) {
      if (st.status().code() == ErrorCode::kNotFound) return true;  // removed meanwhile
      failed = st.status();
      return false;
    }
    if (st->stored >= cutoff_) {
      ++stats.young;
      return true;
    }
    KeyCheck volume;
    if (!VolumeCrypto::EnvelopeKeyCheck(st->head, &volume)) {
      ++stats.unknown;  // not ours to judge: kept
      return true;
    }
    auto it = waiting.try_emplace(volume).first;
    it->second.push_back({id, st->size});
    if (it->second.size() >= options_.batch) return process(it);
    if (waiting.size() > options_.max_volumes) {
      auto largest = std::max_element(waiting.begin(), waiting.end(), [](auto& a, auto& b) {
        return a.second.size() < b.second.size();
      });
      return process(largest);
    }
    return true;
  }));
  DFS_RETURN_IF_ERROR(failed);
  while (!waiting.empty() && !stopped()) {
    if (!process(waiting.begin())) return failed;
  }
  if (progress) progress(stats.chunks);
  return stats;
}

bool ChunkCollector::OwnVolumeCurrent(GcStats* stats) {
  if (own_current_ >= 0) return own_current_ == 1;
  own_current_ = 0;
  const KeyCheck& volume = files_->crypto().key_check();
  Result<VersionVector> mine = replica_.VectorFor(volume);
  if (!mine.ok()) {
    Note(stats, "this node's op log: " + mine.status().ToString());
    return false;
  }
  for (const NodeId& peer : peers_.LivePeers()) {
    Result<RefsAnswer> a = peers_.AskRefs(peer, volume, *mine, {});
    if (!a.ok()) {
      Note(stats, fmt::format("this volume's chunks: no answer from {} ({})",
                              peer.ToHex().substr(0, 8), a.status().ToString()));
      return false;
    }
    if (!Covers(*mine, a->vector)) {
      Note(stats, fmt::format("this volume's chunks: node {} holds ops this node has not "
                              "applied yet", peer.ToHex().substr(0, 8)));
      return false;
    }
  }
  own_current_ = 1;
  return true;
}

Status ChunkCollector::Process(const KeyCheck& volume, std::vector<Candidate>& batch,
                               GcStats* stats) {
  std::vector<ChunkId> ids;
  ids.reserve(batch.size());
  for (const Candidate& c : batch) ids.push_back(c.id);

  if (files_ != nullptr && files_->crypto().key_check() == volume) {
    if (!OwnVolumeCurrent(stats)) {
      stats->unanswered += ids.size();
      return Status::Ok();
    }
    DFS_ASSIGN_OR_RETURN(std::vector<bool> removed, files_->CollectUnused(ids, cutoff_));
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (removed[i]) {
        ++stats->removed;
        stats->removed_bytes += batch[i].size;
      } else {
        ++stats->live;  // referenced, pinned, or put again since the walk saw it
      }
    }
    return Status::Ok();
  }

  // Another volume's chunks: the first current peer with its key answers.
  DFS_ASSIGN_OR_RETURN(VersionVector mine, replica_.VectorFor(volume));
  std::vector<NodeId> peers = peers_.LivePeers();
  std::shuffle(peers.begin(), peers.end(), std::mt19937(std::random_device{}()));
  std::optional<RefsAnswer> answer;
  bool behind = false;
  for (const NodeId& peer : peers) {
    Result<RefsAnswer> a = peers_.AskRefs(peer, volume, mine, ids);
    if (!a.ok()) {
      spdlog::debug("gc: asking {}: {}", peer.ToHex().substr(0, 8), a.status().ToString());
      continue;
    }
    if (a->code == RefsAnswer::Code::kBehind) behind = true;
    if (a->code == RefsAnswer::Code::kAnswered && a->live.size() == ids.size()) {
      answer = std::move(a).value();
      break;
    }
  }
  if (!answer) {
    stats->unanswered += ids.size();
    Note(stats, fmt::format("volume {}: {}", VolumeName(volume),
                            behind ? "the live peers with its key lack ops this node holds"
                                   : "no live peer holds its key"));
    return Status::Ok();
  }
  bool any = false;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (answer->live[i]) {
      ++stats->live;
      continue;
    }
    Result<bool> r = store_.RemoveIfStoredBefore(ids[i], cutoff_);
    if (!r.ok() && r.status().code() != ErrorCode::kNotFound) return r.status();
    if (!r.ok()) continue;  // gone meanwhile
    if (*r) {
      ++stats->removed;
      stats->removed_bytes += batch[i].size;
      any = true;
    } else {
      ++stats->live;  // put again since the walk saw it
    }
  }
  return any ? store_.Sync() : Status::Ok();
}

}  // namespace dfs::core
