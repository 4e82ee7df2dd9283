#include "core/key_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cryptopp/misc.h>
#include <cryptopp/osrng.h>
#include <cryptopp/sha.h>
#include <fmt/format.h>

#include "core/chunk_id.h"

namespace dfs::core {
namespace {

// Key file v1 (docs/format.md): three text lines
//   dfs-volume-key 1
//   key <64 lowercase hex>
//   check <8 lowercase hex: the first 4 bytes of SHA-256 of the key bytes>
constexpr std::string_view kHeaderLine = "dfs-volume-key ";
constexpr std::size_t kMaxFileSize = 4096;

std::string CheckHex(ByteSpan key) {
  std::uint8_t digest[CryptoPP::SHA256::DIGESTSIZE];
  CryptoPP::SHA256().CalculateDigest(digest, key.data(), key.size());
  return ToHex(ByteSpan(digest, 4));
}

Status WriteAll(int fd, std::string_view data, const std::filesystem::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write key file " + path.string());
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return Status::Ok();
}

}  // namespace

VolumeKey VolumeKey::Generate() {
  VolumeKey k;
  CryptoPP::OS_GenerateRandomBlock(/*blocking=*/false, k.secret_.data(), k.secret_.size());
  return k;
}

Result<VolumeKey> VolumeKey::FromBytes(ByteSpan bytes) {
  if (bytes.size() != kSize) {
    return Status::InvalidArgument(
        fmt::format("a volume key is {} bytes, got {}", kSize, bytes.size()));
  }
  VolumeKey k;
  std::memcpy(k.secret_.data(), bytes.data(), kSize);
  return k;
}

VolumeKey::VolumeKey(const VolumeKey& other) : secret_(other.secret_) {}
VolumeKey& VolumeKey::operator=(const VolumeKey& other) {
  secret_ = other.secret_;
  return *this;
}
VolumeKey::~VolumeKey() { CryptoPP::SecureWipeBuffer(secret_.data(), secret_.size()); }

Status WriteKeyFile(const std::filesystem::path& path, const VolumeKey& key) {
  std::filesystem::path parent = path.parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists(parent, ec)) {
      std::filesystem::create_directories(parent, ec);
      if (ec) return ErrnoStatus(ec.value(), "create directory " + parent.string());
      ::chmod(parent.c_str(), 0700);
    }
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return Status::Exists(
          fmt::format("{} already exists; refusing to overwrite a key file", path.string()));
    }
    return ErrnoStatus(errno, "create key file " + path.string());
  }
  std::string text = fmt::format("{}{}\nkey {}\ncheck {}\n", kHeaderLine, 1, ToHex(key.secret()),
                                 CheckHex(key.secret()));
  Status s = WriteAll(fd, text, path);
  CryptoPP::SecureWipeBuffer(text.data(), text.size());
  if (s.ok() && ::fchmod(fd, 0600) != 0) s = ErrnoStatus(errno, "chmod " + path.string());
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoStatus(errno, "fsync " + path.string());
  if (::close(fd) != 0 && s.ok()) s = ErrnoStatus(errno, "close " + path.string());
  if (!s.ok()) {
    ::unlink(path.c_str());
    return s;
  }
  int dfd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

Status CreateKeyFile(const std::filesystem::path& path) {
  return WriteKeyFile(path, VolumeKey::Generate());
}

Result<VolumeKey> ReadKeyFile(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound(fmt::format("key file {} does not exist", path.string()));
    return ErrnoStatus(errno, "open key file " + path.string());
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Status s = ErrnoStatus(errno, "stat key file " + path.string());
    ::close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode) || st.st_size > static_cast<off_t>(kMaxFileSize)) {
    ::close(fd);
    return Status::InvalidArgument(
        fmt::format("{} is not a dfs volume key file (not a small regular file)", path.string()));
  }
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  ssize_t n = ::pread(fd, text.data(), text.size(), 0);
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) {
    return Status::Io(fmt::format("could not read key file {}", path.string()));
  }
  auto invalid = [&](std::string_view why) {
    CryptoPP::SecureWipeBuffer(text.data(), text.size());
    return Status::InvalidArgument(fmt::format("{}: {}", path.string(), why));
  };
  if (text.compare(0, kHeaderLine.size(), kHeaderLine) != 0) {
    return invalid("not a dfs volume key file");
  }
  std::size_t eol = text.find('\n');
  if (eol == std::string::npos) return invalid("not a dfs volume key file");
  std::string version = text.substr(kHeaderLine.size(), eol - kHeaderLine.size());
  if (version != "1") return invalid(fmt::format("unsupported key file version '{}'", version));
  // Exactly: "key " + 64 hex + "\n" + "check " + 8 hex + "\n".
  std::string_view rest = std::string_view(text).substr(eol + 1);
  if (rest.size() != 4 + 64 + 1 + 6 + 8 + 1 || rest.substr(0, 4) != "key " || rest[68] != '\n' ||
      rest.substr(69, 6) != "check " || rest.back() != '\n') {
    return invalid("malformed key file (expected 'key <64 hex>' and 'check <8 hex>' lines)");
  }
  // ChunkId's parser is the project's strict 32-byte hex parser.
  Result<ChunkId> raw = ChunkId::FromHex(rest.substr(4, 64));
  if (!raw.ok()) return invalid("the key line is not 64 lowercase hex characters");
  std::string check(rest.substr(75, 8));
  if (CheckHex(raw->bytes()) != check) return invalid("key file checksum mismatch (damaged)");
  Result<VolumeKey> key = VolumeKey::FromBytes(raw->bytes());
  CryptoPP::SecureWipeBuffer(text.data(), text.size());
  return key;
}

}  // namespace dfs::core
