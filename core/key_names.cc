#include "core/key_names.h"

#include <fmt/format.h>

namespace dfs::core {
namespace {

bool ValidUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c >> 5) == 0x6) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c >> 4) == 0xe) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c >> 3) == 0x1e) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (std::size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = cp << 6 | (cc & 0x3f);
    }
    // Overlong forms, surrogates and out-of-range code points.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

Status Check(std::string_view key, bool allow_empty, std::string_view what) {
  if (key.empty()) {
    if (allow_empty) return Status::Ok();
    return Status::InvalidArgument(fmt::format("{} is empty", what));
  }
  if (key.size() > kMaxKeyBytes) {
    return Status::InvalidArgument(
        fmt::format("{} is {} bytes long; the limit is {}", what, key.size(), kMaxKeyBytes));
  }
  for (char ch : key) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      return Status::InvalidArgument(
          fmt::format("{} contains a control character (byte 0x{:02x})", what, c));
    }
  }
  if (!ValidUtf8(key)) return Status::InvalidArgument(fmt::format("{} is not valid UTF-8", what));
  if (key.front() == '/') return Status::InvalidArgument(fmt::format("{} starts with '/'", what));
  std::size_t start = 0;
  while (start <= key.size()) {
    std::size_t end = key.find('/', start);
    if (end == std::string_view::npos) end = key.size();
    std::string_view comp = key.substr(start, end - start);
    bool last = end == key.size();
    if (comp.empty() && !(last && allow_empty)) {
      return Status::InvalidArgument(fmt::format("{} has an empty path component", what));
    }
    if (comp == "." || comp == "..") {
      return Status::InvalidArgument(fmt::format("{} has a '{}' component", what, comp));
    }
    if (comp.size() > kMaxComponentBytes) {
      return Status::InvalidArgument(fmt::format("{} has a component of {} bytes; the limit is {}",
                                                 what, comp.size(), kMaxComponentBytes));
    }
    start = end + 1;
  }
  return Status::Ok();
}

}  // namespace

Status ValidateKey(std::string_view key) { return Check(key, false, "key"); }
Status ValidatePrefix(std::string_view prefix) { return Check(prefix, true, "prefix"); }

}  // namespace dfs::core
