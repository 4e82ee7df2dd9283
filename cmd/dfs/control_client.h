// How the `dfs` commands reach the store: through the node running on the
// data directory (its control socket DIR/control.sock; the node holds
// DIR/lock, so this process could not open the store itself), or, when no
// node runs there, through a FileServer this process opens. Both give the
// same results and the same errors (cmd/node/control_protocol.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/file_server.h"
#include "core/key_file.h"
#include "core/repair.h"
#include "core/status.h"

namespace dfs::cli {

// The file operations of the commands. Single-threaded use.
class FileOps {
 public:
  virtual ~FileOps() = default;
  // Stores everything `fd` yields under `key`; `name` names the source in
  // errors. Errors as core::FileServer::Store.
  virtual core::Status Put(std::string_view key, int fd, const std::string& name,
                           const core::ProgressFn& progress) = 0;
  // Writes the content of `key` to `fd`; `name` names it in errors.
  virtual core::Status Get(std::string_view key, int fd, const std::string& name,
                           const core::ProgressFn& progress) = 0;
  virtual core::Status Delete(std::string_view key) = 0;
  virtual core::Result<bool> Has(std::string_view key) = 0;
  virtual core::Status List(std::string_view prefix,
                            const std::function<bool(const core::FileInfo&)>& fn) = 0;
  virtual core::Result<core::FileInfo> Stat(std::string_view key) = 0;
};

// Through the node when one answers on DATA_DIR/control.sock (no key is
// needed: the node has it); else a FileServer on `data_dir` with the key
// that `load_key` gives, which is called only then. Errors: those of
// load_key and FileServer::Open, or kPermission when the control socket
// exists but refuses this user.
core::Result<std::unique_ptr<FileOps>> OpenFileOps(
    const std::filesystem::path& data_dir,
    const std::function<core::Result<core::VolumeKey>()>& load_key);

// Asks the node running on `data_dir` for "status" or "peers"; returns its
// JSON answer. Errors: kUnavailable (no node runs there, or it did not
// answer in time), kIo.
core::Result<nlohmann::json> AskNode(const std::filesystem::path& data_dir,
                                     const std::string& what);

// Has the node running on `data_dir` verify every chunk it holds and replace
// bad ones from its peers; `progress(checked, bad)` follows it. Waits as
// long as the scrub runs. Errors: as AskNode (no node runs there), kIo.
core::Result<core::ScrubStats> ScrubThroughNode(
    const std::filesystem::path& data_dir,
    const std::function<void(std::uint64_t checked, std::uint64_t bad)>& progress);

// Has the node running on `data_dir` run a repair pass now; `progress`
// follows the chunks checked. Returns the pass (status's "repair" object).
core::Result<nlohmann::json> RepairThroughNode(
    const std::filesystem::path& data_dir, const std::function<void(std::uint64_t checked)>& progress);

// Has the node running on `data_dir` run a chunk collection pass now (with
// this grace period, or the node's). Returns the pass (status's "gc" object).
core::Result<nlohmann::json> GcThroughNode(const std::filesystem::path& data_dir,
                                           std::optional<std::chrono::seconds> grace,
                                           const std::function<void(std::uint64_t chunks)>& progress);

}  // namespace dfs::cli
