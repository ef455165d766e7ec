#include "fs/chunk_store.h"

#include <fcntl.h>

#include <thread>

#include "absl/synchronization/mutex.h"
#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/test_files.h"
#include "cache/blob_cache.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rafs/builder.h"
#include "rafs/entry_source.h"
#include "storage/localfs_backend.h"

namespace naiad::fs {
namespace {

using ::naiad::testing::StatusIs;
using rafs::ChunkRef;

// Serves blobs from a localfs backend under several source names; a source can be made to
// corrupt what it serves, and it counts reads.
class TestBackend : public storage::BlobBackend {
 public:
  TestBackend(std::unique_ptr<storage::BlobBackend> inner, std::vector<std::string> sources)
      : inner_(std::move(inner)), sources_(std::move(sources)) {}

  void Corrupt(const std::string& source) {
    absl::MutexLock lock(&mu_);
    corrupt_.push_back(source);
  }
  int reads() {
    absl::MutexLock lock(&mu_);
    return reads_;
  }
  void set_delay(absl::Duration delay) { delay_ = delay; }

  absl::StatusOr<uint64_t> BlobSize(const std::string& id) override { return inner_->BlobSize(id); }
  absl::Status Read(const storage::BlobRange& range, storage::BlobRead* out) override {
    absl::SleepFor(delay_);
    std::string source;
    for (const std::string& candidate : sources_) {
      if (std::find(range.exclude_sources.begin(), range.exclude_sources.end(), candidate) ==
          range.exclude_sources.end()) {
        source = candidate;
        break;
      }
    }
    if (source.empty()) return absl::UnavailableError("no source left");
    RETURN_IF_ERROR(inner_->Read(range, out));
    out->source = source;
    absl::MutexLock lock(&mu_);
    ++reads_;
    if (std::find(corrupt_.begin(), corrupt_.end(), source) != corrupt_.end()) {
      for (char& c : out->data) c ^= 0x5a;
    }
    return absl::OkStatus();
  }
  void ReportBadData(const std::string& source) override {
    absl::MutexLock lock(&mu_);
    bad_.push_back(source);
  }
  std::vector<storage::SourceMetrics> Metrics() const override { return {}; }
  std::vector<std::string> bad() {
    absl::MutexLock lock(&mu_);
    return bad_;
  }

 private:
  std::unique_ptr<storage::BlobBackend> inner_;
  std::vector<std::string> sources_;
  absl::Duration delay_ = absl::ZeroDuration();
  absl::Mutex mu_;
  std::vector<std::string> corrupt_;
  std::vector<std::string> bad_;
  int reads_ = 0;
};

std::string Pattern(size_t size, int seed) {
  std::string data(size, '\0');
  uint32_t x = 2463534242u + seed;
  for (char& c : data) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return data;
}

class ChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create());
    std::string src = StrCat(dir_.path(), "/src");
    ASSERT_OK(CreateDirectories(src));
    big_ = Pattern(300 * 1024 + 17, 1);  // 4 full chunks of 64 KiB and a tail, and more
    small_ = Pattern(1000, 2);
    ASSERT_OK(WriteFileAtomically(StrCat(src, "/big"), big_));
    ASSERT_OK(WriteFileAtomically(StrCat(src, "/small"), small_));
    ASSERT_OK(WriteFileAtomically(StrCat(src, "/zeros"), std::string(200 * 1024, '\0')));
    ASSERT_OK(CreateDirectories(StrCat(dir_.path(), "/blobs")));
    ASSERT_OK_AND_ASSIGN(auto source, rafs::DirectorySource::Create(src));
    ASSERT_OK_AND_ASSIGN(rafs::LayerBuildResult built,
                         rafs::BuildLayer(*source, {.chunk_size = 64 * 1024,
                                                    .blob_dir = StrCat(dir_.path(), "/blobs")}));
    ASSERT_OK_AND_ASSIGN(boot_, rafs::Bootstrap::FromBytes(built.bootstrap));
    ASSERT_OK_AND_ASSIGN(auto localfs,
                         storage::LocalfsBackend::Create({.dir = StrCat(dir_.path(), "/blobs")}));
    backend_ = std::make_unique<TestBackend>(
        std::move(localfs), std::vector<std::string>{"mirror:a", "mirror:b", "origin"});
    ASSERT_OK_AND_ASSIGN(cache_,
                         cache::BlobCache::Open({.work_dir = StrCat(dir_.path(), "/cache")}));
  }

  std::vector<ChunkRef> Chunks(std::string_view path) {
    auto nid = boot_->Resolve(path);
    EXPECT_OK(nid.status());
    auto chunks = boot_->FileChunks(*nid);
    EXPECT_OK(chunks.status());
    return *chunks;
  }

  std::unique_ptr<ChunkStore> NewStore(ChunkStoreOptions options = {}, bool with_cache = true) {
    auto store =
        ChunkStore::Create(*boot_, backend_.get(), with_cache ? cache_.get() : nullptr, options);
    EXPECT_OK(store.status());
    return std::move(*store);
  }

  std::string ReadAll(ChunkStore& store, std::string_view path, size_t size, size_t step) {
    std::vector<ChunkRef> chunks = Chunks(path);
    std::string out(size, '\0');
    for (size_t off = 0; off < size; off += step) {
      size_t n = std::min(step, size - off);
      absl::Status status = store.Read(chunks, off, std::span<char>(out.data() + off, n));
      EXPECT_OK(status);
      if (!status.ok()) break;
    }
    return out;
  }

  TempDir dir_;
  std::string big_, small_;
  std::unique_ptr<rafs::Bootstrap> boot_;
  std::unique_ptr<TestBackend> backend_;
  std::unique_ptr<cache::BlobCache> cache_;
};

