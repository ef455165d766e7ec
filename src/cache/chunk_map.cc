#include "cache/chunk_map.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "base/file.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::cache {
namespace {

constexpr size_t kAllReadyOffset = offsetof(ChunkMapHeader, all_ready);

std::atomic_ref<uint8_t> ByteRef(uint8_t* base, uint32_t index) {
  return std::atomic_ref<uint8_t>(base[kChunkMapHeaderSize + index / 8]);
}

constexpr uint8_t BitMask(uint32_t index) { return static_cast<uint8_t>(0x80u >> (index % 8)); }

std::atomic_ref<uint32_t> AllReadyRef(uint8_t* base) {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(base + kAllReadyOffset));
}

// Why an existing map cannot be used, or "" if it can.
std::string HeaderProblem(const ChunkMapHeader& header) {
  if (header.magic == 0 && header.version == 0 && header.magic2 == 0 && header.all_ready == 0) {
    return "zeroed header";
  }
  if (header.magic != kChunkMapMagic || header.magic2 != kChunkMapMagic2) return "bad magic";
  if (header.version != kChunkMapVersion) return StrCat("version ", header.version);
  if (header.all_ready != 0 && header.all_ready != kChunkMapAllReady) return "bad all-ready mark";
  return "";
}

// Builds an empty map in a temporary file beside `path` and renames it over `path`.
absl::Status CreateEmpty(const std::string& path, uint32_t chunk_count) {
  std::string temp = StrCat(path, ".tmp-XXXXXX");
  int raw_fd = ::mkostemp(temp.data(), O_CLOEXEC);  // mode 0600
  if (raw_fd < 0) return ErrnoError(errno, StrCat("create temporary file for ", path));
  UniqueFd fd(raw_fd);
  auto fail = [&](const absl::Status& status) {
    ::unlink(temp.c_str());
    return status;
  };
  if (::ftruncate(fd.get(), static_cast<off_t>(ChunkMapFileSize(chunk_count))) != 0) {
    return fail(ErrnoError(errno, StrCat("truncate ", temp)));
  }
  ChunkMapHeader header{};
  header.magic = kChunkMapMagic;
  header.version = kChunkMapVersion;
  header.magic2 = kChunkMapMagic2;
  header.all_ready = 0;
  absl::Status status =
      PwriteFull(fd.get(), std::string_view(reinterpret_cast<const char*>(&header), 16), 0);
  if (!status.ok()) return fail(Annotate(status, StrCat("write ", temp)));
  // One fsync per new blob: a map renamed into place is complete even after a power failure
  // (a zeroed one would be re-initialised anyway, so this only saves a reset).
  if (::fsync(fd.get()) != 0) return fail(ErrnoError(errno, StrCat("fsync ", temp)));
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    return fail(ErrnoError(errno, StrCat("rename ", temp, " to ", path)));
  }
  return absl::OkStatus();
}

