// --metrics over HTTP: the server in process (status codes, limits, slow
// and surplus clients, stop), then a real dfsd (a put counted, bytes held,
// resident memory, peers; hostile requests answered or closed while it keeps
// serving) and a real dfsmount (FUSE calls counted by op). Clients are raw
// sockets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "net/metrics_http.h"
#include "tests/test_util.h"

namespace dfs {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::WaitFor;

// A connected TCP socket to 127.0.0.1:port (-1 on failure), reads timing out after `timeout`.
int Connect(int port, std::chrono::milliseconds timeout = 10s) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void SendAll(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close early (limits): what it said is read next
    done += static_cast<std::size_t>(n);
  }
}

struct Received {
  std::string bytes;
  bool closed = false;  // the server closed (or reset) the connection; false: timed out
};

// Reads until the server closes or the socket's read timeout passes.
Received ReadToClose(int fd) {
  Received r;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      r.bytes.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    r.closed = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    return r;
  }
}

// Sends `request` on a new connection and returns everything until the close.
Received Exchange(int port, const std::string& request) {
  int fd = Connect(port);
  if (fd < 0) return {};
  SendAll(fd, request);
  Received r = ReadToClose(fd);
  ::close(fd);
  return r;
}

std::string Get(const std::string& target) {
  return "GET " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
}

// Every sample line of a text exposition: series ("name{labels}") -> value.
std::map<std::string, double> Samples(const std::string& body) {
  std::map<std::string, double> out;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::size_t space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

// GET /metrics: the samples, empty unless the answer was 200.
std::map<std::string, double> Scrape(int port) {
  Received r = Exchange(port, Get("/metrics"));
  if (r.bytes.rfind("HTTP/1.1 200 OK\r\n", 0) != 0) return {};
  std::size_t body = r.bytes.find("\r\n\r\n");
  return Samples(r.bytes.substr(body + 4));
}

class MetricsHttpTest : public ::testing::Test {
 protected:
  void Start(net::MetricsHttpOptions options = {}) {
    auto s = net::MetricsHttpServer::Start("127.0.0.1", 0, [this] {
      ++scrapes_;
      return std::string("# HELP dfs_up Up.\n# TYPE dfs_up gauge\ndfs_up 1\n");
    }, options);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }
  std::atomic<int> scrapes_{0};
  std::unique_ptr<net::MetricsHttpServer> server_;
  int port_ = 0;
};

TEST_F(MetricsHttpTest, GetMetricsOtherPathsAndMethods) {
  Start();
  Received ok = Exchange(port_, Get("/metrics"));
  EXPECT_TRUE(ok.closed);
  EXPECT_EQ(ok.bytes.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << ok.bytes;
  EXPECT_NE(ok.bytes.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            std::string::npos) << ok.bytes;
  EXPECT_NE(ok.bytes.find("\r\n\r\n# HELP dfs_up Up.\n# TYPE dfs_up gauge\ndfs_up 1\n"),
            std::string::npos) << ok.bytes;
  EXPECT_EQ(Scrape(port_)["dfs_up"], 1);
  EXPECT_EQ(Exchange(port_, Get("/metrics?x=1")).bytes.rfind("HTTP/1.1 200", 0), 0u);

  EXPECT_EQ(Exchange(port_, Get("/")).bytes.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u);
  EXPECT_EQ(Exchange(port_, Get("/metricsx")).bytes.rfind("HTTP/1.1 404", 0), 0u);
  Received post = Exchange(port_, "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                                  "Connection: close\r\n\r\nhi");
  EXPECT_EQ(post.bytes.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0), 0u) << post.bytes;
  EXPECT_NE(post.bytes.find("Allow: GET\r\n"), std::string::npos);
  int before = scrapes_;
  EXPECT_EQ(Exchange(port_, "HEAD /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .bytes.rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_EQ(scrapes_, before) << "only GET /metrics renders";
}

TEST_F(MetricsHttpTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  Start();
  std::string two = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n" + Get("/metrics");
  Received r = Exchange(port_, two);
  EXPECT_TRUE(r.closed);
  std::size_t first = r.bytes.find("HTTP/1.1 200 OK");
  ASSERT_NE(first, std::string::npos);
  EXPECT_NE(r.bytes.find("HTTP/1.1 200 OK", first + 1), std::string::npos) << r.bytes;
}

TEST_F(MetricsHttpTest, GarbageOversizedHeadersAndBodiesAreRefused) {
  Start();
  Received garbage = Exchange(port_, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) +
                                         "\r\n\r\n");
  EXPECT_TRUE(garbage.closed);
  EXPECT_EQ(garbage.bytes.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << garbage.bytes;

  // A header block past 8 KiB, never finished.
  Received big = Exchange(port_, "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(9000, 'a'));
  EXPECT_TRUE(big.closed);
  EXPECT_EQ(big.bytes.rfind("HTTP/1.1 431", 0), 0u) << big.bytes;

  Received body = Exchange(port_, "GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" +
                                      std::string(2000, 'b'));
  EXPECT_TRUE(body.closed);
  EXPECT_EQ(body.bytes.rfind("HTTP/1.1 413", 0), 0u) << body.bytes;
  EXPECT_EQ(Scrape(port_)["dfs_up"], 1);
}

TEST_F(MetricsHttpTest, ASlowClientTimesOutWithoutHoldingOthersUp) {
  net::MetricsHttpOptions options;
  options.read_timeout = 2s;
  Start(options);
  int slow = Connect(port_);
  ASSERT_GE(slow, 0);
  SendAll(slow, "GET /metr");  // and then nothing
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Scrape(port_)["dfs_up"], 1);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms) << "served while the slow one waits";
  Received r = ReadToClose(slow);
  ::close(slow);
  EXPECT_TRUE(r.closed) << "closed by the server's read timeout";
  EXPECT_TRUE(r.bytes.empty()) << r.bytes;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 1500ms) << "not before the timeout";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
}

TEST_F(MetricsHttpTest, ConnectionsPastTheLimitAreClosed) {
  net::MetricsHttpOptions options;
  options.max_connections = 2;
  Start(options);
  int a = Connect(port_), b = Connect(port_);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  // Both are sessions once a third one is turned away.
  ASSERT_TRUE(WaitFor([&] {
    int c = Connect(port_, 2s);
    Received r = ReadToClose(c);
    ::close(c);
    return r.closed && r.bytes.empty();
  }, 10s));
  ::close(a);
  ::close(b);
  ASSERT_TRUE(WaitFor([&] { return Scrape(port_)["dfs_up"] == 1; }, 10s));
}

TEST_F(MetricsHttpTest, StopClosesIdleConnectionsPromptly) {
  Start();
  int idle = Connect(port_);
  ASSERT_GE(idle, 0);
  SendAll(idle, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");  // kept alive afterwards
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return scrapes_ == 1; }));
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  Received r = ReadToClose(idle);
  ::close(idle);
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.bytes.rfind("HTTP/1.1 200 OK", 0), 0u);
  EXPECT_LT(Connect(port_, 1s), 0) << "no longer listening";
}

