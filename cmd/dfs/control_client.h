// Asks a running dfsd, through its control socket DIR/control.sock, one
// question ("status", "peers") and returns its JSON answer.
#pragma once

#include <filesystem>
#include <string>

#include "core/status.h"

namespace dfs::cli {

// Errors: kUnavailable (no node is running on DIR), kIo.
core::Result<std::string> AskNode(const std::filesystem::path& data_dir, const std::string& what);

}  // namespace dfs::cli