TEST_F(ChunkStoreTest, ReadsAcrossChunkBoundariesInAnyStep) {
  for (size_t step : {size_t{1} << 20, size_t{4096}, size_t{65536 + 7}, size_t{999}}) {
    auto store = NewStore({}, /*with_cache=*/false);
    EXPECT_EQ(ReadAll(*store, "/big", big_.size(), step), big_) << "step " << step;
    EXPECT_EQ(ReadAll(*store, "/small", small_.size(), step), small_);
    EXPECT_EQ(ReadAll(*store, "/zeros", 200 * 1024, step), std::string(200 * 1024, '\0'));
  }
}

TEST_F(ChunkStoreTest, RangeBeyondTheChunksIsAnError) {
  auto store = NewStore();
  std::string out(10, '\0');
  EXPECT_THAT(store->Read(Chunks("/small"), 995, std::span<char>(out)),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
}

TEST_F(ChunkStoreTest, AmplifiedMissFetchesFollowingChunksInOneRequest) {
  auto store = NewStore({.amplify_io = 1 << 20});
  std::string out(100, '\0');
  ASSERT_OK(store->Read(Chunks("/big"), 0, std::span<char>(out)));
  EXPECT_EQ(out, big_.substr(0, 100));
  EXPECT_EQ(backend_->reads(), 1);
  // Everything else of the blob came along: reading the whole file costs no more requests.
  EXPECT_EQ(ReadAll(*store, "/big", big_.size(), 4096), big_);
  EXPECT_EQ(ReadAll(*store, "/small", small_.size(), 4096), small_);
  EXPECT_EQ(backend_->reads(), 1);
  for (const ChunkRef& chunk : Chunks("/big")) EXPECT_TRUE(store->IsCached(chunk));
}

// Amplification stops on an `amplify_align` boundary of the blob when the budget reaches one, so
// that the pieces a peer fetches from the origin for the request hold no bytes it leaves unread.
TEST_F(ChunkStoreTest, AmplifiedRequestsEndOnAlignedOffsets) {
  std::vector<ChunkRef> chunks = Chunks("/big");
  ASSERT_EQ(chunks.size(), 5u);
  for (size_t i = 0; i < 4; ++i) {
    // Random bytes do not compress: each chunk is stored as is, 64 KiB apart.
    ASSERT_EQ(chunks[i].compressed_offset, chunks[0].compressed_offset + i * 65536);
    ASSERT_EQ(chunks[i].compressed_size, 65536u);
  }
  ASSERT_EQ(chunks[0].compressed_offset % (128 * 1024), 0u);
  for (uint64_t align : {uint64_t{0}, uint64_t{128 * 1024}}) {
    ASSERT_OK_AND_ASSIGN(
        cache_, cache::BlobCache::Open({.work_dir = StrCat(dir_.path(), "/cache", align)}));
    auto store = NewStore({.amplify_io = 256 * 1024, .amplify_align = align});
    std::string out(1, '\0');
    // A miss in chunk 1: the budget reaches 64 KiB into chunk 4's place.
    ASSERT_OK(store->Read(chunks, 65536, std::span<char>(out)));
    EXPECT_FALSE(store->IsCached(chunks[0])) << "align " << align;
    for (size_t i = 1; i < 4; ++i) EXPECT_TRUE(store->IsCached(chunks[i])) << "align " << align;
    // Unaligned, the tail chunk fits the budget; aligned, the request ends at 256 KiB.
    EXPECT_EQ(store->IsCached(chunks[4]), align == 0) << "align " << align;
    EXPECT_EQ(out[0], big_[65536]);
  }
}

TEST_F(ChunkStoreTest, CachedChunksSurviveANewStore) {
  {
    auto store = NewStore();
    EXPECT_EQ(ReadAll(*store, "/big", big_.size(), 65536), big_);
  }
  int reads = backend_->reads();
  auto store = NewStore({.validate_cached = true});
  EXPECT_EQ(ReadAll(*store, "/big", big_.size(), 65536), big_);
  EXPECT_EQ(backend_->reads(), reads);
  EXPECT_GT(store->metrics().cache_hits.load(), 0u);
}

// Cache writes run behind the readers: with no room in memory, a chunk read again at once comes
// from the write queue or the cache file, never from the backend again, for every compression
// mode of the cache, and a new store finds all of it on disk.
TEST_F(ChunkStoreTest, ChunksOnTheirWayToTheCacheAreReadFromTheQueue) {
  for (bool compressed : {false, true}) {
    SCOPED_TRACE(compressed ? "cache_compressed" : "uncompressed cache");
    ASSERT_OK_AND_ASSIGN(
        cache_, cache::BlobCache::Open({.work_dir = StrCat(dir_.path(), "/cache", compressed)}));
    int reads = backend_->reads();
    {
      auto store = NewStore({.cache_compressed = compressed, .memo_bytes = 1});
      for (int round = 0; round < 3; ++round)
        EXPECT_EQ(ReadAll(*store, "/big", big_.size(), 4096), big_);
      for (const ChunkRef& chunk : Chunks("/big")) EXPECT_TRUE(store->IsCached(chunk));
    }
    int fetched = backend_->reads() - reads;
    EXPECT_GE(fetched, 1);
    auto store = NewStore({.cache_compressed = compressed, .memo_bytes = 1});
    EXPECT_EQ(ReadAll(*store, "/big", big_.size(), 65536), big_);
    EXPECT_EQ(backend_->reads() - reads, fetched);
  }
}

TEST_F(ChunkStoreTest, ConcurrentReadersShareOneFetch) {
  backend_->set_delay(absl::Milliseconds(200));
  auto store = NewStore({.amplify_io = 0});
  std::vector<std::thread> threads;
  std::vector<std::string> results(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] { results[i] = ReadAll(*store, "/small", small_.size(), 4096); });
  }
  for (auto& thread : threads) thread.join();
  for (const std::string& result : results) EXPECT_EQ(result, small_);
  EXPECT_EQ(backend_->reads(), 1);
  EXPECT_GT(store->metrics().shared_waits.load(), 0u);
}

