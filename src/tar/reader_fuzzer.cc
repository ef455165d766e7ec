// libFuzzer target for the layer reader: arbitrary bytes go through OpenLayer() (so gzip and zstd
// framing get fuzzed too), Next() and Read() until the end or the first error. Errors are fine;
// crashes, hangs, sanitizer reports and a regular entry whose content length differs from its
// size are bugs.
//
//   scripts/fuzz tar_reader_fuzzer 300     # clang build in build-fuzz, 300 seconds
//
// tar_test also compiles this file with g++ and calls LLVMFuzzerTestOneInput() on thousands of
// mutated archives (reader_fuzz_test.cc).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "tar/compression.h"
#include "tar/input_stream.h"
#include "tar/reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using naiad::tar::Entry;
  using naiad::tar::EntryType;
  // A few bytes can declare a sparse file of max_entry_size bytes of zeros; keep each input's
  // work small so the fuzzer explores instead of memset-ing.
  constexpr uint64_t kMaxEntrySize = uint64_t{64} << 20;
  constexpr uint64_t kMaxBytesPerInput = uint64_t{256} << 20;
  auto layer = naiad::tar::OpenLayer(std::make_unique<naiad::tar::StringInputStream>(
      std::string(reinterpret_cast<const char*>(data), size)));
  if (!layer.ok()) return 0;
  auto reader = naiad::tar::Reader::Create(*std::move(layer), {.max_entry_size = kMaxEntrySize});
  if (!reader.ok()) return 0;
  uint64_t total = 0;
  static char buf[1 << 16];
  for (;;) {
    absl::StatusOr<std::optional<Entry>> entry = (*reader)->Next();
    if (!entry.ok() || !entry->has_value()) return 0;
    uint64_t content = 0;
    for (;;) {
      absl::StatusOr<size_t> n = (*reader)->Read(buf, sizeof(buf));
      if (!n.ok()) return 0;
      if (*n == 0) break;
      content += *n;
      total += *n;
      if (total > kMaxBytesPerInput) return 0;
    }
    const bool regular = (*entry)->type == EntryType::kRegular;
    if (content != (regular ? (*entry)->size : 0)) __builtin_trap();
  }
}