TEST(MetricsHttpStartTest, BadAddressesAndBusyPortsAreErrors) {
  auto bad = net::MetricsHttpServer::Start("not-an-address", 0, [] { return std::string(); });
  EXPECT_FALSE(bad.ok());
  auto first = net::MetricsHttpServer::Start("127.0.0.1", 0, [] { return std::string(); });
  ASSERT_TRUE(first.ok());
  auto second = net::MetricsHttpServer::Start("127.0.0.1", (*first)->port(), [] { return std::string(); });
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().ToString().find("cannot serve metrics"), std::string::npos);
}

// Real processes: dfsd and dfsmount with --metrics 127.0.0.1:0; the port
// they bound is in `dfs status --json` ("metrics") and in their log.
class MetricsNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(Dfs({"keygen", (dir_ / "net.key").string()}).exit_code, 0);
    ASSERT_EQ(Dfs({"keygen", (dir_ / "volume.key").string()}).exit_code, 0);
  }
  void TearDown() override {
    for (int pid : pids_) testing::Stop(pid, SIGKILL);
  }
  testing::RunResult Dfs(std::vector<std::string> args) {
    args.insert(args.begin(), testing::BinPath("dfs"));
    return testing::Run(args);
  }
  std::vector<std::string> NodeArgs(const std::string& name) {
    return {"--data", Data(name), "--listen", "127.0.0.1:0", "--network-key",
            (dir_ / "net.key").string(), "--key", (dir_ / "volume.key").string(),
            "--metrics", "127.0.0.1:0"};
  }
  int Spawn(std::vector<std::string> argv, const std::string& name) {
    int pid = testing::Spawn(argv, Log(name));
    pids_.push_back(pid);
    return pid;
  }
  // The node's metrics port, once its control socket answers.
  int MetricsPort(const std::string& name) {
    int port = 0;
    WaitFor([&] {
      auto r = Dfs({"--data", Data(name), "status", "--json"});
      if (r.exit_code != 0) return false;
      auto j = nlohmann::json::parse(r.out);
      if (!j.contains("metrics")) return false;
      std::string a = j["metrics"];
      port = std::stoi(a.substr(a.rfind(':') + 1));
      listen_[name] = j["listen"];
      return true;
    });
    return port;
  }
  std::string Data(const std::string& name) { return (dir_ / name).string(); }
  std::string Log(const std::string& name) { return (dir_ / (name + ".log")).string(); }

  testing::TempDir dir_;
  std::vector<int> pids_;
  std::map<std::string, std::string> listen_;
};

