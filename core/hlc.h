// Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).
// Timestamps stay close to physical time, never go backwards, and respect
// causality across nodes: a timestamp issued after receiving another is
// greater than it. Ops of the replicated key index carry one.
//
// Thread safety: HybridClock is internally locked.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <mutex>

#include "core/bytes.h"
#include "core/status.h"

namespace dfs::core {

struct HlcTime {
  std::uint64_t wall_ns = 0;  // physical component, ns since the Unix epoch
  std::uint32_t logical = 0;  // counter among equal wall times
  auto operator<=>(const HlcTime&) const = default;

  static constexpr std::size_t kEncodedSize = 12;
  void EncodeTo(std::uint8_t* out) const;  // big-endian: byte order sorts as time
  static HlcTime Decode(const std::uint8_t* in);
};

class HybridClock {
 public:
  using PhysicalClock = std::function<std::uint64_t()>;  // ns since epoch

  // `max_drift_ns`: a remote time further than this ahead of our physical
  // clock is refused (a peer with a broken clock must not drag ours along).
  explicit HybridClock(PhysicalClock physical = SystemNs,
                       std::uint64_t max_drift_ns = 60'000'000'000ull);

  // A timestamp for a local event, greater than every one issued or seen.
  HlcTime Now();

  // Merges a timestamp received from a peer. Errors: kInvalidArgument when
  // it is more than max_drift ahead of the physical clock.
  Status Observe(const HlcTime& remote);

  static std::uint64_t SystemNs();

 private:
  std::mutex mu_;
  PhysicalClock physical_;
  std::uint64_t max_drift_ns_;
  HlcTime last_;
};

}  // namespace dfs::core
