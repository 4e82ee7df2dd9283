// dfs: the command line of the dfs store.
//
//   dfs keygen FILE
//   dfs [--data DIR] [--key FILE] put KEY [PATH|-]
//   dfs [--data DIR] [--key FILE] get KEY [PATH|-]
//   dfs ... rm KEY | has KEY | ls [PREFIX] [--json] | stat KEY [--json]
//   dfs [--data DIR] status [--json] | peers [--json] | scrub [--json] | repair [--json]
//   dfs [--data DIR] gc [--grace SECONDS] [--json]
//
// Errors are one line on stderr ("dfs: ...") and exit status 1; `has` exits
// 0 (present), 1 (absent) or 2 (error); `scrub` exits 1 when a chunk is
// left bad.
//
// While a node (dfsd) runs on the data directory, put, get, rm, has, ls and
// stat go through it (its control socket; it holds the key, so --key is not
// needed and is ignored); otherwise this process opens the store itself.
// The output and exit status are the same either way. status, peers and
// scrub need the node.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cmd/dfs/control_client.h"
#include "cmd/dfs/paths.h"
#include "cmd/dfs/progress.h"
#include "core/file_server.h"
#include "core/key_file.h"
#include "core/repair.h"

namespace dfs::cli {
namespace {

using core::Result;
using core::Status;

struct Globals {
  std::string data_dir;
  std::string key_file;
};

int Fail(const Status& s, int code = 1) {
  fmt::print(stderr, "dfs: {}\n", s.ToString());
  return code;
}

// The key named by --key must exist; the default key is created on first use.
Result<core::VolumeKey> LoadKey(const Globals& g) {
  if (!g.key_file.empty()) {
    Result<core::VolumeKey> key = core::ReadKeyFile(g.key_file);
    if (!key.ok() && key.status().code() == core::ErrorCode::kNotFound) {
      return Status::NotFound(fmt::format(
          "key file {} does not exist (create one with: dfs keygen {})", g.key_file, g.key_file));
    }
    return key;
  }
  std::filesystem::path path = DefaultKeyPath();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    DFS_RETURN_IF_ERROR(core::CreateKeyFile(path));
    fmt::print(stderr, "dfs: created a new volume key at {} (back it up: without it the data "
                       "cannot be read)\n", path.string());
  }
  return core::ReadKeyFile(path);
}

std::filesystem::path DataDir(const Globals& g) {
  return g.data_dir.empty() ? DefaultDataDir() : std::filesystem::path(g.data_dir);
}

// The running node on the data directory, else the store opened here.
Result<std::unique_ptr<FileOps>> OpenFiles(const Globals& g) {
  return OpenFileOps(DataDir(g), [&g] { return LoadKey(g); });
}

// True when `fd` is a pipe or socket whose reader has gone. A get through
// the node learns of that as an error (the node ignores SIGPIPE); run here,
// the write would have raised SIGPIPE, so the caller raises it to end the
// same way.
bool ReaderGone(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) return false;
  pollfd p{fd, POLLOUT, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
}

std::string IsoTime(std::int64_t ns) {
  std::time_t t = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int CmdKeygen(const std::string& file) {
  Status s = core::CreateKeyFile(file);
  if (!s.ok()) return Fail(s);
  fmt::print(stderr, "dfs: wrote a new volume key to {} (mode 0600)\n", file);
  return 0;
}

int CmdPut(const Globals& g, const std::string& key, const std::string& path) {
  bool use_stdin = path.empty() || path == "-";
  int fd = use_stdin ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(core::ErrnoStatus(errno, "open " + path));
  std::uint64_t total = 0;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) total = static_cast<std::uint64_t>(st.st_size);
  if (!use_stdin && S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Fail(Status::InvalidArgument(path + " is a directory"));
  }
  Result<std::unique_ptr<FileOps>> fs = OpenFiles(g);
  if (!fs.ok()) return Fail(fs.status());
  Status s;
  {
    Progress progress("put " + key, total);
    s = (*fs)->Put(key, fd, use_stdin ? "standard input" : path,
                   [&](std::uint64_t done) { progress.Update(done); });
  }
  if (!use_stdin) ::close(fd);
  return s.ok() ? 0 : Fail(s);
}

int CmdGet(const Globals& g, const std::string& key, const std::string& path) {
  Result<std::unique_ptr<FileOps>> fs = OpenFiles(g);
  if (!fs.ok()) return Fail(fs.status());
  Result<core::FileInfo> info = (*fs)->Stat(key);
  if (!info.ok()) return Fail(info.status());
  bool use_stdout = path.empty() || path == "-";
  if (use_stdout) {
    Status s;
    {
      Progress progress("get " + key, info->size);
      s = (*fs)->Get(key, STDOUT_FILENO, "standard output",
                     [&](std::uint64_t done) { progress.Update(done); });
    }
    if (!s.ok() && ReaderGone(STDOUT_FILENO)) ::raise(SIGPIPE);
    return s.ok() ? 0 : Fail(s);
  }
  // Write beside the destination and rename, so a failed get never leaves a
  // partial file under the name asked for.
  std::string tmp = path + ".dfs-partial";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Fail(core::ErrnoStatus(errno, "create " + tmp));
  Status s;
  {
    Progress progress("get " + key, info->size);
    s = (*fs)->Get(key, fd, path, [&](std::uint64_t done) { progress.Update(done); });
  }
  if (s.ok() && ::fsync(fd) != 0) s = core::ErrnoStatus(errno, "fsync " + path);
  if (::close(fd) != 0 && s.ok()) s = core::ErrnoStatus(errno, "close " + path);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = core::ErrnoStatus(errno, "rename " + tmp + " to " + path);
  }
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return Fail(s);
  }
  return 0;
}

