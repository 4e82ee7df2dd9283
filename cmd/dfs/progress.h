// A one-line progress bar on stderr with rate and time left, shown only
// when stderr is a terminal; silent otherwise. Single-threaded use.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dfs::cli {

class Progress {
 public:
  // `total` is 0 when unknown (a pipe).
  Progress(std::string label, std::uint64_t total);
  ~Progress();  // finishes the line

  void Update(std::uint64_t done);

 private:
  void Draw(bool final);

  std::string label_;
  std::uint64_t total_;
  std::uint64_t done_ = 0;
  bool enabled_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// "1.5 GiB"
std::string HumanBytes(std::uint64_t bytes);

}  // namespace dfs::cli
