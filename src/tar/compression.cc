#include "tar/compression.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::tar {
namespace {

constexpr unsigned char kGzipMagic[] = {0x1f, 0x8b};
constexpr unsigned char kZstdMagic[] = {0x28, 0xb5, 0x2f, 0xfd};
// zlib counts in uInt; keep every call's output window well inside it.
constexpr size_t kMaxChunk = size_t{1} << 30;

bool StartsWith(std::string_view data, const unsigned char* magic, size_t size) {
  return data.size() >= size && std::memcmp(data.data(), magic, size) == 0;
}

// The compressed side shared by both decoders: a fixed buffer refilled from the source.
struct CompressedInput {
  std::unique_ptr<InputStream> source;
  std::vector<char> buffer;
  size_t begin = 0;       // first unconsumed byte in `buffer`
  size_t end = 0;         // one past the last valid byte
  uint64_t consumed = 0;  // compressed bytes handed to the decoder before `buffer`
  bool source_eof = false;

  // Refills an exhausted buffer; at the source's end sets source_eof instead.
  absl::Status Refill() {
    consumed += end;
    begin = end = 0;
    ASSIGN_OR_RETURN(size_t got, source->Read(buffer.data(), buffer.size()));
    if (got == 0) source_eof = true;
    end = got;
    return absl::OkStatus();
  }
};

// Replays bytes sniffed from the front of a stream, then reads the stream itself.
class PrefixedInputStream final : public InputStream {
 public:
  PrefixedInputStream(std::string prefix, std::unique_ptr<InputStream> source)
      : prefix_(std::move(prefix)), source_(std::move(source)) {}

  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    if (pos_ < prefix_.size()) {
      size_t take = std::min(n, prefix_.size() - pos_);
      std::memcpy(buf, prefix_.data() + pos_, take);
      pos_ += take;
      return take;
    }
    return source_->Read(buf, n);
  }

 private:
  std::string prefix_;
  size_t pos_ = 0;
  std::unique_ptr<InputStream> source_;
};

}  // namespace

std::string_view CompressionName(Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return "gzip";
    case Compression::kZstd:
      return "zstd";
  }
  return "unknown";
}

Compression DetectCompression(std::string_view first_bytes) {
  if (StartsWith(first_bytes, kGzipMagic, sizeof(kGzipMagic))) return Compression::kGzip;
  if (StartsWith(first_bytes, kZstdMagic, sizeof(kZstdMagic))) return Compression::kZstd;
  return Compression::kNone;
}

// ---- gzip ----

struct GzipInputStream::State {
  CompressedInput in;
  z_stream zs{};
  bool member_done = false;  // the last inflate() finished a gzip member
  bool done = false;         // every member decoded and the source is exhausted

  ~State() { inflateEnd(&zs); }

  absl::Status Corrupt(std::string_view what) const {
    return absl::DataLossError(
        StrCat("gzip layer: ", what, " at compressed offset ", in.consumed + in.begin));
  }
};

GzipInputStream::GzipInputStream(std::unique_ptr<State> state) : state_(std::move(state)) {}
GzipInputStream::~GzipInputStream() = default;

absl::StatusOr<std::unique_ptr<GzipInputStream>> GzipInputStream::Create(
    std::unique_ptr<InputStream> source, size_t buffer_size) {
  auto state = std::make_unique<State>();
  state->in.source = std::move(source);
  state->in.buffer.resize(std::clamp<size_t>(buffer_size, 4096, kMaxChunk));
  // 16 + MAX_WBITS: gzip wrapper only; a zlib or raw deflate stream is not a gzip layer.
  if (inflateInit2(&state->zs, 16 + MAX_WBITS) != Z_OK) {
    return absl::ResourceExhaustedError("gzip layer: inflateInit2 failed");
  }
  return std::unique_ptr<GzipInputStream>(new GzipInputStream(std::move(state)));
}

