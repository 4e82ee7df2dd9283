#include "core/hlc.h"

#include <cstring>

#include <gtest/gtest.h>

namespace dfs::core {
namespace {

TEST(HlcTest, MonotonicEvenWhenThePhysicalClockStallsOrStepsBack) {
  std::uint64_t now = 1000;
  HybridClock clock([&] { return now; });
  HlcTime a = clock.Now();
  HlcTime b = clock.Now();
  EXPECT_LT(a, b);
  EXPECT_EQ(b.wall_ns, 1000u);
  now = 500;  // NTP steps the clock back
  HlcTime c = clock.Now();
  EXPECT_LT(b, c);
  now = 2000;
  HlcTime d = clock.Now();
  EXPECT_EQ(d.wall_ns, 2000u);
  EXPECT_EQ(d.logical, 0u);
}

TEST(HlcTest, ObservedTimesOrderCausally) {
  std::uint64_t slow_now = 1000, fast_now = 5000;
  HybridClock slow([&] { return slow_now; }), fast([&] { return fast_now; });
  HlcTime sent = fast.Now();
  ASSERT_TRUE(slow.Observe(sent).ok());
  HlcTime reply = slow.Now();
  EXPECT_GT(reply, sent) << "an event after a receive is later than the send";
  EXPECT_EQ(reply.wall_ns, 5000u);
}

TEST(HlcTest, ClocksFarInTheFutureAreRefused) {
  std::uint64_t now = 1'000'000'000'000ull;
  HybridClock clock([&] { return now; }, /*max_drift_ns=*/1'000'000'000ull);
  HlcTime bogus{now + 3'600'000'000'000ull, 0};
  Status s = clock.Observe(bogus);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_LT(clock.Now().wall_ns, bogus.wall_ns) << "a refused time must not move the clock";
}

TEST(HlcTest, EncodingSortsAsTime) {
  HlcTime a{0x0102030405060708ull, 9}, b{0x0102030405060708ull, 10}, c{0x0102030405060709ull, 0};
  std::uint8_t ea[12], eb[12], ec[12];
  a.EncodeTo(ea);
  b.EncodeTo(eb);
  c.EncodeTo(ec);
  EXPECT_LT(std::memcmp(ea, eb, 12), 0);
  EXPECT_LT(std::memcmp(eb, ec, 12), 0);
  EXPECT_EQ(HlcTime::Decode(eb), b);
}

}  // namespace
}  // namespace dfs::core