int CmdRm(const Globals& g, const std::string& key) {
  Result<std::unique_ptr<FileOps>> fs = OpenFiles(g);
  if (!fs.ok()) return Fail(fs.status());
  Status s = (*fs)->Delete(key);
  return s.ok() ? 0 : Fail(s);
}

int CmdHas(const Globals& g, const std::string& key) {
  Result<std::unique_ptr<FileOps>> fs = OpenFiles(g);
  if (!fs.ok()) return Fail(fs.status(), 2);
  Result<bool> has = (*fs)->Has(key);
  if (!has.ok()) return Fail(has.status(), 2);
  return *has ? 0 : 1;
}

int CmdLs(const Globals& g, const std::string& prefix, bool json) {
  Result<std::unique_ptr<FileOps>> fs = OpenFiles(g);
  if (!fs.ok()) return Fail(fs.status());
  bool first = true;
  if (json) std::fputs("[", stdout);
  Status s = (*fs)->List(prefix, [&](const core::FileInfo& f) {
    if (json) {
      nlohmann::json j = {{"key", f.key},
                          {"size", f.size},
                          {"chunks", f.chunks},
                          {"mtime", IsoTime(f.mtime_ns)}};
      fmt::print("{}\n  {}", first ? "" : ",", j.dump());
    } else {
      fmt::print("{:>12}  {}  {}\n", f.size, IsoTime(f.mtime_ns), f.key);
    }
    first = false;
    return true;
  });
  if (json) std::fputs(first ? "]\n" : "\n]\n", stdout);
  return s.ok() ? 0 : Fail(s);
}

int CmdStat(const Globals& g, const std::string& key, bool json) {
  Result<std::unique_ptr<FileOps>> fs = OpenFiles(g);
  if (!fs.ok()) return Fail(fs.status());
  Result<core::FileInfo> f = (*fs)->Stat(key);
  if (!f.ok()) return Fail(f.status());
  if (json) {
    nlohmann::json j = {{"key", f->key},
                        {"size", f->size},
                        {"chunks", f->chunks},
                        {"stored_bytes", f->stored_bytes},
                        {"mtime", IsoTime(f->mtime_ns)}};
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("key:      {}\nsize:     {} ({})\nchunks:   {}\nstored:   {} ({})\nmodified: {}\n",
               f->key, f->size, HumanBytes(f->size), f->chunks, f->stored_bytes,
               HumanBytes(f->stored_bytes), IsoTime(f->mtime_ns));
  }
  return 0;
}

void PrintPeers(const nlohmann::json& peers) {
  if (peers.empty()) {
    fmt::print("no peers\n");
    return;
  }
  fmt::print("{:<24} {:<6} {:<22} {}\n", "ADDRESS", "ALIVE", "LAST SEEN", "NODE");
  for (const auto& p : peers) {
    fmt::print("{:<24} {:<6} {:<22} {}\n", p.value("address", ""),
               p.value("alive", false) ? "yes" : "no", p.value("last_seen", ""),
               p.value("id", "").substr(0, 16));
  }
}

