// `naiad image merge`: layer bootstraps, bottom first, become one image bootstrap with overlay
// semantics, referencing every layer's blob. With --blob-digests the blob ids become the layer
// digests, which is how the registry names the blobs.
#include <map>
#include <set>

#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "image/image_command.h"
#include "rafs/blob_meta.h"
#include "rafs/bootstrap_writer.h"
#include "rafs/tree.h"

namespace naiad::image {
namespace {

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> parts;
  if (text.empty()) return parts;
  for (absl::string_view part : absl::StrSplit(ToAbsl(text), ',')) parts.emplace_back(part);
  return parts;
}

absl::StatusOr<std::string> StripSha256(const std::string& digest) {
  std::string hex = digest.starts_with("sha256:") ? digest.substr(7) : digest;
  RETURN_IF_ERROR(Digest::Parse("sha256:" + hex).status());
  return hex;
}

// Per-source overrides from the comma-separated flags.
struct Overrides {
  std::vector<std::string> digests, sizes, toc_digests, toc_sizes;
};

absl::Status ApplyOverrides(const Overrides& o, size_t layer, rafs::BlobInfo& blob) {
  if (layer < o.digests.size()) {
    ASSIGN_OR_RETURN(blob.id, StripSha256(o.digests[layer]));
  }
  if (layer < o.sizes.size()) {
    ASSIGN_OR_RETURN(blob.compressed_size, ParseSize(o.sizes[layer]));
  }
  if (layer < o.toc_digests.size()) {
    ASSIGN_OR_RETURN(blob.toc_digest_hex, StripSha256(o.toc_digests[layer]));
  }
  if (layer < o.toc_sizes.size()) {
    ASSIGN_OR_RETURN(uint64_t size, ParseSize(o.toc_sizes[layer]));
    blob.toc_size = static_cast<uint32_t>(size);
  }
  return absl::OkStatus();
}

absl::Status CheckCounts(const Overrides& o, size_t sources) {
  for (const auto* list : {&o.digests, &o.sizes, &o.toc_digests, &o.toc_sizes}) {
    if (!list->empty() && list->size() != sources) {
      return absl::InvalidArgumentError(
          StrCat("got ", list->size(), " values for ", sources, " sources in a --blob-* list"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> LoadBootstrapBytes(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  if (bytes.size() >= rafs::kDeviceTableOffset) {
    uint32_t magic;
    std::memcpy(&magic, bytes.data() + rafs::kSuperblockOffset, 4);
    if (magic == rafs::kErofsMagic) return bytes;
  }
  rafs::BlobReadFn read = rafs::MemoryBlobReader(bytes);
  auto tail = rafs::ReadBlobTail(read, bytes.size());
  if (!tail.ok()) return bytes;  // not a blob either: bootstrap validation names the problem
  auto boot = rafs::ReadInlineBootstrap(read, *tail);
  if (!boot.ok()) return Annotate(boot.status(), path);
  return boot;
}

absl::StatusOr<nlohmann::json> Merge(const MergeFlags& flags) {
  if (flags.sources.empty()) return absl::InvalidArgumentError("no layer bootstraps to merge");
  if (flags.bootstrap.empty()) return absl::InvalidArgumentError("--bootstrap is required");
  Overrides overrides{SplitList(flags.blob_digests), SplitList(flags.blob_sizes),
                      SplitList(flags.blob_toc_digests), SplitList(flags.blob_toc_sizes)};
  RETURN_IF_ERROR(CheckCounts(overrides, flags.sources.size()));

  rafs::Tree merged;
  std::vector<rafs::BlobInfo> blobs;
  std::map<std::string, uint32_t> blob_index_by_original_id;
  rafs::BootstrapOptions options;
  for (size_t layer = 0; layer < flags.sources.size(); ++layer) {
    ASSIGN_OR_RETURN(std::string bytes, LoadBootstrapBytes(flags.sources[layer]));
    auto boot = rafs::Bootstrap::FromBytes(std::move(bytes));
    if (!boot.ok()) return Annotate(boot.status(), flags.sources[layer]);
    if (layer == 0) {
      options.chunk_size = (*boot)->chunk_size();
      options.compressor = (*boot)->compressor();
      options.digester = (*boot)->digester();
    } else if ((*boot)->chunk_size() != options.chunk_size ||
               (*boot)->digester() != options.digester) {
      return absl::InvalidArgumentError(
          StrCat(flags.sources[layer], ": chunk size or digester differs from the first layer"));
    }
    // Each layer's blobs join the merged table once (a chunk-dict blob may appear in several).
    std::vector<uint32_t> remap;
    for (rafs::BlobInfo blob : (*boot)->blobs()) {
      auto [it, inserted] =
          blob_index_by_original_id.emplace(blob.id, static_cast<uint32_t>(blobs.size()));
      if (inserted) {
        RETURN_IF_ERROR(ApplyOverrides(overrides, layer, blob));
        blob.index = it->second;
        blobs.push_back(blob);
      }
      remap.push_back(it->second);
    }
    auto tree = rafs::Tree::FromBootstrap(**boot);
    if (!tree.ok()) return Annotate(tree.status(), flags.sources[layer]);
    // Holes are not in the chunk table: they name no blob.
    for (rafs::ChunkRef& c : tree->mutable_chunks()) c.blob_index = remap[c.blob_index];
    RETURN_IF_ERROR(merged.ApplyLayer(*std::move(tree)));
  }
  if (blobs.size() > rafs::kMaxBlobs)
    return absl::InvalidArgumentError(StrCat(blobs.size(), " blobs, at most 254"));
  ASSIGN_OR_RETURN(std::string bytes, rafs::WriteBootstrap(merged, blobs, options));
  RETURN_IF_ERROR(WriteFileAtomically(flags.bootstrap, bytes));
  nlohmann::json out = {{"version", "naiad-image"},
                        {"bootstrap", flags.bootstrap},
                        {"blobs", nlohmann::json::array()}};
  for (const rafs::BlobInfo& blob : blobs) out["blobs"].push_back(blob.id);
  if (!flags.output_json.empty())
    RETURN_IF_ERROR(WriteFileAtomically(flags.output_json, out.dump(2) + "\n"));
  return out;
}

}  // namespace naiad::image
