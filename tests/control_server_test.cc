// ControlServer and the control protocol (cmd/node/control_protocol.h):
// in-process over a FileServer on a MemoryChunkStore, driven by
// ControlClient and by raw sockets; and `dfs` through a real dfsd.
#include "cmd/node/control_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cmd/node/control_protocol.h"
#include "core/index.h"
#include "core/memory_chunk_store.h"
#include "tests/test_util.h"

namespace dfs::node {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using core::Bytes;
using core::ErrorCode;

// As in dfsd: a client that goes away is an error, never a signal.
const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

core::VolumeKey TestKey() {
  Bytes b(core::VolumeKey::kSize, 7);
  return *core::VolumeKey::FromBytes(b);
}

struct Pipe {
  UniqueFd rd, wr;
};
Pipe MakePipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  return {UniqueFd(p[0]), UniqueFd(p[1])};
}

UniqueFd OpenRead(const fs::path& p) { return UniqueFd(::open(p.c_str(), O_RDONLY | O_CLOEXEC)); }
UniqueFd OpenWrite(const fs::path& p) {
  return UniqueFd(::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
}

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kSigpipeIgnored);
    auto index = core::Index::Open(dir_ / "index.db");
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    core::FileServerOptions options;
    options.chunker = {64 * 1024, 128 * 1024, 512 * 1024};  // many chunks, quickly
    auto files = core::FileServer::Create(std::make_unique<core::MemoryChunkStore>(),
                                          std::move(index).value(), TestKey(), options);
    ASSERT_TRUE(files.ok()) << files.status().ToString();
    files_ = std::move(files).value();
    StartServer(files_.get());
  }
  void TearDown() override { server_.reset(); }

  void StartServer(core::FileServer* files, std::size_t max_clients = 32) {
    server_.reset();
    ControlHandlers h;
    h.files = files;
    h.status_json = [] { return std::string(R"({"node":"abc","peers":[]})"); };
    h.peers_json = [] { return std::string("[]"); };
    auto s = ControlServer::Start(socket_, std::move(h), max_clients);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
  }

  ControlClient Client() {
    auto c = ControlClient::Connect(socket_);
    if (!c.ok()) throw std::runtime_error("connect: " + c.status().ToString());
    return std::move(c).value();
  }

  // A raw connection: sends `bytes` (with `fd` attached) and returns every
  // line the server sends until it closes; "<timeout>" if it does not.
  std::vector<std::string> Raw(std::string_view bytes, int fd = -1) {
    UniqueFd sock = RawConnect();
    EXPECT_TRUE(SendLine(sock.get(), bytes, fd).ok());
    return ReadAll(sock.get());
  }
  UniqueFd RawConnect() {
    UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr = *UnixAddress(socket_);
    EXPECT_EQ(::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return sock;
  }
  // A raw connection that has sent `request` with `fd` attached.
  UniqueFd Ask(const nlohmann::json& request, int fd) {
    UniqueFd sock = RawConnect();
    EXPECT_TRUE(SendLine(sock.get(), JsonLine(request), fd).ok());
    return sock;
  }
  static std::vector<std::string> ReadAll(int sock) {
    LineReader reader(sock, kMaxAnswerLine);
    std::vector<std::string> lines;
    for (;;) {
      auto line = reader.ReadLine(10s);
      if (!line.ok()) {
        if (line.status().message().find("nothing came") != std::string::npos) {
          lines.push_back("<timeout>");
        }
        return lines;
      }
      lines.push_back(*line);
    }
  }
  static nlohmann::json Json(const std::string& line) { return nlohmann::json::parse(line); }

  // Waits until `n` clients are connected; false after `limit`.
  bool WaitActive(std::size_t n, std::chrono::milliseconds limit = 5s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (server_->active_clients() != n) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }
  bool WaitIdle() { return WaitActive(0); }

  core::Status StoreDirect(const std::string& key, const Bytes& data) {
    core::MemoryReader r(data);
    return files_->Store(key, r);
  }
  core::Status PutFile(const std::string& key, const Bytes& data,
                       const core::ProgressFn& progress = {}) {
    fs::path src = dir_ / "put.src";
    testing::WriteFile(src, data);
    UniqueFd fd = OpenRead(src);
    return Client().Put(key, fd.get(), src.string(), progress);
  }
  core::Result<Bytes> GetFile(const std::string& key, const core::ProgressFn& progress = {}) {
    fs::path dst = dir_ / "get.dst";
    UniqueFd fd = OpenWrite(dst);
    DFS_RETURN_IF_ERROR(Client().Get(key, fd.get(), dst.string(), progress));
    return testing::ReadFile(dst);
  }

  testing::TempDir dir_;
  fs::path socket_ = dir_ / "control.sock";
  std::unique_ptr<core::FileServer> files_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServerTest, PutAndGetSeveralMiBThroughPassedFds) {
  Bytes data = testing::RandomBytes((6 << 20) + 123, 1);
  std::vector<std::uint64_t> seen;
  auto start = std::chrono::steady_clock::now();
  core::Status put = PutFile("docs/big.bin", data, [&](std::uint64_t n) { seen.push_back(n); });
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(put.ok()) << put.ToString();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), data.size()) << "the final answer reports every byte";
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  // At most one progress line per 200 ms (plus the final size).
  EXPECT_LE(seen.size(), static_cast<std::size_t>(elapsed / 200ms) + 2) << seen.size();

  auto stat = files_->Stat("docs/big.bin");
  ASSERT_TRUE(stat.ok()) << stat.status().ToString();
  EXPECT_EQ(stat->size, data.size());

  seen.clear();
  auto back = GetFile("docs/big.bin", [&](std::uint64_t n) { seen.push_back(n); });
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == data) << "bytes differ after a round trip";
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), data.size());
  EXPECT_TRUE(WaitIdle());
}

