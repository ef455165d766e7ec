// File: tar/reader.h
//
// A streaming, hardened reader of OCI layer tarballs. `naiad image create` walks a layer with it
// to build a RAFS image without unpacking the layer: entries come out one at a time with their
// metadata and a cursor over their content, and memory stays flat in the layer's size: one
// buffer (default 1 MiB), at most a few MiB of extension headers and 16 MiB of sparse map for the
// current entry, and the decompressor's window (tar/compression.h).
//
//   ASSIGN_OR_RETURN(auto layer, OpenLayer("/cache/blobs/sha256/ab12..."));  // tar/.gz/.zst
//   ASSIGN_OR_RETURN(auto reader, Reader::Create(std::move(layer), {}));
//   for (;;) {
//     ASSIGN_OR_RETURN(std::optional<Entry> entry, reader->Next());
//     if (!entry) break;                                   // end of the archive
//     if (entry->type == EntryType::kRegular) {
//       for (;;) {
//         ASSIGN_OR_RETURN(size_t n, reader->Read(buf, sizeof(buf)));
//         if (n == 0) break;                               // end of this entry
//         chunker.Update(std::string_view(buf, n));
//       }
//     }
//   }
//
// Formats: V7, ustar, GNU (long names 'L'/'K', old sparse 'S', volume labels 'V' skipped, dump
// directories 'D' as directories) and PAX ('x'/'X' and 'g' headers; see tar/pax_attributes.h for
// the keys), GNU sparse files in all four encodings (tar/sparse.h), base-256 numeric fields,
// contiguous files '7' as regular files, and V7 regular entries whose name ends in '/' as
// directories. Hardlinks, symlinks, devices, FIFOs and '5' directories carry no data: their size
// field is ignored, as by Go's archive/tar, which writes and unpacks most layers ('D' and
// trailing-slash directories skip the data their size announces).
//
// End of archive: two zero blocks (what follows them, usually record padding, is never read), or
// one zero block then the end of the stream, or the end of the stream right after an entry
// (GNU tar accepts the last two with a warning; layers cut short exactly at an entry boundary
// cannot be told apart from complete ones, which the layer digest catches). One zero block
// followed by anything but zeros is DataLoss: readers disagree on what follows it.
//
// Hardening, each failure InvalidArgument naming the entry (as stored) and its header offset,
// e.g. `tar entry "../etc/passwd" at offset 1536: path escapes the layer root`:
//   - paths are normalized ("./a//b/" -> "a/b"; "./", "." and "/" -> "", the layer root, which
//     must be a directory) and checked by NormalizePath() (tar/path.h): no "..", no absolute
//     paths unless strip_leading_slash, components <= 255 bytes, paths <= 4096, no NULs;
//   - hardlink targets get the same treatment (and may not name the root); symlink targets are
//     kept as stored, and with reject_escaping_symlinks relative ones may not climb above the
//     root (CheckSymlinkTarget());
//   - sizes over max_entry_size, extended headers over 1 MiB, unknown type flags, malformed or
//     out-of-range sparse maps, numeric fields that do not parse or ids over 32 bits;
//   - more than max_hole_bytes_read bytes of sparse holes read as zeros (a sparse-file bomb).
// A header with a bad checksum and a stream that ends inside a header or an entry's data are
// DataLoss. After any error the reader is finished: every later call returns the same error.
//
// Thread safety: a Reader is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tar/compression.h"
#include "tar/input_stream.h"

namespace naiad::tar {

enum class EntryType {
  kRegular,
  kDirectory,
  kSymlink,
  kHardlink,
  kCharDevice,
  kBlockDevice,
  kFifo
};

std::string_view EntryTypeName(EntryType type);  // "regular", "directory", ...

struct Entry {
  std::string path;  // normalized, relative to the layer root; "" is the root itself
  EntryType type = EntryType::kRegular;
  uint32_t mode = 0;  // permission bits with setuid/setgid/sticky (07777); no file-type bits
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string uname;  // owner names, informational (ids are authoritative)
  std::string gname;
  uint64_t size = 0;  // logical size of a regular file (the expanded size if sparse); else 0
  int64_t mtime = 0;  // seconds since the epoch
  uint32_t mtime_nsec = 0;
  // Symlink: the target exactly as stored. Hardlink: the target's normalized path, i.e. an
  // earlier entry's `path`.
  std::string link_target;
  uint32_t dev_major = 0;  // character and block devices
  uint32_t dev_minor = 0;
  // From PAX SCHILY.xattr.* and LIBARCHIVE.xattr.* (decoded); names unique, in archive order.
  std::vector<std::pair<std::string, std::string>> xattrs;
  bool sparse = false;  // stored as a GNU sparse file; Read() still returns every byte
  // Offset in the (decompressed) tar stream of the entry's own header block; its PAX or GNU
  // long-name headers, if any, come before it.
  uint64_t header_offset = 0;
};

struct ReaderOptions {
  // Accept "/usr/bin/x" as "usr/bin/x" instead of rejecting it (hardlink targets too).
  bool strip_leading_slash = false;
  // Reject relative symlink targets that climb above the layer root from the link's directory.
  bool reject_escaping_symlinks = true;
  // Largest logical or stored entry size accepted.
  uint64_t max_entry_size = uint64_t{1} << 40;
  // The read buffer; at least 64 KiB is used.
  size_t buffer_size = size_t{1} << 20;
  // Zeros that Read() may make up for the holes of sparse entries, summed over the archive. A few
  // bytes of sparse map can place a byte of data in every MiB of a huge file, and a consumer
  // that reads (and hashes) the file a chunk at a time then handles a MiB of zeros per map line;
  // past this budget Read() fails instead. Holes moved past with SkipHole() do not count.
  uint64_t max_hole_bytes_read = uint64_t{16} << 30;
};

class Reader {
 public:
  // Reads the tar stream `stream` (already decompressed; see OpenLayer()). Never fails today;
  // the StatusOr leaves room for option validation.
  static absl::StatusOr<std::unique_ptr<Reader>> Create(std::unique_ptr<InputStream> stream,
                                                        ReaderOptions options = {});
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // Moves to the next entry, skipping whatever of the current entry's content was not read.
  // std::nullopt at the end of the archive (and on every call after it).
  absl::StatusOr<std::optional<Entry>> Next();

  // Reads up to `n` bytes of the current entry's logical content: holes of sparse files come
  // back as zeros. Returns 0 at the end of the entry (at once for non-regular entries, and
  // before the first Next()); may return fewer than `n` bytes before that.
  absl::StatusOr<size_t> Read(char* buf, size_t n);

  // How many bytes from the current read position of a sparse entry are a hole: zeros that Read()
  // makes up rather than reads, up to the next data segment or the end of the entry. 0 when the
  // next byte is data, for entries that are not sparse, and after an error.
  uint64_t HoleAhead() const;
  // Moves the read position past `n` bytes of hole without producing them, for consumers that
  // record holes rather than zeros (`naiad image create`: a 1 TiB sparse file of a few data bytes
  // then costs a few index entries, not 1 TiB of zeros hashed). InvalidArgument if `n` exceeds
  // HoleAhead(); no-op for 0.
  absl::Status SkipHole(uint64_t n);

  // Bytes of the tar stream consumed so far, for progress reports.
  uint64_t offset() const;

 private:
  struct State;
  explicit Reader(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace naiad::tar