TEST_F(ChunkStoreTest, BadBytesFromOneSourceAreFetchedFromTheNext) {
  backend_->Corrupt("mirror:a");
  auto store = NewStore();
  EXPECT_EQ(ReadAll(*store, "/big", big_.size(), 65536), big_);
  EXPECT_THAT(backend_->bad(), ::testing::Contains("mirror:a"));
  EXPECT_GT(store->metrics().bad_fetches.load(), 0u);
}

TEST_F(ChunkStoreTest, AllSourcesBadIsDataLossAndNothingIsCached) {
  backend_->Corrupt("mirror:a");
  backend_->Corrupt("mirror:b");
  backend_->Corrupt("origin");
  auto store = NewStore();
  std::string out(4096, '\0');
  EXPECT_THAT(store->Read(Chunks("/big"), 0, std::span<char>(out)),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  for (const ChunkRef& chunk : Chunks("/big")) EXPECT_FALSE(store->IsCached(chunk));
}

TEST_F(ChunkStoreTest, CorruptCachedChunkIsDetectedAndFetchedAgain) {
  {
    auto store = NewStore();
    EXPECT_EQ(ReadAll(*store, "/big", big_.size(), 65536), big_);
  }
  // Damage the cached bytes of the first chunk behind the cache's back.
  ChunkRef first = Chunks("/big")[0];
  const std::string& blob_id = boot_->blobs()[first.blob_index].id;
  ASSERT_OK_AND_ASSIGN(
      UniqueFd fd, UniqueFd::Open(StrCat(dir_.path(), "/cache/", blob_id, ".blob.data"), O_RDWR));
  ASSERT_OK(PwriteFull(fd.get(), "garbage", first.uncompressed_offset + 10));
  int reads = backend_->reads();
  auto store = NewStore({.validate_cached = true});
  EXPECT_EQ(ReadAll(*store, "/big", big_.size(), 65536), big_);
  EXPECT_EQ(store->metrics().corrupt_cached.load(), 1u);
  EXPECT_EQ(backend_->reads(), reads + 1);
}

TEST_F(ChunkStoreTest, WarmFillsTheCacheInMergedRequests) {
  auto store = NewStore();
  std::vector<ChunkRef> all = boot_->BlobChunks(0);
  ASSERT_OK(store->Warm(all, 1 << 20));
  EXPECT_EQ(backend_->reads(), 1);
  for (const ChunkRef& chunk : all) EXPECT_TRUE(store->IsCached(chunk));
  ASSERT_OK(store->Warm(all, 1 << 20));
  EXPECT_EQ(backend_->reads(), 1);
}

}  // namespace
}  // namespace naiad::fs