TEST_F(ControlServerTest, GetIntoAPipeAndPutFromAPipe) {
  Bytes data = testing::RandomBytes(3 << 20, 2);
  auto [rd, wr] = MakePipe();
  // Writer thread feeds the pipe while the server reads it.
  std::thread feeder([&] {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n =
          ::write(wr.get(), data.data() + off, std::min<std::size_t>(data.size() - off, 100000));
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    wr.Reset();
  });
  {
    ControlClient c = Client();
    core::Status s = c.Put("piped", rd.get(), "standard input");
    feeder.join();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  Pipe back = MakePipe();
  rd = std::move(back.rd);
  wr = std::move(back.wr);
  Bytes out;
  std::thread drain([&] {
    char buf[65536];
    ssize_t n;
    while ((n = ::read(rd.get(), buf, sizeof(buf))) > 0) out.insert(out.end(), buf, buf + n);
  });
  core::Status s = Client().Get("piped", wr.get(), "standard output");
  wr.Reset();  // the server closed its copy before answering: the drain ends
  drain.join();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(out == data) << out.size() << " bytes came back of " << data.size();
}

TEST_F(ControlServerTest, ListStreamsKeysWithAPrefix) {
  constexpr int kKeys = 600;  // more than one index batch (256)
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(
        StoreDirect(fmt::format("many/{:04}", i), Bytes(static_cast<std::size_t>(i), 1)).ok());
  }
  ASSERT_TRUE(StoreDirect("other/x", Bytes(10, 2)).ok());

  std::vector<core::FileInfo> got;
  core::Status s = Client().List("many/", [&](const core::FileInfo& f) {
    got.push_back(f);
    return true;
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kKeys));
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_EQ(got[static_cast<std::size_t>(i)].key, fmt::format("many/{:04}", i));
    EXPECT_EQ(got[static_cast<std::size_t>(i)].size, static_cast<std::uint64_t>(i));
  }
  EXPECT_GT(got.back().mtime_ns, 0);

  int all = 0, none = 0, some = 0;
  ASSERT_TRUE(Client().List("", [&](const core::FileInfo&) { return ++all, true; }).ok());
  EXPECT_EQ(all, kKeys + 1);
  ASSERT_TRUE(Client().List("nothing/", [&](const core::FileInfo&) { return ++none, true; }).ok());
  EXPECT_EQ(none, 0);
  // Stopping early closes the connection; the server stops listing.
  ASSERT_TRUE(Client().List("many/", [&](const core::FileInfo&) { return ++some < 5; }).ok());
  EXPECT_EQ(some, 5);
  EXPECT_TRUE(WaitIdle());

  // On the wire: one item line per key, then the final line.
  auto lines = Raw(R"({"op":"ls","prefix":"other/"})"
                   "\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(Json(lines[0])["item"]["key"], "other/x");
  EXPECT_EQ(Json(lines[0])["item"]["size"], 10);
  EXPECT_EQ(Json(lines[1]), nlohmann::json({{"ok", true}}));
}

