// Default locations (XDG base directories) for the dfs command line.
#pragma once

#include <filesystem>

namespace dfs::cli {

// $XDG_DATA_HOME/dfs, else ~/.local/share/dfs.
std::filesystem::path DefaultDataDir();
// $XDG_CONFIG_HOME/dfs/volume.key, else ~/.config/dfs/volume.key — outside
// the data directory, so copying a data directory never copies its key.
std::filesystem::path DefaultKeyPath();

}  // namespace dfs::cli
