// Rules for FileServer keys. Keys are slash-separated names that will become
// paths in the mounted tree, so they follow path rules now:
//   1..4096 bytes; valid UTF-8; no NUL or other control characters; no
//   leading, trailing or doubled '/'; no component "." or ".."; each
//   component at most 255 bytes (NAME_MAX).
// Errors name the rule that was broken, never echo a 10 KiB key back.
#pragma once

#include <string_view>

#include "core/status.h"

namespace dfs::core {

inline constexpr std::size_t kMaxKeyBytes = 4096;
inline constexpr std::size_t kMaxComponentBytes = 255;

Status ValidateKey(std::string_view key);

// Like ValidateKey but allows the empty string (a prefix that matches all).
Status ValidatePrefix(std::string_view prefix);

}  // namespace dfs::core
