// File: storage/backend.h
//
// Where blob bytes come from. A BlobBackend reads byte ranges of data blobs named by their id
// (sha256 hex of the blob). Implementations: LocalfsBackend (a directory of blob files) and
// RegistryBackend (ranged GETs of /v2/<repo>/blobs/sha256:<id> through mirrors, a proxy or the
// origin registry).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<BlobBackend> backend, CreateBackend(device.backend));
//   BlobRead read;
//   RETURN_IF_ERROR(backend->Read({.blob_id = id, .offset = off, .length = len}, &read));
//   // read.data holds exactly `len` bytes; read.source names who served them ("origin", ...)
//
// A read that returns fewer or more bytes than asked for is an error (DataLoss), never a short
// read. Backends retry transport failures themselves (retry_limit); the caller sees the final
// outcome. When the caller finds the bytes bad (digest mismatch) it reports the source with
// ReportBadData() and reads again with that source in `exclude_sources`.
//
// Thread-safe: many FUSE and prefetch threads read at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "net/http_types.h"

namespace naiad::storage {

enum class ReadPriority {
  kOnDemand,  // a reader is waiting: more retries, Dragonfly priority 6
  kPrefetch,  // background: fewer retries, Dragonfly priority 3, X-Dragonfly-Prefetch
};

struct BlobRange {
  std::string blob_id;  // sha256 hex, no "sha256:" prefix
  uint64_t offset = 0;
  uint64_t length = 0;
  ReadPriority priority = ReadPriority::kOnDemand;
  // Sources not to use for this read (names as in BlobRead::source).
  std::vector<std::string> exclude_sources;
  const net::CancellationToken* cancel = nullptr;
};

struct BlobRead {
  std::string data;
  std::string source;  // "localfs", "origin", "proxy", or "mirror:<host>"
};

// Counters for one source, for the API's metrics.
struct SourceMetrics {
  std::string source;
  uint64_t requests = 0;  // HTTP requests (or file reads) made, retries included
  uint64_t errors = 0;    // requests that failed (transport or HTTP error)
  uint64_t bytes = 0;     // body bytes received
  uint64_t bad_data = 0;  // reads reported bad by the caller
  bool healthy = true;    // mirrors and proxy: the health checker's current view
};

class BlobBackend {
 public:
  virtual ~BlobBackend() = default;

  // The blob's size in bytes (registry: HEAD's Content-Length).
  virtual absl::StatusOr<uint64_t> BlobSize(const std::string& blob_id) = 0;

  // Reads exactly range.length bytes at range.offset into out->data.
  virtual absl::Status Read(const BlobRange& range, BlobRead* out) = 0;

  // The bytes `source` served for a read were bad (the caller checked digests).
  virtual void ReportBadData(const std::string& source) = 0;

  // Per-source counters, origin first.
  virtual std::vector<SourceMetrics> Metrics() const = 0;
};

}  // namespace naiad::storage
