#include "core/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

namespace dfs::core {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<std::uint64_t>[bounds_.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  // The first bucket whose upper bound is >= v (`le`); past them all: +Inf.
  std::size_t i = static_cast<std::size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<std::uint64_t> Histogram::counts() const {
  std::vector<std::uint64_t> out(bounds_.size() + 1);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                               0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                               1,      2.5,     5,      10,    30,     120};
  return kBuckets;
}

namespace {

// Backslash and newline always; double quotes in label values.
std::string Escape(std::string_view v, bool quotes) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || (quotes && c == '"')) {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string EscapeLabelValue(std::string_view v) { return Escape(v, true); }
std::string EscapeHelp(std::string_view v) { return Escape(v, false); }

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

namespace {

bool ValidName(std::string_view s, bool colon) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

const char* TypeName(int type) {
  static const char* kNames[] = {"counter", "gauge", "histogram"};
  return kNames[type];
}

}  // namespace

struct MetricsRegistry::Child {
  MetricLabels labels;
  std::string label_text;  // a="b",c="d" (no braces), rendered once
  std::unique_ptr<Counter> counter;
  std::unique_ptr<Gauge> gauge;
  std::unique_ptr<Histogram> histogram;
  std::shared_ptr<const std::function<double()>> fn;
};

struct MetricsRegistry::Family {
  std::string name, help;
  Type type;
  std::vector<double> bounds;  // histograms
  std::vector<std::unique_ptr<Child>> children;
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Child& MetricsRegistry::FindOrAdd(std::string_view name, std::string_view help,
                                                   Type type, const std::vector<double>* bounds,
                                                   MetricLabels labels, std::function<double()> fn) {
  if (!ValidName(name, true)) throw std::invalid_argument(fmt::format("bad metric name '{}'", name));
  for (const auto& [k, v] : labels) {
    if (!ValidName(k, false) || (type == Type::kHistogram && k == "le")) {
      throw std::invalid_argument(fmt::format("bad label name '{}' of {}", k, name));
    }
  }
  if (bounds != nullptr &&
      (bounds->empty() || !std::is_sorted(bounds->begin(), bounds->end(), std::less_equal<>()) ||
       !std::isfinite(bounds->back()))) {
    throw std::invalid_argument(fmt::format("bad buckets of {}", name));
  }
  std::lock_guard lock(mu_);
  Family* family = nullptr;
  for (const auto& f : families_) {
    if (f->name == name) family = f.get();
  }
  if (family == nullptr) {
    families_.push_back(std::make_unique<Family>());
    family = families_.back().get();
    family->name = name;
    family->help = help;
    family->type = type;
    if (bounds != nullptr) family->bounds = *bounds;
  } else if (family->type != type || (bounds != nullptr && family->bounds != *bounds)) {
    throw std::invalid_argument(fmt::format("metric {} registered twice differently", name));
  }
  for (const auto& c : family->children) {
    if (c->labels != labels) continue;
    if (static_cast<bool>(fn) != static_cast<bool>(c->fn)) {
      throw std::invalid_argument(fmt::format("metric {} is computed in one place only", name));
    }
    if (fn) c->fn = std::make_shared<const std::function<double()>>(std::move(fn));
    return *c;
  }
  auto child = std::make_unique<Child>();
  if (fn) {
    child->fn = std::make_shared<const std::function<double()>>(std::move(fn));
  } else if (type == Type::kCounter) {
    child->counter = std::make_unique<Counter>();
  } else if (type == Type::kGauge) {
    child->gauge = std::make_unique<Gauge>();
  } else {
    child->histogram = std::make_unique<Histogram>(*bounds);
  }
  for (const auto& [k, v] : labels) {
    if (!child->label_text.empty()) child->label_text += ',';
    child->label_text += fmt::format("{}=\"{}\"", k, EscapeLabelValue(v));
  }
  child->labels = std::move(labels);
  family->children.push_back(std::move(child));
  return *family->children.back();
}

Counter& MetricsRegistry::AddCounter(std::string_view name, std::string_view help,
                                     MetricLabels labels) {
  return *FindOrAdd(name, help, Type::kCounter, nullptr, std::move(labels)).counter;
}

Gauge& MetricsRegistry::AddGauge(std::string_view name, std::string_view help,
                                 MetricLabels labels) {
  return *FindOrAdd(name, help, Type::kGauge, nullptr, std::move(labels)).gauge;
}

Histogram& MetricsRegistry::AddHistogram(std::string_view name, std::string_view help,
                                         const std::vector<double>& bounds, MetricLabels labels) {
  return *FindOrAdd(name, help, Type::kHistogram, &bounds, std::move(labels)).histogram;
}

void MetricsRegistry::AddGaugeFn(std::string_view name, std::string_view help,
                                 std::function<double()> fn, MetricLabels labels) {
  FindOrAdd(name, help, Type::kGauge, nullptr, std::move(labels), std::move(fn));
}

void MetricsRegistry::AddCounterFn(std::string_view name, std::string_view help,
                                   std::function<double()> fn, MetricLabels labels) {
  FindOrAdd(name, help, Type::kCounter, nullptr, std::move(labels), std::move(fn));
}

std::string MetricsRegistry::Render() const {
  // A snapshot of the families and children (which are never removed and
  // whose names and labels never change), so that callbacks run unlocked.
  struct Row {
    const Child* child;
    std::shared_ptr<const std::function<double()>> fn;
  };
  std::vector<std::pair<const Family*, std::vector<Row>>> snapshot;
  {
    std::lock_guard lock(mu_);
    for (const auto& f : families_) {
      std::vector<Row> rows;
      for (const auto& c : f->children) rows.push_back({c.get(), c->fn});
      snapshot.emplace_back(f.get(), std::move(rows));
    }
  }
  std::string out;
  auto sample = [&out](std::string_view name, std::string_view suffix, std::string_view labels,
                       std::string_view value) {
    out += name;
    out += suffix;
    if (!labels.empty()) {
      out += '{';
      out += labels;
      out += '}';
    }
    out += ' ';
    out += value;
    out += '\n';
  };
  for (const auto& [f, rows] : snapshot) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f->name, EscapeHelp(f->help), f->name,
                       TypeName(static_cast<int>(f->type)));
    for (const Row& r : rows) {
      const Child& c = *r.child;
      if (r.fn) {
        sample(f->name, "", c.label_text, FormatMetricValue((*r.fn)()));
      } else if (c.counter) {
        sample(f->name, "", c.label_text, std::to_string(c.counter->value()));
      } else if (c.gauge) {
        sample(f->name, "", c.label_text, FormatMetricValue(c.gauge->value()));
      } else if (c.histogram) {
        std::string sep = c.label_text.empty() ? "" : c.label_text + ",";
        std::vector<std::uint64_t> counts = c.histogram->counts();
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < counts.size(); ++i) {
          cumulative += counts[i];
          std::string le = i < f->bounds.size() ? FormatMetricValue(f->bounds[i]) : "+Inf";
          sample(f->name, "_bucket", fmt::format("{}le=\"{}\"", sep, le), std::to_string(cumulative));
        }
        sample(f->name, "_sum", c.label_text, FormatMetricValue(c.histogram->sum()));
        sample(f->name, "_count", c.label_text, std::to_string(cumulative));
      }
    }
  }
  return out;
}