TEST_F(ControlServerTest, StatHasAndRm) {
  Bytes data = testing::RandomBytes(300000, 3);
  ASSERT_TRUE(StoreDirect("a/b", data).ok());
  auto local = files_->Stat("a/b");
  ASSERT_TRUE(local.ok());

  auto st = Client().Stat("a/b");
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->key, "a/b");
  EXPECT_EQ(st->size, data.size());
  EXPECT_EQ(st->chunks, local->chunks);
  EXPECT_GE(st->chunks, 2u);
  EXPECT_EQ(st->stored_bytes, local->stored_bytes);
  EXPECT_GT(st->stored_bytes, data.size());
  EXPECT_EQ(st->mtime_ns, local->mtime_ns);

  auto has = Client().Has("a/b");
  ASSERT_TRUE(has.ok()) << has.status().ToString();
  EXPECT_TRUE(*has);
  has = Client().Has("a/c");
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);

  ASSERT_TRUE(Client().Delete("a/b").ok());
  has = Client().Has("a/b");
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);
  EXPECT_FALSE(*files_->Has("a/b"));
  core::Status again = Client().Delete("a/b");
  EXPECT_EQ(again.code(), ErrorCode::kNotFound);
  EXPECT_NE(again.message().find("no such key"), std::string::npos) << again.ToString();
}

TEST_F(ControlServerTest, ErrorsKeepTheirCode) {
  auto got = GetFile("nope");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(got.status().message().find("no such key: nope"), std::string::npos)
      << got.status().ToString();
  EXPECT_EQ(fs::file_size(dir_ / "get.dst"), 0u);
  EXPECT_EQ(Client().Stat("nope").status().code(), ErrorCode::kNotFound);

  // Bad keys: the client refuses what the FileServer would, and so does the
  // server when a request bypasses the client.
  core::Status bad = Client().Delete("../x");
  EXPECT_EQ(bad.code(), ErrorCode::kInvalidArgument);
  auto lines = Raw(R"({"op":"has","key":"../x"})"
                   "\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(Json(lines[0])["code"], "invalid_argument");
  EXPECT_EQ(StatusFromAnswer(Json(lines[0])).ToString(), bad.ToString());

  // Every code survives the wire.
  for (ErrorCode c : {ErrorCode::kNotFound, ErrorCode::kExists, ErrorCode::kCorrupt,
                      ErrorCode::kWrongKey, ErrorCode::kUnavailable, ErrorCode::kInvalidArgument,
                      ErrorCode::kNoSpace, ErrorCode::kIo, ErrorCode::kPermission}) {
    core::Status s(c, "why");
    EXPECT_EQ(StatusFromAnswer(Json(ErrorLine(s))).ToString(), s.ToString());
  }
  EXPECT_EQ(Json(ErrorLine(core::Status::NotFound("x")))["code"], "not_found");
}

TEST_F(ControlServerTest, MalformedRequestsAreAnsweredAndTheServerGoesOn) {
  struct Case {
    std::string bytes;
    std::string error;
  };
  std::vector<Case> cases = {
      {"this is not json\n", "malformed request"},
      {"[1,2]\n", "malformed request"},
      {R"({"op":"dance"})"
       "\n",
       "unknown request"},
      {R"({"op":"get"})"
       "\n",
       "no \"key\""},
      {R"({"op":"has","key":7})"
       "\n",
       "not a string"},
      {R"({"v":2,"op":"ls"})"
       "\n",
       "version 2"},
      {R"({"op":"put","key":"k"})"
       "\n",
       "file descriptor"},
      {std::string(70000, 'x') + "\n", "longer than 65536 bytes"},
  };
  for (const Case& c : cases) {
    auto lines = Raw(c.bytes);
    ASSERT_EQ(lines.size(), 1u) << c.bytes.substr(0, 40) << ": the answer is one line, then close";
    nlohmann::json j = Json(lines[0]);
    EXPECT_EQ(j["ok"], false);
    EXPECT_EQ(j["code"], "invalid_argument") << lines[0];
    EXPECT_NE(j["error"].get<std::string>().find(c.error), std::string::npos) << lines[0];
  }
  // A get whose fd is open for reading only.
  fs::path f = dir_ / "ro";
  testing::WriteFile(f, Bytes(1, 1));
  ASSERT_TRUE(StoreDirect("k", Bytes(5, 5)).ok());
  UniqueFd ro = OpenRead(f);
  auto lines = Raw(R"({"op":"get","key":"k"})"
                   "\n",
                   ro.get());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("without write access"), std::string::npos) << lines[0];

  EXPECT_TRUE(WaitIdle());
  auto has = Client().Has("k");
  ASSERT_TRUE(has.ok()) << has.status().ToString();
  EXPECT_TRUE(*has);
}

