#include "core/encoding.h"

#include <cryptopp/crc.h>

namespace dfs::core {

std::uint32_t Crc32c(const std::uint8_t* p, std::size_t n) {
  CryptoPP::CRC32C crc;
  crc.Update(p, n);
  std::uint8_t digest[4];
  crc.Final(digest);
  return static_cast<std::uint32_t>(LoadLe(digest, 4));
}

}  // namespace dfs::core