// Where the last repair pass found copies missing: one line per holder.
void PrintHolders(const nlohmann::json& repair) {
  auto holders = repair.find("holders");
  if (holders == repair.end() || !holders->is_array()) return;
  for (const nlohmann::json& h : *holders) {
    std::string node = h.value("node", "");
    fmt::print("  lacked on {} ({}): {} chunks, {} copied, {} failed\n", h.value("address", "?"),
               node.substr(0, 16), h.value("lacked", std::uint64_t{0}),
               h.value("copied", std::uint64_t{0}), h.value("failed", std::uint64_t{0}));
  }
}

// Files, ops and replication health from a node's status JSON; each line
// only when the node reports it.
void PrintHealth(const nlohmann::json& j) {
  auto count = [&j](const char* name) { return j.value(name, std::uint64_t{0}); };
  if (j.contains("files")) {
    fmt::print("files:    {}, {}\n", count("files"), HumanBytes(count("logical_bytes")));
  }
  if (j.contains("ops_received")) {
    fmt::print("ops:      {} received from peers\n", count("ops_received"));
  }
  if (!j.contains("repair")) return;
  const nlohmann::json& r = j["repair"];
  fmt::print("under-replicated: {} chunks\n", count("under_replicated"));
  std::string finished = r.value("last_finished", "");
  std::string last = finished.empty() ? std::string("none yet")
                                      : fmt::format("{}, {} copies made, {} failed", finished,
                                                    r.value("last_copies_made", std::uint64_t{0}),
                                                    r.value("last_failed", std::uint64_t{0}));
  fmt::print("last repair:      {}{}\n", last,
             r.value("running", false) ? " (a pass is running now)" : "");
  PrintHolders(r);
  if (!j.contains("gc")) return;
  const nlohmann::json& c = j["gc"];
  auto n = [&c](const char* name) { return c.value(name, std::uint64_t{0}); };
  std::string at = c.value("last_finished", "");
  std::string gc = at.empty() ? std::string("none yet")
                              : fmt::format("{}, {} chunks removed ({}), {} kept unanswered", at,
                                            n("last_removed"), HumanBytes(n("last_removed_bytes")),
                                            n("last_unanswered"));
  if (c.contains("error")) gc += ", failed: " + c.value("error", "");
  fmt::print("last gc:          {}{}\n", gc, c.value("running", false) ? " (a pass is running now)" : "");
}

int CmdNode(const Globals& g, const std::string& what, bool json) {
  Result<nlohmann::json> answer = AskNode(DataDir(g), what);
  if (!answer.ok()) return Fail(answer.status());
  nlohmann::json j = std::move(answer).value();
  if (json) {
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    return 0;
  }
  if (what == "peers") {
    PrintPeers(j);
    return 0;
  }
  fmt::print("node:     {}\nlisten:   {}\ndata:     {}\nkeyless:  {}\nreplicas: {}\n",
             j.value("node", ""), j.value("listen", ""), j.value("data", ""),
             j.value("keyless", false) ? "yes" : "no", j.value("replicas", 0));
  if (j.contains("metrics")) fmt::print("metrics:  http://{}/metrics\n", j.value("metrics", ""));
  if (j.contains("chunks")) {
    fmt::print("held:     {} chunks, {}\n", j["chunks"].get<std::uint64_t>(),
               HumanBytes(j["bytes"].get<std::uint64_t>()));
  }
  PrintHealth(j);
  fmt::print("\n");
  PrintPeers(j["peers"]);
  return 0;
}

// A progress bar's total for a pass over the node's chunks: the chunks it
// holds, asked only when stderr is a terminal (0 otherwise).
Result<std::uint64_t> ChunksForProgress(const std::filesystem::path& dir) {
  if (::isatty(STDERR_FILENO) != 1) return std::uint64_t{0};
  DFS_ASSIGN_OR_RETURN(nlohmann::json status, AskNode(dir, "status"));
  return status.value("chunks", std::uint64_t{0});
}