TEST_F(ControlServerTest, AKeylessNodeSaysItHasNoVolumeKey) {
  StartServer(nullptr);
  fs::path src = dir_ / "src";
  testing::WriteFile(src, Bytes(100, 1));
  UniqueFd fd = OpenRead(src);
  std::vector<core::Status> errors = {
      Client().Put("k", fd.get(), src.string()),
      Client().Has("k").status(),
      Client().Stat("k").status(),
      Client().Delete("k"),
      Client().List("", [](const core::FileInfo&) { return true; }),
  };
  for (const core::Status& s : errors) {
    EXPECT_EQ(s.code(), ErrorCode::kUnavailable) << s.ToString();
    EXPECT_NE(s.message().find("no volume key"), std::string::npos) << s.ToString();
  }
  auto status = Client().Query("status");
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ((*status)["node"], "abc");
}

TEST_F(ControlServerTest, StatusAndPeersAnswerTheHandlersJson) {
  auto status = Client().Query("status");
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(*status, nlohmann::json::parse(R"({"node":"abc","peers":[]})"));
  auto peers = Client().Query("peers");
  ASSERT_TRUE(peers.ok());
  EXPECT_TRUE(peers->is_array());

  server_.reset();
  auto s = ControlServer::Start(socket_, ControlHandlers{files_.get(), {}, {}, {}, {}, {}, {}});
  ASSERT_TRUE(s.ok());
  server_ = std::move(s).value();
  EXPECT_EQ(Client().Query("status").status().code(), ErrorCode::kUnavailable);
}

// scrub: the handler's progress reaches the client as rate-limited
// {"progress":N,"bad":B} lines, then its counts come in the final line; a
// server without the handler refuses.
TEST_F(ControlServerTest, ScrubStreamsProgressThenItsCounts) {
  auto refused = Client().Scrub();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("does not scrub"), std::string::npos)
      << refused.status().ToString();

  const core::ChunkId lost = testing::TestChunkId(7);
  std::atomic<int> calls{0};
  ControlHandlers h;
  h.files = files_.get();
  h.scrub = [&](const std::function<void(std::uint64_t, std::uint64_t)>& progress) {
    ++calls;
    core::ScrubStats stats;
    for (std::uint64_t i = 1; i <= 10; ++i) {  // 1.5 s: several progress lines
      std::this_thread::sleep_for(150ms);
      stats.checked = i * 64;
      stats.bad = i >= 5 ? 2 : 0;
      progress(stats.checked, stats.bad);
    }
    stats.repaired = 1;
    stats.unrepaired = 1;
    stats.unrepaired_ids = {lost};
    return stats;
  };
  server_.reset();
  auto started = ControlServer::Start(socket_, std::move(h));
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  server_ = std::move(started).value();

  std::vector<std::pair<std::uint64_t, std::uint64_t>> seen;
  auto start = std::chrono::steady_clock::now();
  auto stats = Client().Scrub(
      [&](std::uint64_t checked, std::uint64_t bad) { seen.emplace_back(checked, bad); });
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->checked, 640u);
  EXPECT_EQ(stats->bad, 2u);
  EXPECT_EQ(stats->repaired, 1u);
  EXPECT_EQ(stats->unrepaired, 1u);
  ASSERT_EQ(stats->unrepaired_ids.size(), 1u);
  EXPECT_EQ(stats->unrepaired_ids[0], lost);
  ASSERT_GE(seen.size(), 3u) << "progress lines arrive while the scrub runs";
  EXPECT_LE(seen.size(), static_cast<std::size_t>(elapsed / 200ms) + 1) << seen.size();
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_LE(seen.back().first, 640u);
  EXPECT_EQ(seen.back().second, 2u) << "the later lines carry the bad chunks found";

  // On the wire: progress lines of exactly two counts, then the final line.
  auto lines = Raw(R"({"op":"scrub"})"
                   "\n");
  ASSERT_GE(lines.size(), 2u);
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
    nlohmann::json j = Json(lines[i]);
    EXPECT_EQ(j.size(), 2u) << lines[i];
    EXPECT_TRUE(j["progress"].is_number_unsigned()) << lines[i];
    EXPECT_TRUE(j["bad"].is_number_unsigned()) << lines[i];
  }
  EXPECT_EQ(Json(lines.back()), nlohmann::json({{"ok", true},
                                                {"checked", 640},
                                                {"bad", 2},
                                                {"repaired", 1},
                                                {"unrepaired", 1},
                                                {"unrepaired_ids", {lost.ToHex()}}}));
  EXPECT_EQ(calls.load(), 2);
  EXPECT_TRUE(WaitIdle());
  server_.reset();  // the handler refers to this test's locals
}

