#include "cmd/dfs/paths.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>

namespace dfs::cli {
namespace {

std::filesystem::path Home() {
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') return h;
  if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr) return pw->pw_dir;
  return "/";
}

std::filesystem::path XdgDir(const char* var, const char* fallback) {
  if (const char* v = std::getenv(var); v != nullptr && v[0] == '/') return v;
  return Home() / fallback;
}

}  // namespace

std::filesystem::path DefaultDataDir() { return XdgDir("XDG_DATA_HOME", ".local/share") / "dfs"; }

std::filesystem::path DefaultKeyPath() {
  return XdgDir("XDG_CONFIG_HOME", ".config") / "dfs" / "volume.key";
}

}  // namespace dfs::cli
