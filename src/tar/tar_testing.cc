#include "tar/tar_testing.h"

#include <algorithm>
#include <cstring>

#include "base/status_macros.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "tar/compression.h"

namespace naiad::tar::testing {
namespace {

void Put(std::string* block, size_t offset, size_t width, const std::string& value) {
  std::memcpy(block->data() + offset, value.data(), std::min(width, value.size()));
}

}  // namespace

std::string Octal(uint64_t value, size_t width) {
  std::string digits;
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + value % 8));
    value /= 8;
  } while (value != 0);
  if (digits.size() < width - 1) digits.insert(0, width - 1 - digits.size(), '0');
  return digits + std::string(1, '\0');
}

std::string Base256(int64_t value, size_t width) {
  std::string out(width, '\0');
  uint64_t bits = static_cast<uint64_t>(value);
  for (size_t i = width; i-- > 0;) {
    out[i] = static_cast<char>(bits & 0xff);
    bits = value < 0 ? (bits >> 8) | (uint64_t{0xff} << 56) : bits >> 8;
  }
  out[0] = static_cast<char>(value < 0 ? 0xff : 0x80);
  return out;
}

std::string MakeHeader(const HeaderSpec& spec) {
  std::string block(512, '\0');
  Put(&block, 0, 100, spec.name);
  Put(&block, 100, 8, Octal(spec.mode, 8));
  Put(&block, 108, 8,
      spec.base256_ids ? Base256(static_cast<int64_t>(spec.uid), 8) : Octal(spec.uid, 8));
  Put(&block, 116, 8,
      spec.base256_ids ? Base256(static_cast<int64_t>(spec.gid), 8) : Octal(spec.gid, 8));
  Put(&block, 124, 12, Octal(spec.size, 12));
  Put(&block, 136, 12,
      spec.mtime < 0 ? Base256(spec.mtime, 12) : Octal(static_cast<uint64_t>(spec.mtime), 12));
  block[156] = spec.type;
  Put(&block, 157, 100, spec.linkname);
  Put(&block, 257, 8, spec.magic);
  Put(&block, 265, 32, spec.uname);
  Put(&block, 297, 32, spec.gname);
  Put(&block, 329, 8, Octal(spec.devmajor, 8));
  Put(&block, 337, 8, Octal(spec.devminor, 8));
  Put(&block, 345, 155, spec.prefix);
  FixChecksum(&block);
  return block;
}

void FixChecksum(std::string* block, size_t block_offset) {
  char* b = block->data() + block_offset;
  std::memset(b + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += static_cast<unsigned char>(b[i]);
  std::string field = Octal(sum, 7) + " ";  // "0001234\0 "
  std::memcpy(b + 148, field.data(), 8);
}

std::string PaxRecords(const std::vector<std::pair<std::string, std::string>>& records) {
  std::string out;
  for (const auto& [key, value] : records) {
    size_t body = 1 + key.size() + 1 + value.size() + 1;  // " key=value\n"
    size_t length = body + 1;
    while (std::to_string(length).size() + body != length) ++length;
    StrAppend(&out, length, " ", key, "=", value, "\n");
  }
  return out;
}

std::string Padded(std::string data) {
  data.resize((data.size() + 511) / 512 * 512, '\0');
  return data;
}

TarBuilder& TarBuilder::Raw(const std::string& bytes) {
  bytes_ += bytes;
  return *this;
}

TarBuilder& TarBuilder::Add(HeaderSpec spec, const std::string& data) {
  if (spec.size == 0) spec.size = data.size();
  bytes_ += MakeHeader(spec);
  bytes_ += Padded(data);
  return *this;
}

TarBuilder& TarBuilder::File(const std::string& name, const std::string& data) {
  return Add({.name = name}, data);
}

TarBuilder& TarBuilder::Pax(const std::vector<std::pair<std::string, std::string>>& records,
                            char type) {
  return Add({.name = "PaxHeaders/x", .type = type}, PaxRecords(records));
}

absl::StatusOr<std::vector<ReadEntry>> ReadAll(Reader& reader, size_t chunk) {
  std::vector<ReadEntry> out;
  std::string buf(chunk, '\0');
  for (;;) {
    ASSIGN_OR_RETURN(std::optional<Entry> entry, reader.Next());
    if (!entry) return out;
    ReadEntry e{*std::move(entry), ""};
    for (;;) {
      ASSIGN_OR_RETURN(size_t n, reader.Read(buf.data(), buf.size()));
      if (n == 0) break;
      e.content.append(buf.data(), n);
    }
    out.push_back(std::move(e));
  }
}

absl::StatusOr<std::vector<ReadEntry>> ReadTarString(std::string data, ReaderOptions options,
                                                     size_t stream_chunk_limit) {
  ASSIGN_OR_RETURN(auto layer, OpenLayer(std::make_unique<StringInputStream>(std::move(data),
                                                                             stream_chunk_limit)));
  ASSIGN_OR_RETURN(auto reader, Reader::Create(std::move(layer), options));
  return ReadAll(*reader);
}

absl::StatusOr<std::vector<ReadEntry>> ReadLayerFile(const std::string& path,
                                                     ReaderOptions options) {
  ASSIGN_OR_RETURN(auto layer, OpenLayer(path));
  ASSIGN_OR_RETURN(auto reader, Reader::Create(std::move(layer), options));
  return ReadAll(*reader);
}

const ReadEntry* Find(const std::vector<ReadEntry>& entries, const std::string& path) {
  for (const ReadEntry& e : entries) {
    if (e.entry.path == path) return &e;
  }
  return nullptr;
}

absl::Status Shell(const std::string& script, const std::string& cwd) {
  return RunCommandOk({"sh", "-c", script}, {.cwd = cwd}).status();
}

bool HaveCommand(const std::string& name) {
  return Shell(StrCat("command -v ", name, " >/dev/null")).ok();
}

}  // namespace naiad::tar::testing
