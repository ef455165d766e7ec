#include "tar/writer.h"

#include <cstdio>
#include <cstring>

#include "base/status_macros.h"
#include "base/strings.h"
#include "tar/format.h"

namespace naiad::tar {
namespace {

constexpr size_t kBlock = 512;

using Header = format::UstarHeader;

char TypeFlag(EntryType type) {
  switch (type) {
    case EntryType::kRegular:
      return '0';
    case EntryType::kHardlink:
      return '1';
    case EntryType::kSymlink:
      return '2';
    case EntryType::kCharDevice:
      return '3';
    case EntryType::kBlockDevice:
      return '4';
    case EntryType::kDirectory:
      return '5';
    case EntryType::kFifo:
      return '6';
  }
  return '0';
}

// Writes `value` as zero-padded octal into a field; false if it does not fit.
template <size_t N>
bool Octal(char (&field)[N], uint64_t value) {
  if (N - 1 < 22 && value >= (uint64_t{1} << (3 * (N - 1)))) return false;
  std::snprintf(field, N, "%0*llo", static_cast<int>(N - 1),
                static_cast<unsigned long long>(value));
  return true;
}

void PaxRecord(std::string& out, std::string_view key, std::string_view value) {
  size_t body = 1 + key.size() + 1 + value.size() + 1;  // " key=value\n"
  size_t length = body + std::to_string(body).size();
  if (std::to_string(length).size() != std::to_string(body).size()) ++length;
  StrAppend(&out, length, " ", key, "=", value, "\n");
}

std::string EntryName(const Entry& e) {
  std::string name = e.path.empty() ? "." : e.path;
  if (e.type == EntryType::kDirectory) name += "/";
  return name;
}

// Fills `h` and collects what did not fit into pax records.
void FillHeader(const Entry& e, Header& h, std::string& pax) {
  std::memset(&h, 0, sizeof(h));
  std::string name = EntryName(e);
  if (name.size() <= sizeof(h.name)) {
    std::memcpy(h.name, name.data(), name.size());
  } else {
    PaxRecord(pax, "path", name);
    std::memcpy(h.name, name.data(), sizeof(h.name));
  }
  if (e.link_target.size() <= sizeof(h.linkname)) {
    std::memcpy(h.linkname, e.link_target.data(), e.link_target.size());
  } else {
    PaxRecord(pax, "linkpath", e.link_target);
  }
  Octal(h.mode, e.mode & 07777);
  if (!Octal(h.uid, e.uid)) PaxRecord(pax, "uid", std::to_string(e.uid));
  if (!Octal(h.gid, e.gid)) PaxRecord(pax, "gid", std::to_string(e.gid));
  uint64_t size = e.type == EntryType::kRegular ? e.size : 0;
  if (!Octal(h.size, size)) PaxRecord(pax, "size", std::to_string(size));
  Octal(h.mtime, e.mtime < 0 ? 0 : static_cast<uint64_t>(e.mtime));
  if (e.mtime_nsec != 0) {
    char frac[16];
    std::snprintf(frac, sizeof(frac), "%09u", e.mtime_nsec);
    PaxRecord(pax, "mtime", StrCat(e.mtime, ".", frac));
  }
  for (const auto& [key, value] : e.xattrs) PaxRecord(pax, StrCat("SCHILY.xattr.", key), value);
  h.typeflag = TypeFlag(e.type);
  std::memcpy(h.magic, "ustar", 6);  // POSIX magic "ustar\0" and version "00"
  std::memcpy(h.version, "00", 2);
  if (e.type == EntryType::kCharDevice || e.type == EntryType::kBlockDevice) {
    Octal(h.devmajor, e.dev_major);
    Octal(h.devminor, e.dev_minor);
  }
}

std::string Seal(Header& h) {
  // POSIX: six octal digits, NUL, space.
  std::snprintf(h.chksum, sizeof(h.chksum), "%06o",
                format::HeaderChecksum(reinterpret_cast<const char*>(&h)));
  h.chksum[7] = ' ';
  return std::string(reinterpret_cast<const char*>(&h), sizeof(h));
}

}  // namespace

absl::Status Writer::Emit(std::string_view data) {
  RETURN_IF_ERROR(sink_(data));
  offset_ += data.size();
  return absl::OkStatus();
}

absl::Status Writer::EmitPadding() {
  static const char kZeros[kBlock] = {};
  size_t pad = (kBlock - offset_ % kBlock) % kBlock;
  return pad == 0 ? absl::OkStatus() : Emit(std::string_view(kZeros, pad));
}

absl::Status Writer::Begin(const Entry& entry) {
  if (in_entry_)
    return absl::FailedPreconditionError(StrCat("entry \"", current_path_, "\" not ended"));
  Header h;
  std::string pax;
  FillHeader(entry, h, pax);
  if (!pax.empty()) {
    Header x;
    std::memset(&x, 0, sizeof(x));
    std::string xname = StrCat("PaxHeaders/", EntryName(entry)).substr(0, sizeof(x.name));
    std::memcpy(x.name, xname.data(), xname.size());
    Octal(x.mode, 0644);
    Octal(x.size, pax.size());
    Octal(x.mtime, 0);
    x.typeflag = 'x';
    std::memcpy(x.magic, "ustar", 6);
    std::memcpy(x.version, "00", 2);
    RETURN_IF_ERROR(Emit(Seal(x)));
    RETURN_IF_ERROR(Emit(pax));
    RETURN_IF_ERROR(EmitPadding());
  }
  RETURN_IF_ERROR(Emit(Seal(h)));
  in_entry_ = true;
  current_path_ = entry.path;
  remaining_ = entry.type == EntryType::kRegular ? entry.size : 0;
  return absl::OkStatus();
}

absl::Status Writer::Write(std::string_view data) {
  if (!in_entry_ || data.size() > remaining_) {
    return absl::FailedPreconditionError(
        StrCat("entry \"", current_path_, "\": more data than its size"));
  }
  remaining_ -= data.size();
  return Emit(data);
}

absl::Status Writer::End() {
  if (!in_entry_) return absl::FailedPreconditionError("no entry to end");
  if (remaining_ != 0) {
    return absl::FailedPreconditionError(
        StrCat("entry \"", current_path_, "\": ", remaining_, " bytes missing"));
  }
  in_entry_ = false;
  return EmitPadding();
}

absl::Status Writer::Finish() {
  if (in_entry_)
    return absl::FailedPreconditionError(StrCat("entry \"", current_path_, "\" not ended"));
  static const char kZeros[2 * kBlock] = {};
  return Emit(std::string_view(kZeros, sizeof(kZeros)));
}

}  // namespace naiad::tar
