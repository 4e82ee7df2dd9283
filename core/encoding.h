// Little-endian integers and CRC32C, shared by every on-disk record format
// (chunk file, manifest, op). Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dfs::core {

inline void StoreLe(std::uint8_t* p, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

inline std::uint64_t LoadLe(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

// CRC32C (Castagnoli), through Intel ISA-L (folding with carry-less
// multiplies where the CPU has them).
std::uint32_t Crc32c(const std::uint8_t* p, std::size_t n);

}  // namespace dfs::core