TEST_F(MetricsNodeTest, DfsdCountsAPutAndSurvivesHostileClients) {
  std::vector<std::string> argv = NodeArgs("a");
  argv.insert(argv.begin(), testing::BinPath("dfsd"));
  Spawn(argv, "a");
  int port = MetricsPort("a");
  ASSERT_NE(port, 0) << testing::Slurp(Log("a"));
  EXPECT_NE(testing::Slurp(Log("a")).find(fmt::format("metrics on http://127.0.0.1:{}/metrics", port)),
            std::string::npos);

  auto before = Scrape(port);
  ASSERT_FALSE(before.empty());
  EXPECT_EQ(before["dfs_file_ops_total{op=\"store\"}"], 0);
  EXPECT_EQ(before["dfs_store_bytes"], 0);

  testing::WriteFile(dir_ / "in", testing::RandomBytes(3 << 20, 5));
  auto put = Dfs({"--data", Data("a"), "put", "docs/in.bin", (dir_ / "in").string()});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  ASSERT_EQ(Dfs({"--data", Data("a"), "get", "docs/in.bin", (dir_ / "out").string()}).exit_code, 0);

  auto m = Scrape(port);
  EXPECT_EQ(m["dfs_file_ops_total{op=\"store\"}"], 1);
  EXPECT_EQ(m["dfs_file_op_duration_seconds_count{op=\"store\"}"], 1);
  EXPECT_GT(m["dfs_file_op_duration_seconds_sum{op=\"store\"}"], 0);
  EXPECT_EQ(m["dfs_file_op_duration_seconds_bucket{op=\"store\",le=\"+Inf\"}"], 1);
  EXPECT_EQ(m["dfs_file_ops_total{op=\"get\"}"], 1);
  EXPECT_GT(m["dfs_store_bytes"], 3 << 20);
  EXPECT_GE(m["dfs_store_chunks"], 1);
  EXPECT_GT(m["process_resident_memory_bytes"], 1 << 20);
  EXPECT_GT(m["process_start_time_seconds"], 1.6e9);
  EXPECT_EQ(m["dfs_peers_known"], 0);
  EXPECT_EQ(m["dfs_replicas"], 3);
  EXPECT_EQ(m.count("dfs_under_replicated_chunks"), 1u);
  EXPECT_EQ(m.count("dfs_repair_passes_total"), 1u);
  EXPECT_EQ(m["dfs_gc_passes_total"], 0);
  EXPECT_EQ(m.count("dfs_gc_last_removed_bytes"), 1u);

  // Garbage, a header past the limit, a client that sends half a request
  // and waits: each is answered with an error or closed; the node serves on.
  int slow = Connect(port);
  SendAll(slow, "GET /metrics HTTP/1.1\r\nHost");
  Received garbage = Exchange(port, std::string(3000, '\x01') + "\r\n\r\n");
  EXPECT_TRUE(garbage.closed);
  EXPECT_TRUE(garbage.bytes.empty() || garbage.bytes.rfind("HTTP/1.1 400", 0) == 0) << garbage.bytes;
  Received big = Exchange(port, "GET /metrics HTTP/1.1\r\nCookie: " + std::string(1 << 20, 'c') + "\r\n\r\n");
  EXPECT_TRUE(big.closed);
  EXPECT_TRUE(big.bytes.empty() || big.bytes.rfind("HTTP/1.1 431", 0) == 0) << big.bytes.substr(0, 200);
  EXPECT_EQ(Exchange(port, Get("/nope")).bytes.rfind("HTTP/1.1 404", 0), 0u);

  auto after = Scrape(port);
  EXPECT_EQ(after["dfs_file_ops_total{op=\"store\"}"], 1);
  EXPECT_EQ(Dfs({"--data", Data("a"), "status"}).exit_code, 0);
  ::close(slow);

  // A second member shows up as a live peer.
  argv = NodeArgs("b");
  argv.insert(argv.begin(), testing::BinPath("dfsd"));
  argv.insert(argv.end(), {"--peer", listen_["a"]});
  Spawn(argv, "b");
  EXPECT_TRUE(WaitFor([&] {
    auto now = Scrape(port);
    return now["dfs_peers_alive"] == 1 && now["dfs_peers_known"] == 1;
  }, 20s));
}

