// Metrics: counters, gauges and histograms that a node keeps about itself,
// rendered in the Prometheus text exposition format (version 0.0.4) for
// `--metrics` (net/metrics_http.h serves it over HTTP).
//
//   Counter    a monotonic integer (Inc); `_total` names by convention.
//   Gauge      a value that goes up and down (Set, Add).
//   Histogram  observations counted in fixed cumulative buckets (`le`), with
//              their sum and count.
//   callbacks  a gauge or counter whose value a function computes at scrape
//              time (bytes held, peers alive, ...).
//
// A family is one metric name with its HELP and TYPE; its children differ
// by their label values. Registering takes a lock and returns a reference
// that stays valid as long as the registry: the hot path (Inc, Observe) is
// relaxed atomics only, no lock and no allocation. Registering the same
// name and labels again returns the same child. Children are never removed,
// so memory is bounded by what the code registers, not by traffic.
//
// Thread-safe. Callbacks run on the rendering thread without the registry's
// lock held; they must not throw.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dfs::core {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds`: the upper bounds of the buckets, strictly increasing; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Per bucket (not cumulative), the last one being +Inf.
  std::vector<std::uint64_t> counts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
};

// Bucket bounds for latencies in seconds: 100 µs to 2 minutes.
const std::vector<double>& LatencyBuckets();

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
  // [a-zA-Z_][a-zA-Z0-9_]* (and not `le` on a histogram); a name registered
  // with another type or other buckets is a programming error:
  // std::invalid_argument.
  Counter& AddCounter(std::string_view name, std::string_view help, MetricLabels labels = {});
  Gauge& AddGauge(std::string_view name, std::string_view help, MetricLabels labels = {});
  Histogram& AddHistogram(std::string_view name, std::string_view help,
                          const std::vector<double>& bounds, MetricLabels labels = {});
  // Values computed at scrape time. Registering the same labels again
  // replaces the function.
  void AddGaugeFn(std::string_view name, std::string_view help, std::function<double()> fn,
                  MetricLabels labels = {});
  void AddCounterFn(std::string_view name, std::string_view help, std::function<double()> fn,
                    MetricLabels labels = {});

  // Every family in registration order, children in registration order.
  std::string Render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Child;
  struct Family;
  // The child of `name` with `labels`, created if new: computed by `fn` when
  // given (replacing an earlier function), else holding its own value.
  Child& FindOrAdd(std::string_view name, std::string_view help, Type type,
                   const std::vector<double>* bounds, MetricLabels labels,
                   std::function<double()> fn = {});

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;
};

// The Prometheus text format's escaping: label values escape backslash,
// double quote and newline; HELP text backslash and newline.
std::string EscapeLabelValue(std::string_view v);
std::string EscapeHelp(std::string_view v);
// A sample value as the format writes it: +Inf, -Inf, NaN, or the shortest
// decimal that reads back exactly.
std::string FormatMetricValue(double v);

// One kind of operation: how many started and how long each took.
struct OpMetric {
  Counter* count = nullptr;
  Histogram* seconds = nullptr;
};
// `<prefix>_ops_total{op="..."}` and `<prefix>_op_duration_seconds{op="..."}`;
// `what` names the operations in their HELP ("FileServer", "FUSE").
OpMetric AddOpMetric(MetricsRegistry& registry, std::string_view prefix, std::string_view what,
                     std::string_view op);

// Counts an op as it starts and records its duration as it ends. A null
// metric (no registry) makes it do nothing.
class ScopedOpTimer {
 public:
  explicit ScopedOpTimer(const OpMetric* metric) : metric_(metric) {
    if (metric_ == nullptr || metric_->count == nullptr) return;
    metric_->count->Inc();
    start_ = std::chrono::steady_clock::now();
  }
  ~ScopedOpTimer() {
    if (metric_ == nullptr || metric_->seconds == nullptr) return;
    metric_->seconds->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  ScopedOpTimer(const ScopedOpTimer&) = delete;
  ScopedOpTimer& operator=(const ScopedOpTimer&) = delete;

 private:
  const OpMetric* metric_;
  std::chrono::steady_clock::time_point start_{};
};

// process_resident_memory_bytes, process_virtual_memory_bytes,
// process_start_time_seconds, process_cpu_seconds_total and
// process_open_fds, read from /proc/self at scrape time.
void AddProcessMetrics(MetricsRegistry& registry);

}  // namespace dfs::core
