// The volume key: 32 random bytes that every node of a volume shares, kept in
// a versioned key file (docs/format.md, "volume key file"), mode 0600.
//
// VolumeKey owns its secret in memory that is wiped when it is destroyed.
// Errors: kExists (CreateKeyFile will not overwrite), kNotFound (no such
// file), kInvalidArgument (not a dfs key file, unknown version, bad
// checksum), kPermission, kIo.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>

#include "core/bytes.h"
#include "core/status.h"

namespace dfs::core {

class VolumeKey {
 public:
  static constexpr std::size_t kSize = 32;

  // A fresh key from the operating system's CSPRNG.
  static VolumeKey Generate();
  // From raw bytes (tests and known-answer vectors). Must be kSize bytes.
  static Result<VolumeKey> FromBytes(ByteSpan bytes);

  VolumeKey(const VolumeKey&);
  VolumeKey& operator=(const VolumeKey&);
  ~VolumeKey();  // wipes the secret

  ByteSpan secret() const { return {secret_.data(), secret_.size()}; }

 private:
  VolumeKey() = default;
  std::array<std::uint8_t, kSize> secret_{};
};

// Writes a new key file with a freshly generated key: created with O_EXCL and
// mode 0600 (refuses to overwrite anything), fsynced. Parent directories are
// created (mode 0700) if missing.
Status CreateKeyFile(const std::filesystem::path& path);

// Writes `key` to a new key file, with the same rules as CreateKeyFile.
Status WriteKeyFile(const std::filesystem::path& path, const VolumeKey& key);

// Reads and validates a key file.
Result<VolumeKey> ReadKeyFile(const std::filesystem::path& path);

}  // namespace dfs::core
