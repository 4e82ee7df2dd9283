// A one-line progress bar on stderr with rate and time left, shown only
// when stderr is a terminal; silent otherwise. Single-threaded use.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

namespace dfs::cli {

class Progress {
 public:
  // What is counted: bytes ("1.5 MiB") or chunks ("1200 chunks").
  enum class Unit { kBytes, kChunks };

  // `total` is 0 when unknown (a pipe).
  Progress(std::string label, std::uint64_t total, Unit unit = Unit::kBytes);
  ~Progress();  // finishes the line

  void Update(std::uint64_t done);
  // Shown from the next drawing on (e.g. with what was found so far).
  void SetLabel(std::string label) { label_ = std::move(label); }

 private:
  void Draw(bool final);

  std::string label_;
  std::uint64_t total_;
  Unit unit_;
  std::uint64_t done_ = 0;
  bool enabled_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// "1.5 GiB"
std::string HumanBytes(std::uint64_t bytes);

}  // namespace dfs::cli
