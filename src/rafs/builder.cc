#include "rafs/builder.h"

#include <unistd.h>

#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "rafs/blob_writer.h"
#include "rafs/chunk_pipeline.h"

namespace naiad::rafs {
namespace {

std::pair<std::string, std::string_view> SplitParent(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return {"", path};
  return {std::string(path.substr(0, slash)), path.substr(slash + 1)};
}

// The slots of a tree's chunk table, found by digest. Hashing and comparing the digests the
// slots point to, the set holds 4 bytes a chunk where a map from digest to chunk would hold a
// second copy of the digest and a node per chunk.
class ChunkSlotsByDigest {
 public:
  explicit ChunkSlotsByDigest(const Tree& tree) : slots_(0, Hash{&tree}, Eq{&tree}) {}

  // The slot of a chunk with this digest, if any.
  std::optional<uint32_t> Find(const DigestBytes& digest) const {
    auto it = slots_.find(digest);
    if (it == slots_.end()) return std::nullopt;
    return *it;
  }
  // Records `slot` under its chunk's digest unless a slot has that digest already.
  void Insert(uint32_t slot) { slots_.insert(slot); }
  void Clear() { slots_ = Slots(0, slots_.hash_function(), slots_.key_eq()); }

 private:
  struct Hash {
    using is_transparent = void;  // NOLINT(readability-identifier-naming): the standard's name
    const Tree* tree;
    size_t operator()(const DigestBytes& digest) const { return DigestBytesHash()(digest); }
    size_t operator()(uint32_t slot) const { return (*this)(tree->chunk(slot).digest.bytes); }
  };
  struct Eq {
    using is_transparent = void;  // NOLINT(readability-identifier-naming): the standard's name
    const Tree* tree;
    const DigestBytes& DigestOf(uint32_t slot) const { return tree->chunk(slot).digest.bytes; }
    const DigestBytes& DigestOf(const DigestBytes& digest) const { return digest; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return DigestOf(a) == DigestOf(b);
    }
  };
  using Slots = absl::flat_hash_set<uint32_t, Hash, Eq>;
  Slots slots_;
};

class LayerBuilder {
 public:
  explicit LayerBuilder(const LayerBuildOptions& options)
      : options_(options),
        pipeline_(std::make_unique<ChunkPipeline>(
            ChunkPipelineOptions{.compressor = options.compressor,
                                 .compression_level = options.compression_level,
                                 .digester = options.digester,
                                 .threads = options.threads,
                                 .window_bytes = options.window_bytes})),
        known_chunks_(tree_) {}

  absl::StatusOr<LayerBuildResult> Build(EntrySource& source);

 private:
  struct Pending {
    std::shared_ptr<TreeInode> inode;
    uint32_t index;
  };

  absl::Status LoadChunkDicts();
  absl::Status AddEntry(const SourceEntry& entry, EntrySource& source);
  absl::Status AddWhiteout(const SourceEntry& entry, std::string_view name);
  absl::Status AddFileData(const std::shared_ptr<TreeInode>& inode, const SourceEntry& entry,
                           EntrySource& source);
  absl::Status CommitOne();
  absl::Status ApplyOpaqueDirs();
  // Renumbers chunk blob indexes to the final blob table; returns the provisional index of each
  // final table entry.
  std::vector<uint32_t> RemapBlobIndexes();
  std::vector<BlobInfo> BlobTable(const std::vector<uint32_t>& order, const BlobInfo& own) const;
  absl::Status Finish(LayerBuildResult& result);