absl::StatusOr<size_t> GzipInputStream::Read(char* buf, size_t n) {
  State& s = *state_;
  if (s.done || n == 0) return 0;
  n = std::min(n, kMaxChunk);
  s.zs.next_out = reinterpret_cast<Bytef*>(buf);
  s.zs.avail_out = static_cast<uInt>(n);
  while (s.zs.avail_out == n) {  // until inflate produces something
    if (s.in.begin == s.in.end && !s.in.source_eof) RETURN_IF_ERROR(s.in.Refill());
    if (s.member_done) {
      // A member ended: the layer ends here, or another member follows (pigz, cat a.gz b.gz).
      if (s.in.begin == s.in.end) {
        s.done = true;
        return 0;
      }
      inflateReset(&s.zs);
      s.member_done = false;
    }
    if (s.in.begin == s.in.end) return s.Corrupt("truncated compressed data");
    s.zs.next_in = reinterpret_cast<Bytef*>(s.in.buffer.data() + s.in.begin);
    s.zs.avail_in = static_cast<uInt>(s.in.end - s.in.begin);
    int rc = inflate(&s.zs, Z_NO_FLUSH);
    s.in.begin = s.in.end - s.zs.avail_in;
    if (rc == Z_STREAM_END) {
      s.member_done = true;
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      std::string detail = s.zs.msg != nullptr ? s.zs.msg : StrCat("zlib error ", rc);
      return s.Corrupt(StrCat("corrupt compressed data (", detail, ")"));
    }
  }
  return n - s.zs.avail_out;
}

// ---- zstd ----

struct ZstdInputStream::State {
  CompressedInput in;
  ZSTD_DCtx* dctx = nullptr;
  size_t last_hint = 0;  // ZSTD_decompressStream's last result: 0 = at a frame boundary,
                         // everything flushed

  ~State() { ZSTD_freeDCtx(dctx); }
};

ZstdInputStream::ZstdInputStream(std::unique_ptr<State> state) : state_(std::move(state)) {}
ZstdInputStream::~ZstdInputStream() = default;

absl::StatusOr<std::unique_ptr<ZstdInputStream>> ZstdInputStream::Create(
    std::unique_ptr<InputStream> source, size_t buffer_size) {
  auto state = std::make_unique<State>();
  state->in.source = std::move(source);
  state->in.buffer.resize(std::clamp<size_t>(buffer_size, 4096, kMaxChunk));
  state->dctx = ZSTD_createDCtx();
  if (state->dctx == nullptr) return absl::ResourceExhaustedError("zstd layer: ZSTD_createDCtx");
  return std::unique_ptr<ZstdInputStream>(new ZstdInputStream(std::move(state)));
}

absl::StatusOr<size_t> ZstdInputStream::Read(char* buf, size_t n) {
  State& s = *state_;
  if (n == 0) return 0;
  ZSTD_outBuffer out{buf, n, 0};
  for (;;) {
    if (s.in.begin == s.in.end && !s.in.source_eof) RETURN_IF_ERROR(s.in.Refill());
    const bool input_done = s.in.begin == s.in.end && s.in.source_eof;
    // At a frame boundary with nothing left: the end. (A call now would report that it wants
    // the next frame's header, not 0.)
    if (input_done && s.last_hint == 0) return 0;
    ZSTD_inBuffer in{s.in.buffer.data(), s.in.end, s.in.begin};
    // Called even with no input left: the decoder may still hold output to flush.
    size_t hint = ZSTD_decompressStream(s.dctx, &out, &in);
    s.in.begin = in.pos;
    if (ZSTD_isError(hint)) {
      return absl::DataLossError(StrCat("zstd layer: corrupt compressed data (",
                                        ZSTD_getErrorName(hint), ") at compressed offset ",
                                        s.in.consumed + s.in.begin));
    }
    s.last_hint = hint;
    if (out.pos > 0) return out.pos;
    if (input_done) {
      return absl::DataLossError(
          StrCat("zstd layer: truncated compressed data at compressed offset ",
                 s.in.consumed + s.in.begin));
    }
  }
}

// ---- sniffing ----

absl::StatusOr<std::unique_ptr<InputStream>> OpenLayer(std::unique_ptr<InputStream> source,
                                                       Compression* detected) {
  std::string head(sizeof(kZstdMagic), '\0');
  size_t have = 0;
  while (have < head.size()) {
    ASSIGN_OR_RETURN(size_t got, source->Read(head.data() + have, head.size() - have));
    if (got == 0) break;
    have += got;
  }
  head.resize(have);
  Compression compression = DetectCompression(head);
  if (detected != nullptr) *detected = compression;
  auto prefixed = std::make_unique<PrefixedInputStream>(std::move(head), std::move(source));
  switch (compression) {
    case Compression::kGzip:
      return GzipInputStream::Create(std::move(prefixed));
    case Compression::kZstd:
      return ZstdInputStream::Create(std::move(prefixed));
    case Compression::kNone:
      break;
  }
  return prefixed;
}

absl::StatusOr<std::unique_ptr<InputStream>> OpenLayer(const std::string& path,
                                                       Compression* detected) {
  ASSIGN_OR_RETURN(auto file, FileInputStream::Open(path));
  return OpenLayer(std::move(file), detected);
}

}  // namespace naiad::tar