TEST_F(MetricsNodeTest, BadMetricsAddressesStopTheStart) {
  std::vector<std::string> argv = NodeArgs("a");
  argv.insert(argv.begin(), testing::BinPath("dfsd"));
  argv.back() = "nonsense";
  auto r = testing::Run(argv);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--metrics"), std::string::npos) << r.err;

  auto taken = net::MetricsHttpServer::Start("127.0.0.1", 0, [] { return std::string(); });
  ASSERT_TRUE(taken.ok());
  argv.back() = fmt::format("127.0.0.1:{}", (*taken)->port());
  r = testing::Run(argv);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot serve metrics"), std::string::npos) << r.err;
}

TEST_F(MetricsNodeTest, DfsmountCountsFuseCallsByOp) {
  if (::access("/dev/fuse", R_OK | W_OK) != 0) GTEST_SKIP() << "skipped: /dev/fuse is not usable here";
  if (::geteuid() != 0) GTEST_SKIP() << "skipped: mounting needs root in this test setup";
  fs::path mnt = dir_ / "mnt";
  fs::create_directories(mnt);
  std::vector<std::string> argv = NodeArgs("m");
  argv.insert(argv.begin(), {testing::BinPath("dfsmount"), mnt.string()});
  argv.push_back("-f");
  int pid = Spawn(argv, "m");
  struct Unmount {
    fs::path mnt;
    ~Unmount() {
      if (testing::Mounted(mnt)) testing::Run({"/bin/fusermount3", "-uz", mnt.string()});
    }
  } unmount{mnt};
  ASSERT_TRUE(WaitFor([&] { return testing::Mounted(mnt); })) << testing::Slurp(Log("m"));
  int port = MetricsPort("m");
  ASSERT_NE(port, 0);

  core::Bytes data = testing::RandomBytes(200000, 9);
  fs::create_directories(mnt / "d");
  testing::WriteFile(mnt / "d" / "f.bin", data);
  EXPECT_TRUE(testing::ReadFile(mnt / "d" / "f.bin") == data);
  EXPECT_EQ(fs::file_size(mnt / "d" / "f.bin"), data.size());

  auto m = Scrape(port);
  for (const char* op : {"lookup", "getattr", "mkdir", "create", "write", "flush", "release", "open", "read"}) {
    std::string series = fmt::format("dfs_fuse_ops_total{{op=\"{}\"}}", op);
    EXPECT_GE(m[series], 1) << series;
    EXPECT_EQ(m[fmt::format("dfs_fuse_op_duration_seconds_count{{op=\"{}\"}}", op)], m[series]) << op;
  }
  EXPECT_EQ(m.count("dfs_fuse_ops_total{op=\"fallocate\"}"), 1u) << "every op is listed";
  EXPECT_GT(m["dfs_store_bytes"], 0);
  EXPECT_GT(m["process_resident_memory_bytes"], 0);
  EXPECT_EQ(testing::Stop(pid, SIGTERM), 0);
  std::erase(pids_, pid);
}

}  // namespace
}  // namespace dfs
