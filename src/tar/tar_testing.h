// File: tar/tar_testing.h
//
// Test helpers for naiad::tar (test-only): hand-built headers for the malformed cases, a driver
// that reads a whole archive, and a shell runner for building inputs with the system's tar.
//
//   TarBuilder tar;
//   tar.File("etc/passwd", "root:x:0:0\n").Pax({{"path", "../evil"}}).File("x", "");
//   std::string bytes = tar.Finish();                       // with the two zero blocks
//   absl::StatusOr<std::vector<ReadEntry>> all = ReadTarString(bytes);
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tar/input_stream.h"
#include "tar/reader.h"

namespace naiad::tar::testing {

// One header block's fields; anything left default is written the way GNU tar would.
struct HeaderSpec {
  std::string name;
  char type = '0';
  uint64_t mode = 0644;
  uint64_t uid = 0;
  uint64_t gid = 0;
  uint64_t size = 0;
  int64_t mtime = 1700000000;
  std::string linkname;
  std::string magic = std::string(
      "ustar\0"
      "00",
      8);  // POSIX; "ustar  \0" for GNU
  std::string uname = "root";
  std::string gname = "root";
  uint64_t devmajor = 0;
  uint64_t devminor = 0;
  std::string prefix;
  bool base256_ids = false;  // write uid/gid in base-256
};

std::string Octal(uint64_t value, size_t width);  // zero-padded, NUL-terminated
std::string Base256(int64_t value, size_t width);
// A 512-byte header with a correct checksum.
std::string MakeHeader(const HeaderSpec& spec);
// Recomputes the checksum of a header after a test patched it.
void FixChecksum(std::string* block, size_t block_offset = 0);
// "<len> key=value\n" records.
std::string PaxRecords(const std::vector<std::pair<std::string, std::string>>& records);
std::string Padded(std::string data);  // zero-padded to a block boundary

class TarBuilder {
 public:
  TarBuilder& Raw(const std::string& bytes);
  // Header (size taken from `data`) + data + padding.
  TarBuilder& Add(HeaderSpec spec, const std::string& data = "");
  TarBuilder& File(const std::string& name, const std::string& data);
  TarBuilder& Pax(const std::vector<std::pair<std::string, std::string>>& records, char type = 'x');
  std::string Finish() const { return bytes_ + std::string(1024, '\0'); }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

struct ReadEntry {
  Entry entry;
  std::string content;
};

// Reads every entry and its content (in `chunk`-byte reads).
absl::StatusOr<std::vector<ReadEntry>> ReadAll(Reader& reader, size_t chunk = 65536);
absl::StatusOr<std::vector<ReadEntry>> ReadTarString(std::string data, ReaderOptions options = {},
                                                     size_t stream_chunk_limit = 0);
// OpenLayer(path) + Reader.
absl::StatusOr<std::vector<ReadEntry>> ReadLayerFile(const std::string& path,
                                                     ReaderOptions options = {});
// The entry with `path`, or nullptr.
const ReadEntry* Find(const std::vector<ReadEntry>& entries, const std::string& path);

// Runs `script` with sh -c in `cwd`; Internal error with the output if it fails.
absl::Status Shell(const std::string& script, const std::string& cwd = "");
bool HaveCommand(const std::string& name);

}  // namespace naiad::tar::testing