  const LayerBuildOptions& options_;
  std::unique_ptr<ChunkPipeline> pipeline_;  // released once every chunk is stored
  std::unique_ptr<BlobWriter> writer_;
  Tree tree_;
  std::deque<Pending> pending_;
  // The slots of tree_'s chunk table, stored or from a dictionary, by digest: what a new chunk
  // is deduplicated against. Provisional blob indexes in the table: 0 = this layer's blob, 1.. =
  // dictionary blobs.
  ChunkSlotsByDigest known_chunks_;
  std::vector<BlobInfo> dict_blobs_;  // provisional blob index = 1 + position
  std::set<std::string> opaque_dirs_;
  LayerBuildStats stats_;
};

absl::Status LayerBuilder::LoadChunkDicts() {
  for (const std::string& path : options_.chunk_dicts) {
    ASSIGN_OR_RETURN(auto dict, Bootstrap::Open(path));
    if (dict->chunk_size() != options_.chunk_size || dict->digester() != options_.digester) {
      return absl::InvalidArgumentError(
          StrCat("chunk dict ", path, " uses chunk size ", dict->chunk_size(), " and digester ",
                 DigestAlgorithmName(dict->digester()), "; this build uses ", options_.chunk_size,
                 " and ", DigestAlgorithmName(options_.digester)));
    }
    auto base = static_cast<uint32_t>(1 + dict_blobs_.size());
    for (const BlobInfo& blob : dict->blobs()) dict_blobs_.push_back(blob);
    for (const ChunkInfo& info : dict->ChunkTable()) {
      ChunkRef ref = ChunkRefFromInfo(info, options_.digester);
      if (known_chunks_.Find(ref.digest.bytes)) continue;  // the first one found is used
      ref.blob_index = base + info.blob_index;
      ASSIGN_OR_RETURN(uint32_t slot, tree_.AddChunk(ref));
      known_chunks_.Insert(slot);
      pipeline_->MarkKnown(ref.digest);
    }
  }
  return absl::OkStatus();
}

absl::Status LayerBuilder::CommitOne() {
  ASSIGN_OR_RETURN(PreparedChunk chunk, pipeline_->Next());
  Pending pending = std::move(pending_.front());
  pending_.pop_front();
  ++stats_.chunks;
  std::optional<uint32_t> slot = known_chunks_.Find(chunk.digest.bytes);
  if (slot) {
    ++(tree_.chunk(*slot).blob_index == 0 ? stats_.chunks_deduplicated : stats_.chunks_from_dict);
  } else {
    if (chunk.skipped) return absl::InternalError("a chunk skipped as known is not known");
    Digest digest = chunk.digest;
    ASSIGN_OR_RETURN(ChunkRef ref, writer_->Append(std::move(chunk)));
    ASSIGN_OR_RETURN(slot, tree_.AddChunk(ref));
    known_chunks_.Insert(*slot);
    pipeline_->MarkKnown(digest);
    ++stats_.chunks_stored;
  }
  pending.inode->chunks[pending.index] = *slot;
  return absl::OkStatus();
}

absl::Status LayerBuilder::AddFileData(const std::shared_ptr<TreeInode>& inode,
                                       const SourceEntry& entry, EntrySource& source) {
  uint64_t count = (entry.size + options_.chunk_size - 1) / options_.chunk_size;
  if (count >= kHoleChunk) {
    return absl::InvalidArgumentError(
        StrCat("\"", entry.path, "\": ", entry.size, " bytes is too big a file"));
  }
  inode->chunks = ChunkList(count);  // every slot a hole until its chunk is stored
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t want = std::min<uint64_t>(options_.chunk_size, entry.size - i * options_.chunk_size);
    // A hole of a sparse file as big as the chunk costs nothing: no zeros to hash or store.
    ASSIGN_OR_RETURN(bool hole, source.SkipHole(want));
    if (hole) {
      ++stats_.chunks;
      ++stats_.hole_chunks;
      continue;
    }
    ChunkBuffer data(want);  // not zero-filled: the source overwrites every byte
    for (uint64_t got = 0; got < want;) {
      ASSIGN_OR_RETURN(size_t n, source.Read(data.data() + got, want - got));
      if (n == 0) {
        return absl::DataLossError(StrCat("\"", entry.path, "\": content ended after ",
                                          i * options_.chunk_size + got, " of ", entry.size,
                                          " bytes"));
      }
      got += n;
    }
    stats_.bytes_in += want;
    pipeline_->Submit(std::move(data));
    pending_.push_back({inode, static_cast<uint32_t>(i)});
    while (pipeline_->full()) RETURN_IF_ERROR(CommitOne());
  }
  return absl::OkStatus();
}

absl::Status LayerBuilder::AddWhiteout(const SourceEntry& entry, std::string_view name) {
  auto [parent, unused] = SplitParent(entry.path);
  if (name == kOpaqueWhiteout) {
    opaque_dirs_.insert(parent);
    return absl::OkStatus();
  }
  std::string_view removed = name.substr(kWhiteoutPrefix.size());
  if (removed.empty() || removed == "." || removed == "..") {
    return absl::InvalidArgumentError(StrCat("\"", entry.path, "\": malformed whiteout"));
  }
  auto whiteout = std::make_shared<TreeInode>();
  whiteout->mode = S_IFCHR;
  whiteout->mtime = entry.mtime;
  return tree_.Insert(parent.empty() ? std::string(removed) : StrCat(parent, "/", removed),
                      whiteout);
}

absl::Status LayerBuilder::AddEntry(const SourceEntry& entry, EntrySource& source) {
  auto [parent, name] = SplitParent(entry.path);
  if (options_.convert_oci_whiteouts && name.starts_with(kWhiteoutPrefix))
    return AddWhiteout(entry, name);
  if (!entry.hardlink_to.empty()) return tree_.Link(entry.path, entry.hardlink_to);
  auto inode = std::make_shared<TreeInode>();
  inode->mode = entry.mode;
  inode->uid = entry.uid;
  inode->gid = entry.gid;
  inode->mtime = entry.mtime;
  inode->mtime_nsec = entry.mtime_nsec;
  if (!entry.xattrs.empty()) {
    Xattrs& xattrs = inode->mutable_xattrs();
    xattrs = entry.xattrs;
    std::sort(xattrs.begin(), xattrs.end());
  }
  if (S_ISCHR(entry.mode) || S_ISBLK(entry.mode))
    inode->rdev = EncodeDev(entry.rdev_major, entry.rdev_minor);
  if (S_ISLNK(entry.mode)) inode->set_symlink(entry.symlink);
  if (S_ISREG(entry.mode)) {
    inode->size = entry.size;
    ++stats_.files;
    RETURN_IF_ERROR(AddFileData(inode, entry, source));
  }
  return tree_.Insert(entry.path, std::move(inode));
}

std::vector<uint32_t> LayerBuilder::RemapBlobIndexes() {
  // Provisional indexes: 0 = this layer's blob, 1.. = dictionary blobs. Only used ones stay.
  std::vector<bool> used(1 + dict_blobs_.size(), false);
  tree_.ForEachInode([&](TreeInode& inode) {
    for (uint32_t slot : inode.chunks) {
      if (slot != kHoleChunk) used[tree_.chunk(slot).blob_index] = true;
    }
  });
  std::vector<uint32_t> order;
  std::vector<uint32_t> remap(used.size(), 0);
  for (uint32_t i = 0; i < used.size(); ++i) {
    if (!used[i]) continue;
    remap[i] = static_cast<uint32_t>(order.size());
    order.push_back(i);
  }
  // Chunks of unused dictionary blobs get index 0 too: no file refers to them.
  for (ChunkRef& c : tree_.mutable_chunks()) c.blob_index = remap[c.blob_index];
  return order;
}

std::vector<BlobInfo> LayerBuilder::BlobTable(const std::vector<uint32_t>& order,
                                              const BlobInfo& own) const {
  std::vector<BlobInfo> table;
  for (uint32_t provisional : order) {
    table.push_back(provisional == 0 ? own : dict_blobs_[provisional - 1]);
    table.back().index = static_cast<uint32_t>(table.size() - 1);
  }
  return table;
}

absl::Status LayerBuilder::ApplyOpaqueDirs() {
  for (const std::string& dir : opaque_dirs_) {
    ASSIGN_OR_RETURN(std::shared_ptr<TreeInode> inode, tree_.Find(dir));
    if (!inode->is_dir()) {
      return absl::InvalidArgumentError(
          StrCat("opaque whiteout inside non-directory \"", dir, "\""));
    }
    Xattrs& xattrs = inode->mutable_xattrs();
    xattrs.emplace_back(kOpaqueXattr, "y");
    std::sort(xattrs.begin(), xattrs.end());
  }
  return absl::OkStatus();
}

absl::Status LayerBuilder::Finish(LayerBuildResult& result) {
  while (!pending_.empty()) RETURN_IF_ERROR(CommitOne());
  // What only the data phase needed goes before the bootstrap is laid out.
  pipeline_.reset();
  known_chunks_.Clear();
  RETURN_IF_ERROR(ApplyOpaqueDirs());
  std::vector<uint32_t> order = RemapBlobIndexes();
  BootstrapOptions boot{.chunk_size = options_.chunk_size,
                        .compressor = options_.compressor,
                        .digester = options_.digester,
                        .prefetch_paths = options_.prefetch_paths,
                        .build_time = options_.build_time};
  ASSIGN_OR_RETURN(BlobInfo own, writer_->FinishData(options_.inline_bootstrap));
  if (options_.inline_bootstrap) {
    // The TOC does not exist yet, so the embedded copy carries no TOC fields, as upstream's.
    ASSIGN_OR_RETURN(std::string inline_boot, WriteBootstrap(tree_, BlobTable(order, own), boot));
    RETURN_IF_ERROR(writer_->WriteInlineBootstrap(inline_boot));
  }
  bool keep_blob = writer_->chunk_count() > 0 || options_.inline_bootstrap;
  if (keep_blob) {
    ASSIGN_OR_RETURN(own, writer_->Commit());
    result.blob_path = writer_->path();
    if (options_.blob_path.empty()) {
      result.blob_path = StrCat(options_.blob_dir, "/", own.id);
      if (::rename(writer_->path().c_str(), result.blob_path.c_str()) != 0) {
        return ErrnoError(errno, StrCat("rename blob to ", result.blob_path));
      }
    }
    result.blob = own;
  }
  ASSIGN_OR_RETURN(result.bootstrap, WriteBootstrap(tree_, BlobTable(order, own), boot));
  result.stats = stats_;
  return absl::OkStatus();
}

absl::StatusOr<LayerBuildResult> LayerBuilder::Build(EntrySource& source) {
  RETURN_IF_ERROR(ValidateChunkSize(options_.chunk_size));
  RETURN_IF_ERROR(ValidateCompressionLevel(options_.compression_level));
  if (options_.blob_path.empty() && options_.blob_dir.empty()) {
    return absl::InvalidArgumentError("a blob path or a blob directory is required");
  }
  RETURN_IF_ERROR(LoadChunkDicts());
  std::string path = options_.blob_path.empty()
                         ? StrCat(options_.blob_dir, "/.naiad-blob-", ::getpid())
                         : options_.blob_path;
  ASSIGN_OR_RETURN(writer_,
                   BlobWriter::Create(path, {.compressor = options_.compressor,
                                             .digester = options_.digester,
                                             .chunk_size = options_.chunk_size,
                                             .write_queue_bytes = options_.write_queue_bytes}));
  while (true) {
    ASSIGN_OR_RETURN(std::optional<SourceEntry> entry, source.Next());
    if (!entry) break;
    RETURN_IF_ERROR(AddEntry(*entry, source));
  }
  LayerBuildResult result;
  RETURN_IF_ERROR(Finish(result));
  return result;
}

}  // namespace

absl::Status ValidateChunkSize(uint64_t chunk_size) {
  if (chunk_size < kMinChunkSize || chunk_size > kMaxChunkSize ||
      (chunk_size & (chunk_size - 1)) != 0) {
    return absl::InvalidArgumentError(
        StrCat("chunk size ", chunk_size,
               ": must be a power of two from 4 KiB (0x1000) to 16 MiB (0x1000000)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCompressionLevel(int level) {
  if (level < kMinCompressionLevel || level > kMaxCompressionLevel) {
    return absl::InvalidArgumentError(StrCat("compression level ", level, ": must be from ",
                                             kMinCompressionLevel, " (fastest) to ",
                                             kMaxCompressionLevel, " (smallest)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<LayerBuildResult> BuildLayer(EntrySource& source, const LayerBuildOptions& options) {
  return LayerBuilder(options).Build(source);
}

}  // namespace naiad::rafs