// Maps an existing map file of exactly `size` bytes, read-write and shared.
absl::StatusOr<uint8_t*> MapFile(const std::string& path, uint64_t size) {
  ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_RDWR));
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (addr == MAP_FAILED) return ErrnoError(errno, StrCat("mmap ", path));
  return static_cast<uint8_t*>(addr);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChunkMap>> ChunkMap::Open(const std::string& path,
                                                         uint32_t chunk_count, bool reset) {
  if (chunk_count == 0) {
    return absl::InvalidArgumentError(StrCat("chunk map ", path, ": blob has no chunk count"));
  }
  const uint64_t size = ChunkMapFileSize(chunk_count);
  std::string problem;
  bool create = false;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return ErrnoError(errno, StrCat("stat ", path));
    create = true;  // a new map, nothing to report
  } else if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(StrCat("chunk map ", path, " is not a regular file"));
  } else if (reset) {
    problem = "its data file is new or cut short";
    create = true;
  } else if (static_cast<uint64_t>(st.st_size) != size) {
    problem = StrCat("size ", st.st_size, ", expected ", size);
    create = true;
  }
  uint8_t* base = nullptr;
  if (!create) {
    ASSIGN_OR_RETURN(base, MapFile(path, size));
    ChunkMapHeader header;
    std::memcpy(&header, base, sizeof(header));
    problem = HeaderProblem(header);
    if (!problem.empty()) {
      ::munmap(base, size);
      base = nullptr;
      create = true;
    }
  }
  if (create) {
    if (!problem.empty()) {
      LogWarn("chunk map unusable, starting empty", {{"path", path}, {"reason", problem}});
    }
    RETURN_IF_ERROR(CreateEmpty(path, chunk_count));
    ASSIGN_OR_RETURN(base, MapFile(path, size));
  }

  auto map = std::unique_ptr<ChunkMap>(new ChunkMap(path, chunk_count, base, !problem.empty()));
  // Count the ready bits, ignoring the padding bits after the last chunk.
  uint32_t ready = 0;
  const uint8_t* bits = base + kChunkMapHeaderSize;
  const uint32_t full_bytes = chunk_count / 8;
  for (uint32_t i = 0; i < full_bytes; ++i) ready += std::popcount(bits[i]);
  if (chunk_count % 8 != 0) {
    const uint8_t valid = static_cast<uint8_t>(0xFF00u >> (chunk_count % 8));
    ready += std::popcount(static_cast<uint8_t>(bits[full_bytes] & valid));
  }
  map->ready_count_.store(ready, std::memory_order_release);
  // The bits are the truth: a mark left set with a chunk missing (a crash between clearing a bit
  // and clearing the mark) is dropped, a missing mark over a full map is added.
  const uint32_t mark = AllReadyRef(base).load(std::memory_order_acquire);
  if ((mark == kChunkMapAllReady) != (ready == chunk_count)) {
    if (mark == kChunkMapAllReady) {
      LogWarn("chunk map all-ready mark without all chunks, dropping it",
              {{"path", path}, {"ready", ready}, {"chunks", chunk_count}});
    }
    map->UpdateAllReadyMark();
  }
  return map;
}

ChunkMap::ChunkMap(std::string path, uint32_t chunk_count, uint8_t* base, bool reinitialized)
    : path_(std::move(path)),
      chunk_count_(chunk_count),
      base_(base),
      reinitialized_(reinitialized) {}

ChunkMap::~ChunkMap() { ::munmap(base_, ChunkMapFileSize(chunk_count_)); }

bool ChunkMap::IsReady(uint32_t index) const {
  if (index >= chunk_count_) return false;
  return (ByteRef(base_, index).load(std::memory_order_acquire) & BitMask(index)) != 0;
}

bool ChunkMap::SetReady(uint32_t index) {
  if (index >= chunk_count_) return false;
  const uint8_t mask = BitMask(index);
  if ((ByteRef(base_, index).fetch_or(mask, std::memory_order_acq_rel) & mask) != 0) return false;
  if (ready_count_.fetch_add(1, std::memory_order_acq_rel) + 1 == chunk_count_) {
    UpdateAllReadyMark();
  }
  return true;
}

bool ChunkMap::ClearReady(uint32_t index) {
  if (index >= chunk_count_) return false;
  const uint8_t mask = BitMask(index);
  // The mark goes first, so that no reader of the file (nydusd trusts the mark alone) ever sees
  // "all ready" while a bit is clear.
  const bool marked = AllReadyRef(base_).load(std::memory_order_acquire) != 0;
  if (marked) {
    absl::MutexLock lock(&mark_mu_);
    AllReadyRef(base_).store(0, std::memory_order_release);
  }
  const bool changed =
      (ByteRef(base_, index).fetch_and(static_cast<uint8_t>(~mask), std::memory_order_acq_rel) &
       mask) != 0;
  // A SetReady() racing with us may have completed the map (and set the mark) in between: the
  // count before our decrement tells. The last thread to update the mark sees the final count.
  const bool was_full =
      changed && ready_count_.fetch_sub(1, std::memory_order_acq_rel) == chunk_count_;
  if (marked || was_full) UpdateAllReadyMark();
  return changed;
}

void ChunkMap::UpdateAllReadyMark() {
  absl::MutexLock lock(&mark_mu_);
  const bool all = ready_count_.load(std::memory_order_acquire) == chunk_count_;
  AllReadyRef(base_).store(all ? kChunkMapAllReady : 0, std::memory_order_release);
}

}  // namespace naiad::cache
