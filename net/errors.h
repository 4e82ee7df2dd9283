// Errors of dfs::net as std::error_code values (category "dfs.net").
#pragma once

#include <system_error>

namespace dfs::net {

enum class NetError {
  kOk = 0,
  kBadVersion = 1,       // frame or handshake version we do not speak
  kUnknownType,          // frame type not in the table
  kFrameTooLarge,        // declared length above the type's maximum
  kBadHeader,            // reserved bits set
  kHandshakeFailed,      // malformed handshake message or a message out of order
  kBadProof,             // the peer does not hold the network key
  kWeakKey,              // a low-order X25519 public key
  kAuthFailed,           // a sealed frame did not authenticate (forged, replayed, reordered)
  kCounterExhausted,     // 2^64 frames on one key: the connection must be rekeyed
  kBadStream,            // a stream frame that breaks the stream rules (docs/protocol.md)
};

const std::error_category& NetCategory();
inline std::error_code make_error_code(NetError e) { return {static_cast<int>(e), NetCategory()}; }

}  // namespace dfs::net

template <>
struct std::is_error_code_enum<dfs::net::NetError> : std::true_type {};
