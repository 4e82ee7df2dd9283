#include "core/status.h"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace dfs::core {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kExists: return "exists";
    case ErrorCode::kCorrupt: return "corrupt";
    case ErrorCode::kWrongKey: return "wrong key";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNoSpace: return "no space";
    case ErrorCode::kIo: return "i/o error";
    case ErrorCode::kPermission: return "permission denied";
    case ErrorCode::kNotDirectory: return "not a directory";
    case ErrorCode::kIsDirectory: return "is a directory";
    case ErrorCode::kNotEmpty: return "directory not empty";
    case ErrorCode::kNameTooLong: return "name too long";
    case ErrorCode::kNoAttribute: return "no such attribute";
    case ErrorCode::kUnsupported: return "not supported";
    case ErrorCode::kFileTooLarge: return "file too large";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return fmt::format("{}: {}", ErrorCodeName(code_), message_);
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, fmt::format("{}: {}", context, message_));
}

Status ErrnoStatus(int err, std::string_view context) {
  std::string msg = fmt::format("{}: {}", context, std::strerror(err));
  switch (err) {
    case ENOENT: return Status::NotFound(std::move(msg));
    case EEXIST: return Status::Exists(std::move(msg));
    case ENOSPC:
    case EDQUOT: return Status::NoSpace(std::move(msg));
    case EFBIG: return Status::FileTooLarge(std::move(msg));
    case EACCES:
    case EPERM: return Status::Permission(std::move(msg));
    case EINVAL:
    case ENAMETOOLONG: return Status::InvalidArgument(std::move(msg));
    case EAGAIN:
    case EBUSY: return Status::Unavailable(std::move(msg));
    default: return Status::Io(std::move(msg));
  }
}

}  // namespace dfs::core