// The client goes away before its pipe ends: what came through the pipe is
// not committed. With the client still there, the same put is.
TEST_F(ControlServerTest, APipedPutIsNotCommittedWhenItsClientIsGone) {
  Bytes data = testing::RandomBytes(200000, 4);
  auto piped_put = [&](const std::string& key,
                       bool client_leaves_first) -> std::vector<std::string> {
    auto [rd, wr] = MakePipe();
    UniqueFd sock = Ask({{"op", "put"}, {"key", key}}, rd.get());
    rd.Reset();
    EXPECT_EQ(::write(wr.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
    if (client_leaves_first) {
      sock.Reset();
      wr.Reset();
      return {};
    }
    wr.Reset();
    return ReadAll(sock.get());
  };

  EXPECT_TRUE(piped_put("gone", true).empty());
  ASSERT_TRUE(WaitIdle());
  EXPECT_FALSE(*files_->Has("gone")) << "a put whose client went away was committed";

  auto lines = piped_put("stayed", false);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(Json(lines.back())["ok"], true) << lines.back();
  auto st = files_->Stat("stayed");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->size, data.size());
}

// A client that leaves while its pipe stays open and silent ends its put at
// once; a get into a pipe nobody reads ends when its client leaves.
TEST_F(ControlServerTest, ABlockedRequestEndsWhenItsClientLeaves) {
  auto [rd, wr] = MakePipe();
  {
    UniqueFd sock = Ask({{"op", "put"}, {"key", "silent"}}, rd.get());
    ASSERT_EQ(::write(wr.get(), "some", 4), 4);
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(server_->active_clients(), 1u);
  }
  EXPECT_TRUE(WaitIdle()) << "the put still waits on a pipe whose client left";
  EXPECT_FALSE(*files_->Has("silent"));

  ASSERT_TRUE(StoreDirect("big", testing::RandomBytes(4 << 20, 5)).ok());
  {
    UniqueFd sock = Ask({{"op", "get"}, {"key", "big"}}, wr.get());
    std::this_thread::sleep_for(200ms);  // the pipe fills; nobody reads it
    EXPECT_EQ(server_->active_clients(), 1u);
  }
  EXPECT_TRUE(WaitIdle()) << "the get still waits on a pipe whose client left";
}

TEST_F(ControlServerTest, StoppingEndsRequestsInProgress) {
  auto [rd, wr] = MakePipe();
  UniqueFd sock = Ask({{"op", "put"}, {"key", "k"}}, rd.get());
  ASSERT_TRUE(WaitActive(1));
  auto start = std::chrono::steady_clock::now();
  server_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_FALSE(fs::exists(socket_)) << "the socket file is removed";
  EXPECT_FALSE(*files_->Has("k"));
  auto lines = ReadAll(sock.get());
  EXPECT_TRUE(lines.empty() || Json(lines.back())["ok"] == false);
  EXPECT_EQ(ControlClient::Connect(socket_).status().code(), ErrorCode::kUnavailable);
}

TEST_F(ControlServerTest, ManyConcurrentClients) {
  constexpr int kClients = 12;
  std::atomic<int> good{0};
  std::vector<std::string> failures(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      std::string key = fmt::format("c/{}", i);
      Bytes data = testing::RandomBytes(200000 + static_cast<std::size_t>(i) * 50000,
                                        static_cast<std::uint64_t>(100 + i));
      fs::path src = dir_ / fmt::format("src{}", i), dst = dir_ / fmt::format("dst{}", i);
      testing::WriteFile(src, data);
      UniqueFd in = OpenRead(src);
      auto c = ControlClient::Connect(socket_);
      core::Status s = c.ok() ? c->Put(key, in.get(), src.string()) : c.status();
      if (s.ok()) {
        UniqueFd out = OpenWrite(dst);
        auto g = ControlClient::Connect(socket_);
        s = g.ok() ? g->Get(key, out.get(), dst.string()) : g.status();
      }
      auto h = ControlClient::Connect(socket_);
      auto has = h.ok() ? h->Has(key) : core::Result<bool>(h.status());
      if (!s.ok()) {
        failures[static_cast<std::size_t>(i)] = s.ToString();
      } else if (testing::ReadFile(dst) != data) {
        failures[static_cast<std::size_t>(i)] = "bytes differ";
      } else if (!has.ok() || !*has) {
        failures[static_cast<std::size_t>(i)] = "has is not true";
      } else {
        ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const std::string& f : failures) EXPECT_EQ(f, "");
  EXPECT_EQ(good.load(), kClients);
  int listed = 0;
  ASSERT_TRUE(Client().List("c/", [&](const core::FileInfo&) { return ++listed, true; }).ok());
  EXPECT_EQ(listed, kClients);
  EXPECT_TRUE(WaitIdle());
}

TEST_F(ControlServerTest, ClientsBeyondTheLimitAreTurnedAway) {
  StartServer(files_.get(), 2);
  UniqueFd a = RawConnect(), b = RawConnect();  // connected, not yet asking
  ASSERT_TRUE(WaitActive(2));
  auto refused = Client().Has("k");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("busy"), std::string::npos)
      << refused.status().ToString();
  a.Reset();
  b.Reset();
  ASSERT_TRUE(WaitIdle());
  auto has = Client().Has("k");
  EXPECT_TRUE(has.ok()) << has.status().ToString();
}

TEST_F(ControlServerTest, StartReplacesAStaleSocketOnly) {
  struct stat st {};
  ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // A live server is not replaced.
  auto second = ControlServer::Start(socket_, ControlHandlers{files_.get(), {}, {}, {}, {}, {}, {}});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), ErrorCode::kUnavailable);
  EXPECT_TRUE(Client().Has("x").ok()) << "the first server still serves";

  // A socket left by a dead server is.
  server_.reset();
  {
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr = *UnixAddress(socket_);
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  ASSERT_TRUE(fs::exists(socket_));
  EXPECT_EQ(ControlClient::Connect(socket_).status().code(), ErrorCode::kUnavailable);
  StartServer(files_.get());
  EXPECT_TRUE(Client().Has("x").ok());

  // Anything else is left alone.
  server_.reset();
  testing::WriteFile(socket_, Bytes(3, 3));
  auto over_file = ControlServer::Start(socket_, ControlHandlers{files_.get(), {}, {}, {}, {}, {}, {}});
  ASSERT_FALSE(over_file.ok());
  EXPECT_EQ(over_file.status().code(), ErrorCode::kExists);
  EXPECT_EQ(fs::file_size(socket_), 3u);
}

