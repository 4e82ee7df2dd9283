// Status and Result<T>: the error values of dfs::core.
//
// Every fallible core function returns a Status (no value) or a Result<T>
// (a value or a Status). Both are [[nodiscard]]. errno is translated into a
// Status in exactly one place, ErrnoStatus(). Thread-compatible value types.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace dfs::core {

enum class ErrorCode {
  kOk = 0,
  kNotFound,         // no such key / chunk / file
  kExists,           // refused to overwrite
  kCorrupt,          // integrity check failed: flipped, truncated or forged data
  kWrongKey,         // data sealed under another volume key, or the key file does not fit
  kUnavailable,      // a resource is busy or unreachable (lock held, peer gone)
  kInvalidArgument,  // hostile or malformed input (ids, keys, files)
  kNoSpace,          // ENOSPC / EDQUOT / SQLITE_FULL
  kIo,               // any other I/O error
  kPermission,       // EACCES / EPERM
  // File-tree errors, each one errno of the mount.
  kNotDirectory,     // ENOTDIR
  kIsDirectory,      // EISDIR
  kNotEmpty,         // ENOTEMPTY
  kNameTooLong,      // ENAMETOOLONG
  kNoAttribute,      // ENODATA: no such extended attribute
  kUnsupported,      // EOPNOTSUPP
  kFileTooLarge,     // EFBIG: past the largest size a file can have here
};

std::string_view ErrorCodeName(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status NotFound(std::string m) { return {ErrorCode::kNotFound, std::move(m)}; }
  static Status Exists(std::string m) { return {ErrorCode::kExists, std::move(m)}; }
  static Status Corrupt(std::string m) { return {ErrorCode::kCorrupt, std::move(m)}; }
  static Status WrongKey(std::string m) { return {ErrorCode::kWrongKey, std::move(m)}; }
  static Status Unavailable(std::string m) { return {ErrorCode::kUnavailable, std::move(m)}; }
  static Status InvalidArgument(std::string m) {
    return {ErrorCode::kInvalidArgument, std::move(m)};
  }
  static Status NoSpace(std::string m) { return {ErrorCode::kNoSpace, std::move(m)}; }
  static Status Io(std::string m) { return {ErrorCode::kIo, std::move(m)}; }
  static Status Permission(std::string m) { return {ErrorCode::kPermission, std::move(m)}; }
  static Status NotDirectory(std::string m) { return {ErrorCode::kNotDirectory, std::move(m)}; }
  static Status IsDirectory(std::string m) { return {ErrorCode::kIsDirectory, std::move(m)}; }
  static Status NotEmpty(std::string m) { return {ErrorCode::kNotEmpty, std::move(m)}; }
  static Status NameTooLong(std::string m) { return {ErrorCode::kNameTooLong, std::move(m)}; }
  static Status NoAttribute(std::string m) { return {ErrorCode::kNoAttribute, std::move(m)}; }
  static Status Unsupported(std::string m) { return {ErrorCode::kUnsupported, std::move(m)}; }
  static Status FileTooLarge(std::string m) { return {ErrorCode::kFileTooLarge, std::move(m)}; }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "corrupt: chunk ab12..: tag mismatch"
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context: `.
  Status WithContext(std::string_view context) const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

// The one place errno becomes a Status. `context` names what was being done
// and to what ("write chunk /data/ab/cd/abcd..").
Status ErrnoStatus(int err, std::string_view context);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok() && "Result built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace dfs::core

#define DFS_CONCAT_INNER_(a, b) a##b
#define DFS_CONCAT_(a, b) DFS_CONCAT_INNER_(a, b)

#define DFS_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::dfs::core::Status dfs_status_ = (expr);     \
    if (!dfs_status_.ok()) return dfs_status_;    \
  } while (0)

#define DFS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#define DFS_ASSIGN_OR_RETURN(lhs, expr) \
  DFS_ASSIGN_OR_RETURN_IMPL_(DFS_CONCAT_(dfs_result_, __LINE__), lhs, expr)
