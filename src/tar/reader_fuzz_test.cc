// Runs the fuzz target (reader_fuzzer.cc, compiled here with g++ as a plain function) over
// deterministic mutations of a small archive that uses every header kind, so the ordinary test
// suite catches crashes, hangs and content-length mismatches without a clang build.
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "base/status_matchers.h"
#include "tar/format.h"
#include "tar/tar_testing.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace naiad::tar {
namespace {

using ::naiad::tar::testing::FixChecksum;
using ::naiad::tar::testing::HeaderSpec;
using ::naiad::tar::testing::Octal;
using ::naiad::tar::testing::Padded;
using ::naiad::tar::testing::TarBuilder;

// Every header kind the reader knows, in a few KiB.
std::string Seed() {
  const std::string gnu("ustar  \0", 8);
  TarBuilder tar;
  tar.Add({.name = "./", .type = '5', .mode = 0755});
  tar.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  tar.Pax({{"path", "long/" + std::string(120, 'p')},
           {"mtime", "1.5"},
           {"SCHILY.xattr.user.a", "v"},
           {"LIBARCHIVE.xattr.user.b", "dg=="},
           {"uid", "70000"}});
  tar.File("x", std::string(700, 'x'));
  tar.Add({.name = "././@LongLink", .type = 'L', .magic = gnu}, std::string(130, 'L') + '\0');
  tar.Add({.name = "short", .type = '2', .linkname = "etc/passwd", .magic = gnu});
  tar.Add({.name = "hard", .type = '1', .linkname = "etc/passwd"});
  tar.Add({.name = "dev", .type = '3', .devmajor = 1, .devminor = 3});
  tar.Add({.name = "fifo", .type = '6'});
  tar.Pax({{"comment", "global"}, {"gid", "5"}}, 'g');
  // Old GNU sparse: two segments in the header.
  std::string sparse =
      ::naiad::tar::testing::MakeHeader({.name = "sp", .type = 'S', .size = 4, .magic = gnu});
  sparse.replace(386, 12, Octal(2, 12));
  sparse.replace(398, 12, Octal(2, 12));
  sparse.replace(410, 12, Octal(100, 12));
  sparse.replace(422, 12, Octal(2, 12));
  sparse.replace(483, 12, Octal(300, 12));
  FixChecksum(&sparse);
  tar.Raw(sparse + Padded("abcd"));
  // PAX 1.0 sparse.
  tar.Pax({{"GNU.sparse.major", "1"},
           {"GNU.sparse.minor", "0"},
           {"GNU.sparse.name", "sp10"},
           {"GNU.sparse.realsize", "2000"}});
  tar.Add({.name = "GNUSparseFile.1/sp10"}, Padded("1\n1000\n3\n") + "xyz");
  tar.Pax({{"GNU.sparse.map", "0,1,9,1"}, {"GNU.sparse.size", "10"}}).File("sp01", "AB");
  return tar.Finish();
}

TEST(TarReaderFuzz, SeedIsValid) {
  ASSERT_OK_AND_ASSIGN(auto entries, ::naiad::tar::testing::ReadTarString(Seed()));
  EXPECT_EQ(entries.size(), 10u);
}

TEST(TarReaderFuzz, MutatedArchivesNeverCrashOrHang) {
  const std::string seed = Seed();
  // Header blocks get their checksums repaired after mutation half the time, so mutations reach
  // the field decoders instead of all failing the checksum.
  std::vector<size_t> headers;
  for (size_t off = 0; off + 512 <= seed.size(); off += 512) {
    if (!format::IsZeroBlock(seed.data() + off) && format::ChecksumMatches(seed.data() + off)) {
      headers.push_back(off);
    }
  }
  ASSERT_GE(headers.size(), 10u);
  std::mt19937_64 rng(20240611);
  const char interesting[] = {'\0', '\xff', '\x80', '0', '7', '9', ' ', '/', '.',
                              '\n', '=',    'x',    'g', 'L', 'S', '1', '2'};
  auto slowest = std::chrono::steady_clock::duration::zero();
  for (int i = 0; i < 5000; ++i) {
    std::string input = seed;
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      // Aim at headers most of the time: that is where the parsing is.
      size_t pos = rng() % 2 ? headers[rng() % headers.size()] + rng() % 512 : rng() % input.size();
      if (pos >= input.size()) continue;
      switch (rng() % 5) {
        case 0:
          input[pos] = static_cast<char>(input[pos] ^ (1 << (rng() % 8)));
          break;
        case 1:
          input[pos] = interesting[rng() % sizeof(interesting)];
          break;
        case 2:
          input[pos] = static_cast<char>(rng());
          break;
        case 3:
          input.resize(pos);
          break;  // truncate
        case 4:
          input.insert(pos, std::string(1 + rng() % 600, interesting[rng() % sizeof(interesting)]));
          break;
      }
    }
    if (rng() % 2) {
      for (size_t off : headers) {
        if (off + 512 <= input.size()) FixChecksum(&input, off);
      }
    }
    auto start = std::chrono::steady_clock::now();
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    slowest = std::max(slowest, std::chrono::steady_clock::now() - start);
  }
  // A hang would hit the ctest timeout; this bounds the worst single input much tighter.
  EXPECT_LT(slowest, std::chrono::seconds(5));
}

TEST(TarReaderFuzz, CompressedGarbageNeverCrashes) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 500; ++i) {
    std::string input =
        i % 2 ? std::string("\x1f\x8b\x08\x00", 4) : std::string("\x28\xb5\x2f\xfd", 4);
    input.resize(4 + rng() % 2000);
    for (size_t j = 4; j < input.size(); ++j) input[j] = static_cast<char>(rng());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  }
}

}  // namespace
}  // namespace naiad::tar
