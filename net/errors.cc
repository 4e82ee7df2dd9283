#include "net/errors.h"

#include <string>

namespace dfs::net {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "dfs.net"; }
  std::string message(int ev) const override {
    switch (static_cast<NetError>(ev)) {
      case NetError::kOk: return "ok";
      case NetError::kBadVersion: return "unsupported protocol version";
      case NetError::kUnknownType: return "unknown frame type";
      case NetError::kFrameTooLarge: return "frame longer than its type allows";
      case NetError::kBadHeader: return "malformed frame header";
      case NetError::kHandshakeFailed: return "malformed or out-of-order handshake message";
      case NetError::kBadProof: return "peer does not hold the network key";
      case NetError::kWeakKey: return "peer sent a weak (low-order) key";
      case NetError::kAuthFailed: return "frame failed authentication";
      case NetError::kCounterExhausted: return "frame counter exhausted";
      case NetError::kBadStream: return "stream protocol violation";
    }
    return "unknown dfs.net error";
  }
};

}  // namespace

const std::error_category& NetCategory() {
  static const Category category;
  return category;
}

}  // namespace dfs::net