int CmdScrub(const Globals& g, bool json) {
  std::filesystem::path dir = DataDir(g);
  Result<std::uint64_t> total = ChunksForProgress(dir);
  if (!total.ok()) return Fail(total.status());
  Result<core::ScrubStats> result = core::ScrubStats{};
  {
    Progress progress("scrub", *total, Progress::Unit::kChunks);
    result = ScrubThroughNode(dir, [&](std::uint64_t checked, std::uint64_t bad) {
      if (bad > 0) progress.SetLabel(fmt::format("scrub ({} bad)", bad));
      progress.Update(checked);
    });
    if (result.ok()) {
      if (result->bad > 0) progress.SetLabel(fmt::format("scrub ({} bad)", result->bad));
      progress.Update(result->checked);
    }
  }
  if (!result.ok()) return Fail(result.status());
  const core::ScrubStats& stats = *result;
  std::vector<std::string> ids;
  for (const core::ChunkId& id : stats.unrepaired_ids) ids.push_back(id.ToHex());
  if (json) {
    nlohmann::json j = {{"checked", stats.checked},
                        {"bad", stats.bad},
                        {"repaired", stats.repaired},
                        {"unrepaired", stats.unrepaired},
                        {"unrepaired_ids", ids}};
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("checked {} chunks: {} bad, {} repaired, {} could not be repaired\n", stats.checked,
               stats.bad, stats.repaired, stats.unrepaired);
    for (const std::string& id : ids) fmt::print("  unrepaired: {}\n", id);
    if (stats.unrepaired > ids.size()) {
      fmt::print("  (and {} more, named in the node's log)\n", stats.unrepaired - ids.size());
    }
  }
  if (stats.unrepaired > 0) {
    fmt::print(stderr,
               "dfs: {} chunk(s) on this node are bad and no peer has a good copy: the files "
               "that use them cannot be read in full\n",
               stats.unrepaired);
  }
  return stats.bad == stats.repaired ? 0 : 1;
}

int CmdRepair(const Globals& g, bool json) {
  std::filesystem::path dir = DataDir(g);
  Result<std::uint64_t> total = ChunksForProgress(dir);
  if (!total.ok()) return Fail(total.status());
  Result<nlohmann::json> result = nlohmann::json::object();
  {
    Progress progress("repair", *total, Progress::Unit::kChunks);
    result = RepairThroughNode(dir, [&](std::uint64_t checked) { progress.Update(checked); });
    if (result.ok()) progress.Update(result->value("last_checked", std::uint64_t{0}));
  }
  if (!result.ok()) return Fail(result.status());
  const nlohmann::json& r = *result;
  const std::uint64_t failed = r.value("last_failed", std::uint64_t{0});
  if (json) {
    fmt::print("{}\n", r.dump(2));
  } else {
    fmt::print("checked {} chunks: {} lacked a copy on a holder, {} copies made, {} failed\n",
               r.value("last_checked", std::uint64_t{0}),
               r.value("last_under_replicated", std::uint64_t{0}),
               r.value("last_copies_made", std::uint64_t{0}), failed);
    PrintHolders(r);
  }
  if (failed > 0) {
    fmt::print(stderr, "dfs: {} copies could not be made: some chunks have fewer than R copies\n",
               failed);
  }
  return failed == 0 ? 0 : 1;
}

int CmdGc(const Globals& g, std::optional<std::int64_t> grace_s, bool json) {
  std::filesystem::path dir = DataDir(g);
  Result<std::uint64_t> total = ChunksForProgress(dir);
  if (!total.ok()) return Fail(total.status());
  std::optional<std::chrono::seconds> grace;
  if (grace_s) grace = std::chrono::seconds(*grace_s);
  Result<nlohmann::json> result = nlohmann::json::object();
  {
    Progress progress("gc", *total, Progress::Unit::kChunks);
    result = GcThroughNode(dir, grace, [&](std::uint64_t chunks) { progress.Update(chunks); });
    if (result.ok()) progress.Update(result->value("last_chunks", std::uint64_t{0}));
  }
  if (!result.ok()) return Fail(result.status());
  const nlohmann::json& r = *result;
  if (json) {
    fmt::print("{}\n", r.dump(2));
    return 0;
  }
  auto n = [&](const char* field) { return r.value(field, std::uint64_t{0}); };
  fmt::print("looked at {} chunks: removed {} ({} bytes); kept {} in use, {} stored within the "
             "last {} s, {} that no node could answer for, {} not sealed chunks\n",
             n("last_chunks"), n("last_removed"), n("last_removed_bytes"), n("last_live"),
             n("last_young"), r.value("grace_seconds", std::int64_t{0}), n("last_unanswered"),
             n("last_unknown"));
  for (const auto& note : r.value("last_notes", nlohmann::json::array())) {
    if (note.is_string()) fmt::print("  kept: {}\n", note.get<std::string>());
  }
  return 0;
}

}  // namespace
}  // namespace dfs::cli

