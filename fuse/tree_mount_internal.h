// What fuse/tree_mount.cc (the TreeMount class) and fuse/tree_mount_ops.cc
// (its libfuse callbacks) share beyond TreeMount's interface. Internal to
// fuse/.
#pragma once

#include <cstdint>

#include "core/hlc.h"

namespace dfs::fuse {

// Wall-clock time for file times: the clock the op log's HLC reads.
inline std::int64_t NowNs() { return static_cast<std::int64_t>(core::HybridClock::SystemNs()); }

}  // namespace dfs::fuse
