#include "rafs/blob_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/status_macros.h"
#include "base/strings.h"
#include "rafs/compression.h"
#include "tar/format.h"

namespace naiad::rafs {
namespace {

constexpr uint32_t kBlobFeatures =
    kBlobAligned | kBlobInlinedChunkDigest | kBlobHasTarHeader | kBlobHasToc | kBlobCapTarToc;

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

ChunkInfoV1 EncodeChunkInfoV1(uint64_t uncompressed_offset, uint32_t usize,
                              uint64_t compressed_offset, uint32_t csize) {
  uint64_t u = usize - 1;
  uint64_t c = csize - 1;
  return {
      (uncompressed_offset & 0xfff'ffff'f000) | ((u & 0xfffff) << 44) | (((u >> 20) & 0xf) << 8),
      (compressed_offset & 0xff'ffff'ffff) | (((c >> 20) & 0xf) << 40) | ((c & 0xfffff) << 44)};
}

uint32_t TocFlagsFor(Compressor compressor) {
  switch (compressor) {
    case Compressor::kZstd:
      return kTocZstd;
    case Compressor::kLz4Block:
      return kTocLz4Block;
    default:
      return kTocNone;
  }
}

// The GNU-format header written after each section ("reverse tar").
// GNU magic, zero mode/ids, and a 7-digit checksum: the header upstream writes.
std::string SectionTarHeader(std::string_view name, uint64_t size) {
  tar::format::UstarHeader h{};
  std::memcpy(h.name, name.data(), std::min(name.size(), sizeof(h.name)));
  std::snprintf(h.size, sizeof(h.size), "%011llo", static_cast<unsigned long long>(size));
  std::snprintf(h.mtime, sizeof(h.mtime), "%011o", 0);
  h.typeflag = tar::format::kTypeRegular;
  std::memcpy(h.magic, "ustar ", 6);
  std::memcpy(h.version, " ", 2);
  std::snprintf(h.chksum, sizeof(h.chksum), "%07o",
                tar::format::HeaderChecksum(reinterpret_cast<const char*>(&h)));
  return std::string(reinterpret_cast<const char*>(&h), sizeof(h));
}

}  // namespace

BlobWriter::BlobWriter(std::string path, std::string temp, UniqueFd fd,
                       const BlobWriterOptions& options)
    : path_(std::move(path)), temp_(std::move(temp)), fd_(std::move(fd)), options_(options) {
  writer_thread_ = std::thread([this] { WriterLoop(); });
}

BlobWriter::~BlobWriter() {
  StopWriterThread();
  if (!committed_) ::unlink(temp_.c_str());
}

void BlobWriter::StopWriterThread() {
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (writer_thread_.joinable()) writer_thread_.join();
}

void BlobWriter::WriterLoop() {
  static constexpr char kZeros[kBlockSize] = {};
  std::unique_lock lock(queue_mu_);
  while (true) {
    queue_cv_.wait(lock, [&] {
      return stopping_ ||
             (!queue_.empty() && (draining_ || room_wanted_ || queued_bytes_ >= kWakeBytes));
    });
    if (stopping_) return;  // only when the writer is destroyed: what is queued is abandoned
    std::vector<QueuedWrite> items(std::make_move_iterator(queue_.begin()),
                                   std::make_move_iterator(queue_.end()));
    queue_.clear();
    writing_ = true;
    bool failed = !write_status_.ok();
    lock.unlock();
    std::vector<std::string_view> pieces;
    size_t size = 0;
    for (const QueuedWrite& item : items) {
      pieces.emplace_back(kZeros, item.padding);
      pieces.push_back(item.bytes.view());
      size += item.padding + item.bytes.size();
    }
    absl::Status status;
    if (!failed) {  // after an error, the rest is dropped: the blob is never committed
      for (std::string_view piece : pieces) id_hasher_.Update(piece);
      status = WriteFull(fd_.get(), pieces);
      if (status.ok()) {
        StartWriteback(size);
      } else {
        status = Annotate(status, StrCat("writing blob ", path_));
      }
    }
    items.clear();  // frees the bytes outside the lock
    lock.lock();
    writing_ = false;
    queued_bytes_ -= size;
    if (!status.ok() && write_status_.ok()) write_status_ = std::move(status);
    room_cv_.notify_all();
  }
}

void BlobWriter::StartWriteback(size_t written) {
  written_ += written;
  if (written_ - writeback_from_ < kWritebackBytes) return;
  // Only a hint: a failure here shows up, if it matters, in Commit()'s fsync.
  ::sync_file_range(fd_.get(), static_cast<off64_t>(writeback_from_),
                    static_cast<off64_t>(written_ - writeback_from_), SYNC_FILE_RANGE_WRITE);
  writeback_from_ = written_;
}

absl::Status BlobWriter::Drain() {
  std::unique_lock lock(queue_mu_);
  draining_ = true;
  queue_cv_.notify_one();
  room_cv_.wait(lock, [&] { return queue_.empty() && !writing_; });
  return write_status_;
}

absl::StatusOr<std::unique_ptr<BlobWriter>> BlobWriter::Create(const std::string& path,
                                                               const BlobWriterOptions& options) {
  std::filesystem::path target(path);
  std::string dir = target.parent_path().empty() ? "." : target.parent_path().string();
  std::string temp = StrCat(dir, "/.", target.filename().string(), ".tmp-XXXXXX");
  int raw = ::mkstemp(temp.data());
  if (raw < 0) return ErrnoError(errno, StrCat("create blob in ", dir));
  return std::unique_ptr<BlobWriter>(new BlobWriter(path, std::move(temp), UniqueFd(raw), options));
}

absl::Status BlobWriter::Write(std::string_view data) {
  RETURN_IF_ERROR(Annotate(WriteFull(fd_.get(), data), StrCat("writing blob ", path_)));
  id_hasher_.Update(data);
  offset_ += data.size();
  return absl::OkStatus();
}

absl::Status BlobWriter::WriteTarHeader(std::string_view name, uint64_t size) {
  return Write(SectionTarHeader(name, size));
}

void BlobWriter::AddTocEntry(std::string_view name, Compressor compressor,
                             std::string_view uncompressed, uint64_t offset, uint64_t stored_size) {
  TocEntry e{};
  e.flags = TocFlagsFor(compressor);
  std::memcpy(e.name, name.data(), std::min(name.size(), sizeof(e.name)));
  Digest d = Digest::Of(DigestAlgorithm::kSha256, uncompressed);
  std::memcpy(e.uncompressed_digest, d.bytes.data(), 32);
  e.compressed_offset = offset;
  e.compressed_size = stored_size;
  e.uncompressed_size = uncompressed.size();
  toc_.append(reinterpret_cast<const char*>(&e), sizeof(e));
}

absl::StatusOr<ChunkRef> BlobWriter::Append(PreparedChunk chunk) {
  if (data_finished_) return absl::FailedPreconditionError("blob data already finished");
  if (chunk_count_ >= kMaxChunksPerBlob)
    return absl::ResourceExhaustedError("2^24 chunks in one blob");
  size_t padding = 0;
  if (options_.compressor == Compressor::kNone && offset_ % kBlockSize != 0) {
    // Uncompressed blobs keep every chunk at its uncompressed offset, so the kernel's EROFS
    // driver can read them directly as a device.
    padding = kBlockSize - offset_ % kBlockSize;
  }
  offset_ += padding;
  ChunkRef ref{.ci_index = chunk_count_,
               .compressed_offset = offset_,
               .compressed_size = static_cast<uint32_t>(chunk.stored.size()),
               .uncompressed_offset = uncompressed_offset_,
               .uncompressed_size = chunk.uncompressed_size,
               .compressed = chunk.compressed,
               .digest = chunk.digest};
  ChunkInfoV1 info = EncodeChunkInfoV1(ref.uncompressed_offset, ref.uncompressed_size,
                                       ref.compressed_offset, ref.compressed_size);
  chunk_infos_.append(reinterpret_cast<const char*>(&info), sizeof(info));
  chunk_digests_.append(reinterpret_cast<const char*>(chunk.digest.bytes.data()), 32);
  ++chunk_count_;
  uncompressed_offset_ += AlignUp(chunk.uncompressed_size, kBlockSize);
  offset_ += chunk.stored.size();

  size_t bytes = padding + chunk.stored.size();
  bool wake;
  {
    std::unique_lock lock(queue_mu_);
    auto room = [&] {
      return queued_bytes_ == 0 || queued_bytes_ + bytes <= options_.write_queue_bytes ||
             !write_status_.ok();
    };
    if (!room()) {
      room_wanted_ = true;  // the writer thread must not wait for kWakeBytes now
      queue_cv_.notify_one();
      room_cv_.wait(lock, room);
      room_wanted_ = false;
    }
    if (!write_status_.ok()) return write_status_;
    queued_bytes_ += bytes;
    queue_.push_back({.padding = padding, .bytes = std::move(chunk.stored)});
    wake = queued_bytes_ >= kWakeBytes;
  }
  if (wake) queue_cv_.notify_one();
  return ref;
}

absl::StatusOr<BlobInfo> BlobWriter::FinishData(bool inline_bootstrap) {
  if (data_finished_) return absl::FailedPreconditionError("blob data already finished");
  data_finished_ = true;
  RETURN_IF_ERROR(Drain());  // from here on, the caller's thread writes
  uint64_t data_size = offset_;
  Digest data_digest = id_hasher_.Snapshot();  // the data section is the blob's first bytes
  RETURN_IF_ERROR(WriteTarHeader(kTocNameBlob, data_size));
  TocEntry blob_entry{};  // upstream records the data section's end as its offset
  blob_entry.flags = kTocNone;
  std::memcpy(blob_entry.name, kTocNameBlob, std::strlen(kTocNameBlob));
  std::memcpy(blob_entry.uncompressed_digest, data_digest.bytes.data(), 32);
  blob_entry.compressed_offset = data_size;
  blob_entry.compressed_size = data_size;
  blob_entry.uncompressed_size = uncompressed_offset_;
  toc_.append(reinterpret_cast<const char*>(&blob_entry), sizeof(blob_entry));

  ASSIGN_OR_RETURN(Compressed ci, Compress(options_.compressor, chunk_infos_));
  Compressor ci_compressor = ci.compressed ? options_.compressor : Compressor::kNone;
  info_.ci_offset = offset_;
  info_.ci_compressor = ci_compressor;
  info_.ci_compressed_size = ci.data.size();
  info_.ci_uncompressed_size = chunk_infos_.size();
  info_.features = kBlobFeatures | (inline_bootstrap ? uint32_t{kBlobInlinedFsMeta} : 0u);
  BlobMetaHeader header{};
  header.magic = header.magic2 = kBlobMetaMagic;
  header.features = info_.features;
  header.ci_compressor = static_cast<uint32_t>(ci_compressor);
  header.ci_entries = chunk_count();
  header.ci_offset = info_.ci_offset;
  header.ci_compressed_size = info_.ci_compressed_size;
  header.ci_uncompressed_size = info_.ci_uncompressed_size;
  std::string_view header_bytes(reinterpret_cast<const char*>(&header), sizeof(header));
  AddTocEntry(kTocNameBlobMeta, ci_compressor, chunk_infos_, offset_, ci.data.size());
  AddTocEntry(kTocNameBlobMetaHeader, Compressor::kNone, header_bytes, offset_ + ci.data.size(),
              sizeof(header));
  RETURN_IF_ERROR(Write(ci.data));
  RETURN_IF_ERROR(Write(header_bytes));
  RETURN_IF_ERROR(WriteTarHeader(kTocNameBlobMeta, ci.data.size() + sizeof(header)));

  AddTocEntry(kTocNameChunkDigest, Compressor::kNone, chunk_digests_, offset_,
              chunk_digests_.size());
  RETURN_IF_ERROR(Write(chunk_digests_));
  RETURN_IF_ERROR(WriteTarHeader(kTocNameChunkDigest, chunk_digests_.size()));
  // Written: not needed any more, while the caller lays out the bootstrap.
  std::string().swap(chunk_infos_);
  std::string().swap(chunk_digests_);

  info_.chunk_size = options_.chunk_size;
  info_.chunk_count = chunk_count();
  info_.compressor = options_.compressor;
  info_.digester = options_.digester;
  info_.uncompressed_size = uncompressed_offset_;
  info_.compressed_size = offset_;
  if (inline_bootstrap) info_.id = id_hasher_.Finish().Hex();
  return info_;
}

absl::Status BlobWriter::WriteInlineBootstrap(std::string_view bootstrap) {
  if (!data_finished_ || info_.id.empty()) {
    return absl::FailedPreconditionError("FinishData(inline_bootstrap=true) must come first");
  }
  ASSIGN_OR_RETURN(Compressed boot, Compress(Compressor::kZstd, bootstrap));
  Compressor used = boot.compressed ? Compressor::kZstd : Compressor::kNone;
  AddTocEntry(kTocNameBootstrap, used, bootstrap, offset_, boot.data.size());
  RETURN_IF_ERROR(Write(boot.data));
  return WriteTarHeader(kTocNameBootstrap, boot.data.size());
}

absl::StatusOr<BlobInfo> BlobWriter::Commit() {
  if (!data_finished_) return absl::FailedPreconditionError("FinishData() must come first");
  std::string toc_header = SectionTarHeader(kTocNameToc, toc_.size());
  info_.toc_digest_hex = Digest::Of(DigestAlgorithm::kSha256, toc_ + toc_header).Hex();
  info_.toc_size = static_cast<uint32_t>(toc_.size() + toc_header.size());
  RETURN_IF_ERROR(Write(toc_));
  RETURN_IF_ERROR(Write(toc_header));
  info_.compressed_size = offset_;
  if (info_.id.empty()) info_.id = id_hasher_.Finish().Hex();
  if (::fchmod(fd_.get(), 0644) != 0) return ErrnoError(errno, StrCat("chmod ", temp_));
  if (::fsync(fd_.get()) != 0) return ErrnoError(errno, StrCat("fsync ", temp_));
  fd_.Reset();
  if (::rename(temp_.c_str(), path_.c_str()) != 0)
    return ErrnoError(errno, StrCat("rename to ", path_));
  committed_ = true;
  return info_;
}

}  // namespace naiad::rafs