int main(int argc, char** argv) {
  using namespace dfs::cli;
  CLI::App app{"dfs: a peer-to-peer, end-to-end encrypted, content-addressed file store"};
  app.require_subcommand(1);
  Globals g;
  app.add_option("--data", g.data_dir, "data directory (default: $XDG_DATA_HOME/dfs)");
  app.add_option("--key", g.key_file,
                 "volume key file (default: $XDG_CONFIG_HOME/dfs/volume.key, created on first use)");

  std::string file, key, path, prefix;
  bool json = false;

  auto* keygen = app.add_subcommand("keygen", "create a new volume key file (mode 0600)");
  keygen->add_option("FILE", file, "where to write the key; never overwritten")->required();

  auto* put = app.add_subcommand("put", "store a file (standard input when no PATH or '-')");
  put->add_option("KEY", key, "the name to store it under, e.g. docs/report.pdf")->required();
  put->add_option("PATH", path, "the file to read");

  auto* get = app.add_subcommand("get", "read a file back (standard output when no PATH or '-')");
  get->add_option("KEY", key, "the stored name")->required();
  get->add_option("PATH", path, "where to write it");

  auto* rm = app.add_subcommand("rm", "remove a key; its chunks are freed when unused");
  rm->add_option("KEY", key, "the stored name")->required();

  auto* has = app.add_subcommand("has", "exit 0 if KEY is stored, 1 if not, 2 on error");
  has->add_option("KEY", key, "the stored name")->required();

  auto* ls = app.add_subcommand("ls", "list keys (size, time stored, key)");
  ls->add_option("PREFIX", prefix, "only keys starting with this");
  ls->add_flag("--json", json, "print a JSON array");

  auto* stat = app.add_subcommand("stat", "size, chunks and stored bytes of a key");
  stat->add_option("KEY", key, "the stored name")->required();
  stat->add_flag("--json", json, "print a JSON object");

  auto* status = app.add_subcommand("status", "ask the running dfsd on --data about itself and its peers");
  status->add_flag("--json", json, "print JSON");
  auto* peers = app.add_subcommand("peers", "the running dfsd's peers: address, alive, last seen");
  peers->add_flag("--json", json, "print a JSON array");
  auto* scrub = app.add_subcommand(
      "scrub", "have the running dfsd verify its chunks and replace bad ones from peers");
  scrub->add_flag("--json", json, "print a JSON object");
  auto* repair = app.add_subcommand(
      "repair", "have the running dfsd give every chunk it holds a copy on each live holder now");
  repair->add_flag("--json", json, "print a JSON object");
  std::optional<std::int64_t> grace;
  auto* gc = app.add_subcommand(
      "gc", "have the running dfsd remove the chunks it holds that no file needs any more");
  gc->add_option("--grace", grace,
                 "keep chunks stored within this many seconds (default: the node's --gc-grace)")
      ->check(CLI::NonNegativeNumber);
  gc->add_flag("--json", json, "print a JSON object");

  CLI11_PARSE(app, argc, argv);

  if (*keygen) return CmdKeygen(file);
  if (*put) return CmdPut(g, key, path);
  if (*get) return CmdGet(g, key, path);
  if (*rm) return CmdRm(g, key);
  if (*has) return CmdHas(g, key);
  if (*ls) return CmdLs(g, prefix, json);
  if (*stat) return CmdStat(g, key, json);
  if (*status) return CmdNode(g, "status", json);
  if (*peers) return CmdNode(g, "peers", json);
  if (*scrub) return CmdScrub(g, json);
  if (*repair) return CmdRepair(g, json);
  if (*gc) return CmdGc(g, grace, json);
  return 1;
}
