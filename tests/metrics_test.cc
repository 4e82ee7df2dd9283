// The metrics registry (core/metrics.h): exact Prometheus text for each
// kind, label escaping, cumulative buckets; the scoped op timer; process
// metrics; FileServer's Store/Get/Delete counted and timed.
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/file_server.h"
#include "core/index.h"
#include "core/memory_chunk_store.h"
#include "core/metrics.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

// The value of the sample line `series` ("name{labels}") in `text`, NaN if absent.
double Sample(const std::string& text, const std::string& series) {
  std::size_t at = 0;
  while ((at = text.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') return std::stod(text.substr(at + series.size() + 1));
    at += series.size();
  }
  return std::nan("");
}

TEST(MetricsTest, CountersRenderWithHelpTypeAndLabels) {
  MetricsRegistry r;
  Counter& plain = r.AddCounter("dfs_things_total", "Things done.");
  plain.Inc();
  plain.Inc(41);
  Counter& a = r.AddCounter("dfs_ops_total", "Ops, by op.", {{"op", "a"}});
  r.AddCounter("dfs_ops_total", "Ops, by op.", {{"op", "b"}, {"kind", "x"}}).Inc(3);
  a.Inc();
  EXPECT_EQ(&r.AddCounter("dfs_ops_total", "Ops, by op.", {{"op", "a"}}), &a);
  EXPECT_EQ(r.Render(),
            "# HELP dfs_things_total Things done.\n"
            "# TYPE dfs_things_total counter\n"
            "dfs_things_total 42\n"
            "# HELP dfs_ops_total Ops, by op.\n"
            "# TYPE dfs_ops_total counter\n"
            "dfs_ops_total{op=\"a\"} 1\n"
            "dfs_ops_total{op=\"b\",kind=\"x\"} 3\n");
}

TEST(MetricsTest, GaugesAndCallbacksAreReadAtRenderTime) {
  MetricsRegistry r;
  Gauge& g = r.AddGauge("dfs_level", "A level.");
  g.Set(2.5);
  g.Add(-4);
  double held = 1;
  r.AddGaugeFn("dfs_held_bytes", "Bytes held.", [&held] { return held; });
  r.AddCounterFn("dfs_seen_total", "Seen.", [] { return 7.0; }, {{"from", "peer"}});
  r.AddGaugeFn("dfs_odd", "Odd values.", [] { return INFINITY; }, {{"v", "inf"}});
  r.AddGaugeFn("dfs_odd", "Odd values.", [] { return NAN; }, {{"v", "nan"}});
  r.AddGaugeFn("dfs_odd", "Odd values.", [] { return 1e-7; }, {{"v", "small"}});
  held = 123456789012;
  EXPECT_EQ(r.Render(),
            "# HELP dfs_level A level.\n"
            "# TYPE dfs_level gauge\n"
            "dfs_level -1.5\n"
            "# HELP dfs_held_bytes Bytes held.\n"
            "# TYPE dfs_held_bytes gauge\n"
            "dfs_held_bytes 123456789012\n"
            "# HELP dfs_seen_total Seen.\n"
            "# TYPE dfs_seen_total counter\n"
            "dfs_seen_total{from=\"peer\"} 7\n"
            "# HELP dfs_odd Odd values.\n"
            "# TYPE dfs_odd gauge\n"
            "dfs_odd{v=\"inf\"} +Inf\n"
            "dfs_odd{v=\"nan\"} NaN\n"
            "dfs_odd{v=\"small\"} 1e-07\n");
  // A second registration replaces the function.
  r.AddGaugeFn("dfs_held_bytes", "Bytes held.", [] { return 5.0; });
  EXPECT_EQ(Sample(r.Render(), "dfs_held_bytes"), 5.0);
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  MetricsRegistry r;
  r.AddCounter("dfs_x_total", "Help with \\ and\nnewline \"quotes\" stay.",
               {{"path", "a\\b\"c\"\nd"}})
      .Inc();
  EXPECT_EQ(r.Render(),
            "# HELP dfs_x_total Help with \\\\ and\\nnewline \"quotes\" stay.\n"
            "# TYPE dfs_x_total counter\n"
            "dfs_x_total{path=\"a\\\\b\\\"c\\\"\\nd\"} 1\n");
  EXPECT_EQ(EscapeLabelValue("plain ü"), "plain ü");
}

TEST(MetricsTest, HistogramsHaveCumulativeBucketsInfSumAndCount) {
  MetricsRegistry r;
  Histogram& h = r.AddHistogram("dfs_op_duration_seconds", "How long.", {0.125, 0.5, 2},
                                {{"op", "get"}});
  r.AddHistogram("dfs_op_duration_seconds", "How long.", {0.125, 0.5, 2}, {{"op", "put"}});
  // An observation equal to a bound falls in that bucket (le).
  for (double v : {0.0625, 0.125, 0.25, 0.5, 1.0, 7.25}) h.Observe(v);
  EXPECT_EQ(r.Render(),
            "# HELP dfs_op_duration_seconds How long.\n"
            "# TYPE dfs_op_duration_seconds histogram\n"
            "dfs_op_duration_seconds_bucket{op=\"get\",le=\"0.125\"} 2\n"
            "dfs_op_duration_seconds_bucket{op=\"get\",le=\"0.5\"} 4\n"
            "dfs_op_duration_seconds_bucket{op=\"get\",le=\"2\"} 5\n"
            "dfs_op_duration_seconds_bucket{op=\"get\",le=\"+Inf\"} 6\n"
            "dfs_op_duration_seconds_sum{op=\"get\"} 9.1875\n"
            "dfs_op_duration_seconds_count{op=\"get\"} 6\n"
            "dfs_op_duration_seconds_bucket{op=\"put\",le=\"0.125\"} 0\n"
            "dfs_op_duration_seconds_bucket{op=\"put\",le=\"0.5\"} 0\n"
            "dfs_op_duration_seconds_bucket{op=\"put\",le=\"2\"} 0\n"
            "dfs_op_duration_seconds_bucket{op=\"put\",le=\"+Inf\"} 0\n"
            "dfs_op_duration_seconds_sum{op=\"put\"} 0\n"
            "dfs_op_duration_seconds_count{op=\"put\"} 0\n");
}

TEST(MetricsTest, UnlabelledHistogram) {
  MetricsRegistry r;
  r.AddHistogram("dfs_size_bytes", "Sizes.", {1024}).Observe(4096);
  EXPECT_EQ(r.Render(),
            "# HELP dfs_size_bytes Sizes.\n"
            "# TYPE dfs_size_bytes histogram\n"
            "dfs_size_bytes_bucket{le=\"1024\"} 0\n"
            "dfs_size_bytes_bucket{le=\"+Inf\"} 1\n"
            "dfs_size_bytes_sum 4096\n"
            "dfs_size_bytes_count 1\n");
}

TEST(MetricsTest, MisuseIsRefused) {
  MetricsRegistry r;
  r.AddCounter("dfs_a_total", "A.");
  EXPECT_THROW(r.AddGauge("dfs_a_total", "A."), std::invalid_argument);
  EXPECT_THROW(r.AddCounter("1bad", "x"), std::invalid_argument);
  EXPECT_THROW(r.AddCounter("dfs-bad", "x"), std::invalid_argument);
  EXPECT_THROW(r.AddCounter("dfs_b_total", "x", {{"bad-label", "v"}}), std::invalid_argument);
  EXPECT_THROW(r.AddHistogram("dfs_h", "x", {1}, {{"le", "v"}}), std::invalid_argument);
  EXPECT_THROW(r.AddHistogram("dfs_h2", "x", {2, 1}), std::invalid_argument);
  EXPECT_THROW(r.AddHistogram("dfs_h3", "x", {}), std::invalid_argument);
  r.AddHistogram("dfs_h4", "x", {1, 2});
  EXPECT_THROW(r.AddHistogram("dfs_h4", "x", {1, 3}), std::invalid_argument);
  r.AddGauge("dfs_g", "x");
  EXPECT_THROW(r.AddGaugeFn("dfs_g", "x", [] { return 1.0; }), std::invalid_argument);
}

TEST(MetricsTest, ConcurrentIncrementsAllCount) {
  MetricsRegistry r;
  Counter& c = r.AddCounter("dfs_c_total", "C.");
  Histogram& h = r.AddHistogram("dfs_h_seconds", "H.", LatencyBuckets());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.Inc();
        h.Observe(0.001 * (i % 7));
      }
    });
  }
  for (auto& t : threads) t.join();
  std::string text = r.Render();
  EXPECT_EQ(Sample(text, "dfs_c_total"), 40000);
  EXPECT_EQ(Sample(text, "dfs_h_seconds_count"), 40000);
  EXPECT_EQ(Sample(text, "dfs_h_seconds_bucket{le=\"+Inf\"}"), 40000);
}