// `dfs` through a real dfsd: the node holds the data directory, and every
// file command goes through its control socket, without --key.
TEST(ControlThroughDfsdTest, DfsCommandsGoThroughARunningNode) {
  testing::TempDir dir;
  auto dfs = [&](std::vector<std::string> args, const std::string& stdin_path = "") {
    args.insert(args.begin(), testing::BinPath("dfs"));
    return testing::Run(args, stdin_path);
  };
  std::string nk = (dir / "net.key").string(), vk = (dir / "volume.key").string();
  std::string data = (dir / "data").string();
  ASSERT_EQ(dfs({"keygen", nk}).exit_code, 0);
  ASSERT_EQ(dfs({"keygen", vk}).exit_code, 0);
  int pid = testing::Spawn({testing::BinPath("dfsd"), "--data", data, "--listen", "127.0.0.1:0",
                            "--network-key", nk, "--key", vk, "--replicas", "1"},
                           (dir / "dfsd.log").string());
  fs::path sock = fs::path(data) / "control.sock";
  for (int i = 0; i < 200 && !fs::exists(sock); ++i) std::this_thread::sleep_for(50ms);
  struct Stopper {
    int pid;
    ~Stopper() {
      if (pid > 0) testing::Stop(pid, SIGKILL);
    }
  } stopper{pid};
  ASSERT_TRUE(fs::exists(sock)) << "dfsd did not start";

  fs::path in = dir / "in.bin", out = dir / "out.bin";
  Bytes content = testing::RandomBytes((3 << 20) + 5, 9);
  testing::WriteFile(in, content);
  // No --key: the node has it. The key a user passes anyway is ignored.
  auto r = dfs({"--data", data, "put", "docs/in.bin", in.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  r = dfs({"--data", data, "--key", (dir / "no-such.key").string(), "get", "docs/in.bin",
           out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(testing::ReadFile(out) == content);
  EXPECT_FALSE(fs::exists(out.string() + ".dfs-partial"));

  r = dfs({"--data", data, "put", "piped"}, in.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = dfs({"--data", data, "get", "piped"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out == std::string(content.begin(), content.end()));

  r = dfs({"--data", data, "ls", "--json", "docs/"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u) << r.out;
  EXPECT_EQ(j[0]["key"], "docs/in.bin");
  EXPECT_EQ(j[0]["size"], content.size());
  r = dfs({"--data", data, "ls"});
  EXPECT_NE(r.out.find("piped"), std::string::npos) << r.out;

  r = dfs({"--data", data, "stat", "--json", "docs/in.bin"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["size"], content.size());
  EXPECT_GT(j["stored_bytes"].get<std::uint64_t>(), content.size());

  EXPECT_EQ(dfs({"--data", data, "has", "docs/in.bin"}).exit_code, 0);
  EXPECT_EQ(dfs({"--data", data, "has", "docs/nope"}).exit_code, 1);
  EXPECT_EQ(dfs({"--data", data, "has", "../x"}).exit_code, 2);
  ASSERT_EQ(dfs({"--data", data, "rm", "docs/in.bin"}).exit_code, 0);
  EXPECT_EQ(dfs({"--data", data, "has", "docs/in.bin"}).exit_code, 1);
  r = dfs({"--data", data, "get", "docs/in.bin", out.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "dfs: not found: no such key: docs/in.bin\n");

  EXPECT_FALSE(fs::exists(out.string() + ".dfs-partial"));

  r = dfs({"--data", data, "status", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(nlohmann::json::parse(r.out)["keyless"].get<bool>());

  // Through the node and run here, every command prints the same bytes and
  // exits the same way.
  ASSERT_EQ(dfs({"--data", data, "put", "docs/again", in.string()}).exit_code, 0);
  std::vector<std::vector<std::string>> commands = {
      {"ls"},
      {"ls", "--json"},
      {"ls", "docs/"},
      {"ls", "--json", "none/"},
      {"stat", "piped"},
      {"stat", "--json", "docs/again"},
      {"stat", "nope"},
      {"has", "piped"},
      {"has", "nope"},
      {"has", "a//b"},
      {"get", "nope", out.string()},
      {"get", "piped"},
      {"rm", "nope"},
      {"put", "../x", in.string()},
  };
  std::vector<testing::RunResult> through_node;
  for (const auto& c : commands) {
    std::vector<std::string> args = {"--data", data};
    args.insert(args.end(), c.begin(), c.end());
    through_node.push_back(dfs(args));
  }

  EXPECT_NE(through_node[0].out.find("docs/again"), std::string::npos) << through_node[0].out;
  EXPECT_EQ(through_node[11].out.size(), content.size());

  // Stopped, the node leaves the directory to dfs itself (with the key).
  EXPECT_EQ(testing::Stop(pid, SIGTERM), 0);
  stopper.pid = -1;
  EXPECT_FALSE(fs::exists(sock));
  for (std::size_t i = 0; i < commands.size(); ++i) {
    std::vector<std::string> args = {"--data", data, "--key", vk};
    args.insert(args.end(), commands[i].begin(), commands[i].end());
    testing::RunResult here = dfs(args);
    std::string what = commands[i][0] + " " + commands[i].back();
    EXPECT_EQ(through_node[i].exit_code, here.exit_code) << what;
    EXPECT_TRUE(through_node[i].out == here.out) << what << ":\n"
                                                 << through_node[i].out.substr(0, 300) << "\nvs\n"
                                                 << here.out.substr(0, 300);
    EXPECT_EQ(through_node[i].err, here.err) << what;
  }
  r = dfs({"--data", data, "--key", vk, "get", "piped", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(testing::ReadFile(out) == content);
}

}  // namespace
}  // namespace dfs::node