OpMetric AddOpMetric(MetricsRegistry& registry, std::string_view prefix, std::string_view what,
                     std::string_view op) {
  MetricLabels labels = {{"op", std::string(op)}};
  OpMetric m;
  m.count = &registry.AddCounter(fmt::format("{}_ops_total", prefix),
                                 fmt::format("{} operations started, by op", what), labels);
  m.seconds = &registry.AddHistogram(fmt::format("{}_op_duration_seconds", prefix),
                                     fmt::format("How long {} operations took, by op", what),
                                     LatencyBuckets(), labels);
  return m;
}

namespace {

// The fields of /proc/self/stat after the command name; [0] is field 3 (state).
std::vector<std::string> ProcStatFields() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  std::getline(in, line);
  std::size_t close = line.rfind(')');
  std::vector<std::string> fields;
  if (close == std::string::npos) return fields;
  std::istringstream rest(line.substr(close + 1));
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

double StatField(const std::vector<std::string>& fields, std::size_t field) {
  if (field < 3 || field - 3 >= fields.size()) return 0;
  return std::strtod(fields[field - 3].c_str(), nullptr);
}

// Pages of /proc/self/statm: `index` 0 is the total size, 1 the resident set.
double StatmBytes(int index) {
  std::ifstream in("/proc/self/statm");
  double pages = 0;
  for (int i = 0; i <= index && in >> pages; ++i) {
  }
  return in ? pages * static_cast<double>(::sysconf(_SC_PAGESIZE)) : 0;
}

double BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  for (std::string key; in >> key;) {
    if (key == "btime") {
      double v = 0;
      in >> v;
      return v;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

double OpenFds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  double n = 0;
  while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n - 1;  // the directory's own descriptor
}

}  // namespace

void AddProcessMetrics(MetricsRegistry& registry) {
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double start = BootTimeSeconds() + StatField(ProcStatFields(), 22) / ticks;
  registry.AddGaugeFn("process_resident_memory_bytes", "Resident memory size in bytes.",
                      [] { return StatmBytes(1); });
  registry.AddGaugeFn("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                      [] { return StatmBytes(0); });
  registry.AddGaugeFn("process_start_time_seconds",
                      "Start time of the process since unix epoch in seconds.",
                      [start] { return start; });
  registry.AddCounterFn("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                        [ticks] {
                          std::vector<std::string> f = ProcStatFields();
                          return (StatField(f, 14) + StatField(f, 15)) / ticks;
                        });
  registry.AddGaugeFn("process_open_fds", "Number of open file descriptors.", OpenFds);
}

}  // namespace dfs::core