TEST(MetricsTest, ScopedOpTimerCountsAndTimes) {
  MetricsRegistry r;
  OpMetric m = AddOpMetric(r, "dfs_test", "Test", "nap");
  {
    ScopedOpTimer t(&m);
    EXPECT_EQ(m.count->value(), 1u);  // counted as it starts
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  { ScopedOpTimer none(nullptr); }
  OpMetric empty;
  { ScopedOpTimer unregistered(&empty); }
  std::string text = r.Render();
  EXPECT_EQ(Sample(text, "dfs_test_ops_total{op=\"nap\"}"), 1);
  EXPECT_EQ(Sample(text, "dfs_test_op_duration_seconds_count{op=\"nap\"}"), 1);
  EXPECT_GE(Sample(text, "dfs_test_op_duration_seconds_sum{op=\"nap\"}"), 0.02);
  EXPECT_EQ(Sample(text, "dfs_test_op_duration_seconds_bucket{op=\"nap\",le=\"0.01\"}"), 0);
  EXPECT_EQ(Sample(text, "dfs_test_op_duration_seconds_bucket{op=\"nap\",le=\"+Inf\"}"), 1);
  EXPECT_NE(text.find("# TYPE dfs_test_op_duration_seconds histogram\n"), std::string::npos);
}

TEST(MetricsTest, ProcessMetricsComeFromProc) {
  MetricsRegistry r;
  AddProcessMetrics(r);
  std::vector<char> touched(32 << 20, 1);  // resident for sure
  std::string text = r.Render();
  double rss = Sample(text, "process_resident_memory_bytes");
  EXPECT_GE(rss, 32 << 20) << text;
  EXPECT_GE(Sample(text, "process_virtual_memory_bytes"), rss);
  double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  double start = Sample(text, "process_start_time_seconds");
  EXPECT_LE(start, now + 2);
  EXPECT_GT(start, now - 3600) << "the test process started within the hour";
  EXPECT_GE(Sample(text, "process_cpu_seconds_total"), 0);
  EXPECT_GE(Sample(text, "process_open_fds"), 3);
  EXPECT_EQ(touched[12345], 1);
}

TEST(MetricsTest, FileServerCountsStoreGetAndDelete) {
  testing::TempDir dir;
  MetricsRegistry r;
  auto index = Index::Open(dir / "index.db");
  ASSERT_TRUE(index.ok());
  FileServerOptions options;
  options.metrics = &r;
  auto fs = FileServer::Create(std::make_unique<MemoryChunkStore>(), std::move(index).value(),
                               VolumeKey::Generate(), std::move(options));
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  Bytes data = testing::RandomBytes(300000, 1);
  for (int i = 0; i < 2; ++i) {
    MemoryReader in(data);
    ASSERT_TRUE((*fs)->Store("k" + std::to_string(i), in).ok());
  }
  MemoryWriter out;
  ASSERT_TRUE((*fs)->Get("k0", out).ok());
  ASSERT_TRUE((*fs)->Delete("k1").ok());
  EXPECT_FALSE((*fs)->Delete("missing").ok());  // failures count too
  std::string text = r.Render();
  EXPECT_EQ(Sample(text, "dfs_file_ops_total{op=\"store\"}"), 2) << text;
  EXPECT_EQ(Sample(text, "dfs_file_ops_total{op=\"get\"}"), 1);
  EXPECT_EQ(Sample(text, "dfs_file_ops_total{op=\"delete\"}"), 2);
  EXPECT_EQ(Sample(text, "dfs_file_op_duration_seconds_count{op=\"store\"}"), 2);
  EXPECT_GT(Sample(text, "dfs_file_op_duration_seconds_sum{op=\"store\"}"), 0);
}

}  // namespace
}  // namespace dfs::core
