#include "core/hlc.h"

#include <chrono>

#include <fmt/format.h>

namespace dfs::core {

void HlcTime::EncodeTo(std::uint8_t* out) const {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(wall_ns >> (56 - 8 * i));
  for (int i = 0; i < 4; ++i) out[8 + i] = static_cast<std::uint8_t>(logical >> (24 - 8 * i));
}

HlcTime HlcTime::Decode(const std::uint8_t* in) {
  HlcTime t;
  for (int i = 0; i < 8; ++i) t.wall_ns = t.wall_ns << 8 | in[i];
  for (int i = 0; i < 4; ++i) t.logical = t.logical << 8 | in[8 + i];
  return t;
}

std::uint64_t HybridClock::SystemNs() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

HybridClock::HybridClock(PhysicalClock physical, std::uint64_t max_drift_ns)
    : physical_(std::move(physical)), max_drift_ns_(max_drift_ns) {}

HlcTime HybridClock::Now() {
  std::lock_guard lock(mu_);
  std::uint64_t pt = physical_();
  if (pt > last_.wall_ns) {
    last_ = {pt, 0};
  } else {
    ++last_.logical;
  }
  return last_;
}

Status HybridClock::Observe(const HlcTime& remote) {
  std::lock_guard lock(mu_);
  std::uint64_t pt = physical_();
  if (remote.wall_ns > pt && remote.wall_ns - pt > max_drift_ns_) {
    return Status::InvalidArgument(fmt::format(
        "remote clock is {:.1f} s ahead of ours; refusing it", (remote.wall_ns - pt) / 1e9));
  }
  HlcTime next;
  next.wall_ns = std::max({last_.wall_ns, remote.wall_ns, pt});
  if (next.wall_ns == last_.wall_ns && next.wall_ns == remote.wall_ns) {
    next.logical = std::max(last_.logical, remote.logical) + 1;
  } else if (next.wall_ns == last_.wall_ns) {
    next.logical = last_.logical + 1;
  } else if (next.wall_ns == remote.wall_ns) {
    next.logical = remote.logical + 1;
  } else {
    next.logical = 0;
  }
  last_ = next;
  return Status::Ok();
}

}  // namespace dfs::core
