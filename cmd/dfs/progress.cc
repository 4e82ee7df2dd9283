#include "cmd/dfs/progress.h"

#include <unistd.h>

#include <fmt/format.h>

namespace dfs::cli {

std::string HumanBytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, kUnits[u]);
}

Progress::Progress(std::string label, std::uint64_t total, Unit unit)
    : label_(std::move(label)),
      total_(total),
      unit_(unit),
      enabled_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (enabled_ && done_ > 0) Draw(true);
}

void Progress::Update(std::uint64_t done) {
  done_ = done;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(200)) return;
  last_draw_ = now;
  Draw(false);
}

void Progress::Draw(bool final) {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = secs > 0 ? static_cast<double>(done_) / secs : 0;
  const bool bytes = unit_ == Unit::kBytes;
  auto amount = [bytes](std::uint64_t n) { return bytes ? HumanBytes(n) : fmt::format("{}", n); };
  const char* unit = bytes ? "" : " chunks";
  std::string speed = fmt::format("{}{}/s", amount(static_cast<std::uint64_t>(rate)), unit);
  std::string line;
  if (total_ > 0) {
    double frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    constexpr int kWidth = 24;
    int filled = static_cast<int>(frac * kWidth);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(kWidth, '.');
    double left = rate > 0 ? static_cast<double>(total_ - std::min(done_, total_)) / rate : 0;
    line = fmt::format("{} [{}] {:3.0f}% {} / {}{}  {}  {:.0f}s left", label_, bar, frac * 100,
                       amount(done_), amount(total_), unit, speed, left);
  } else {
    line = fmt::format("{} {}{}  {}", label_, amount(done_), unit, speed);
  }
  fmt::print(stderr, "\r\033[K{}{}", line, final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace dfs::cli
