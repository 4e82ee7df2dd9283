// Microbenchmarks of the store's hot paths, each beside memcpy and plain
// SHA-256 over the same bytes in the same run. Compare bytes_per_second.
//   build/bin/core_bench [--benchmark_repetitions=5 --benchmark_report_aggregates_only=true]
#include <cstring>

#include <benchmark/benchmark.h>
#include <cryptopp/sha.h>

#include "core/chunker.h"
#include "core/io.h"
#include "core/volume_crypto.h"

namespace dfs::core {
namespace {

constexpr std::size_t kTotal = 64 << 20;
constexpr std::size_t kChunk = 1 << 20;

const Bytes& Data() {
  static const Bytes data = [] {
    Bytes b(kTotal);
    std::uint64_t x = 0x243f6a8885a308d3ull;
    for (std::size_t i = 0; i < b.size(); i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(b.data() + i, &x, 8);
    }
    return b;
  }();
  return data;
}

const VolumeCrypto& Crypto() {
  static const VolumeCrypto crypto(*VolumeKey::FromBytes(Bytes(32, 0x42)));
  return crypto;
}

void BM_Memcpy(benchmark::State& state) {
  Bytes out(kChunk);
  for (auto _ : state) {
    for (std::size_t off = 0; off < kTotal; off += kChunk) {
      std::memcpy(out.data(), Data().data() + off, kChunk);
      benchmark::ClobberMemory();
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kTotal));
}

void BM_Sha256(benchmark::State& state) {
  std::uint8_t digest[32];
  for (auto _ : state) {
    for (std::size_t off = 0; off < kTotal; off += kChunk) {
      CryptoPP::SHA256().CalculateDigest(digest, Data().data() + off, kChunk);
    }
    benchmark::DoNotOptimize(digest);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kTotal));
}

void BM_Chunker(benchmark::State& state) {
  Chunker chunker(Crypto().chunker_seed());
  std::size_t chunks = 0;
  for (auto _ : state) {
    MemoryReader reader(Data());
    ChunkStream stream(chunker, reader);
    for (;;) {
      auto next = stream.Next();
      if (!next.ok() || !next->has_value()) break;
      ++chunks;
    }
  }
  benchmark::DoNotOptimize(chunks);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kTotal));
}

// The cut search alone over bytes already in memory (BM_Chunker adds the
// stream's read into chunk buffers).
void BM_ChunkerCuts(benchmark::State& state) {
  Chunker chunker(Crypto().chunker_seed());
  std::size_t chunks = 0;
  for (auto _ : state) {
    ByteSpan rest(Data());
    while (!rest.empty()) {
      rest = rest.subspan(chunker.NextChunkSize(rest));
      ++chunks;
    }
  }
  benchmark::DoNotOptimize(chunks);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kTotal));
}

void BM_ChunkId(benchmark::State& state) {
  for (auto _ : state) {
    for (std::size_t off = 0; off < kTotal; off += kChunk) {
      benchmark::DoNotOptimize(Crypto().ComputeId(ByteSpan(Data().data() + off, kChunk)));
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kTotal));
}

void BM_Seal(benchmark::State& state) {
  Bytes sealed;
  ChunkId id = Crypto().ComputeId(ByteSpan(Data().data(), kChunk));
  for (auto _ : state) {
    for (std::size_t off = 0; off < kTotal; off += kChunk) {
      Crypto().Seal(id, ByteSpan(Data().data() + off, kChunk), &sealed);
    }
    benchmark::DoNotOptimize(sealed.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kTotal));
}

void BM_Unseal(benchmark::State& state) {
  // 64 distinct sealed chunks, opened in turn.
  std::vector<std::pair<ChunkId, Bytes>> sealed;
  for (std::size_t off = 0; off < kTotal; off += kChunk) {
    ByteSpan plain(Data().data() + off, kChunk);
    ChunkId id = Crypto().ComputeId(plain);
    Bytes s;
    Crypto().Seal(id, plain, &s);
    sealed.emplace_back(id, std::move(s));
  }
  Bytes out;
  for (auto _ : state) {
    for (const auto& [id, s] : sealed) {
      if (!Crypto().Unseal(id, s, &out).ok()) state.SkipWithError("unseal failed");
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kTotal));
}

BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Sha256)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Chunker)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ChunkerCuts)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ChunkId)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Seal)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Unseal)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace dfs::core

BENCHMARK_MAIN();
