#include "piece/piece_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/crash_testing.h"
#include "base/digest.h"
#include "base/file.h"
#include "base/simulated_clock.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "piece/pieces_file.h"

namespace naiad::piece {
namespace {

using ::naiad::testing::PseudoRandomBytes;

using ::naiad::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;

constexpr uint64_t kKiB = uint64_t{1} << 10;
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint32_t kPiece = 64 << 10;  // small pieces keep the tests fast

std::string Id(char c) { return std::string(64, c); }

std::string Sha256Of(std::string_view data) {
  return Digest::Of(DigestAlgorithm::kSha256, data).ToString();
}

std::string_view PieceOf(const TaskMeta& meta, const std::string& content, uint32_t n) {
  return std::string_view(content).substr(meta.PieceOffset(n), meta.PieceLength(n));
}

// --- piece sizes and task ids ---

TEST(PieceSizeTest, Rule) {
  struct Case {
    uint64_t length;
    uint64_t piece;
  };
  const Case cases[] = {
      {0, 256 * kKiB},
      {1, 256 * kKiB},
      {100 * kMiB, 256 * kKiB},
      {250 * kMiB, 256 * kKiB},  // 262,144,000 / 1000 = exactly 256 KiB
      {250 * kMiB + 1000, 512 * kKiB},
      {256 * kMiB, 512 * kKiB},
      {500 * kMiB, 512 * kKiB},
      {500 * kMiB + 1000, kMiB},
      {1000 * kMiB, kMiB},  // 1,048,576,000 / 1000 = exactly 1 MiB
      {1000 * kMiB + 1000, 2 * kMiB},
      {1 * kGiB, 2 * kMiB},
      {2'000'000'000, 2 * kMiB},  // 2 GB
      {2 * kGiB, 4 * kMiB},
      {4'000'000'000, 4 * kMiB},
      {8'000'000'000, 8 * kMiB},
      {16 * 1000 * kMiB, 16 * kMiB},
      {64 * kGiB, 16 * kMiB},
      {uint64_t{1} << 40, 16 * kMiB},
      {UINT64_MAX, 16 * kMiB},
  };
  for (const Case& c : cases) EXPECT_EQ(PieceSizeFor(c.length), c.piece) << c.length;
}

TEST(TaskMetaTest, PieceArithmetic) {
  TaskMeta meta{.content_length = 10 * kPiece + 5, .piece_size = kPiece};
  EXPECT_EQ(meta.piece_count(), 11u);
  EXPECT_EQ(meta.PieceOffset(10), 10u * kPiece);
  EXPECT_EQ(meta.PieceLength(0), kPiece);
  EXPECT_EQ(meta.PieceLength(10), 5u);
  EXPECT_EQ(meta.PieceLength(11), 0u);
  meta.content_length = 0;
  EXPECT_EQ(meta.piece_count(), 0u);
  TaskMeta defaulted{.content_length = 3 * kMiB};  // piece_size 0: PieceSizeFor, 256 KiB
  EXPECT_EQ(defaulted.piece_count(), 12u);
}

TEST(TaskIdTest, BlobFromTwoRegistriesIsOneTask) {
  const std::string hex = Sha256Of("layer").substr(7);
  const std::string a = StrCat("https://registry-1.docker.io/v2/library/ubuntu/blobs/sha256:", hex);
  const std::string b =
      StrCat("http://mirror.local:5000/v2/mirrors/library/ubuntu/blobs/sha256:", hex, "?ns=x");
  EXPECT_EQ(TaskIdForUrl(a, {}), hex);
  EXPECT_EQ(TaskIdForUrl(b, {}), hex);
  EXPECT_EQ(BlobDigestOfUrl(a), StrCat("sha256:", hex));
  EXPECT_EQ(BlobDigestOfUrl(b), StrCat("sha256:", hex));
  EXPECT_TRUE(IsValidTaskId(TaskIdForUrl(a, {})));
}

TEST(TaskIdTest, NotBlobUrls) {
  const std::string hex = Sha256Of("layer").substr(7);
  std::string upper = hex;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  for (const std::string& url : {
           StrCat("https://r.io/v2/x/manifests/sha256:", hex),
           StrCat("https://r.io/v2/blobs/sha256:", hex),  // no repository name
           StrCat("https://r.io/x/v2/y/blobs/sha256:", hex),
           StrCat("https://r.io/v2/x/blobs/sha256:", upper),
           StrCat("https://r.io/v2/x/blobs/sha256:", hex.substr(1)),
           StrCat("https://r.io/v2/x/blobs/sha256:", hex, "0"),
           StrCat("HTTPS://r.io/v2/x/blobs/sha256:", hex),
           StrCat("r.io/v2/x/blobs/sha256:", hex),
       }) {
    EXPECT_EQ(BlobDigestOfUrl(url), std::nullopt) << url;
    const std::string id = TaskIdForUrl(url, {});
    EXPECT_NE(id, hex) << url;
    EXPECT_EQ(id, Digest::Of(DigestAlgorithm::kSha256, StrCat(url, "STANDARD")).Hex()) << url;
  }
}

TEST(TaskIdTest, FilteredParamsChangeNothingOthersDo) {
  const std::vector<std::string> filtered = {"X-Amz-Signature", "X-Amz-Date", "ns"};
  const std::string base = "https://bucket.s3.example.com/models/weights.bin";
  const std::string id = TaskIdForUrl(base, filtered);
  EXPECT_EQ(id, Digest::Of(DigestAlgorithm::kSha256, StrCat(base, "STANDARD")).Hex());
  EXPECT_EQ(TaskIdForUrl(StrCat(base, "?X-Amz-Signature=abc&X-Amz-Date=1"), filtered), id);
  EXPECT_EQ(TaskIdForUrl(StrCat(base, "?X-Amz-Date=2&X-Amz-Signature=def"), filtered), id);
  // Other parameters count, in their order, with filtered ones taken out from between them.
  const std::string with_version = TaskIdForUrl(StrCat(base, "?version=2"), filtered);
  EXPECT_NE(with_version, id);
  EXPECT_EQ(TaskIdForUrl(StrCat(base, "?X-Amz-Date=3&version=2&X-Amz-Signature=x"), filtered),
            with_version);
  EXPECT_EQ(TaskIdForUrl(StrCat(base, "?a=1&ns=docker.io&b=2"), filtered),
            Digest::Of(DigestAlgorithm::kSha256, StrCat(base, "?a=1&b=2STANDARD")).Hex());
  EXPECT_NE(TaskIdForUrl(StrCat(base, "?b=2&a=1"), filtered),
            TaskIdForUrl(StrCat(base, "?a=1&b=2"), filtered));
  // Without the filter list the parameters count.
  EXPECT_NE(TaskIdForUrl(StrCat(base, "?X-Amz-Signature=abc"), {}), id);
}

// Dragonfly v2 computes sha256(filtered URL + "STANDARD") when no tag or application is given;
// its own test vector (https://example.com?foo=foo&bar=bar, filtering foo and bar) is this one.
TEST(TaskIdTest, MatchesDragonfly) {
  EXPECT_EQ(TaskIdForUrl("https://example.com?foo=foo&bar=bar", {"foo", "bar"}),
            "457b4328cde278e422c9e243f7bfd1e97f511fec43a80f535cf6b0ef6b086776");
  EXPECT_EQ(TaskIdForUrl("https://example.com", {}),
            "457b4328cde278e422c9e243f7bfd1e97f511fec43a80f535cf6b0ef6b086776");
}

TEST(TaskIdTest, ValidIds) {
  EXPECT_TRUE(IsValidTaskId(Id('a')));
  EXPECT_TRUE(IsValidTaskId(Sha256Of("x").substr(7)));
  EXPECT_FALSE(IsValidTaskId(""));
  EXPECT_FALSE(IsValidTaskId("../x"));
  EXPECT_FALSE(IsValidTaskId("ABC"));
  EXPECT_FALSE(IsValidTaskId(std::string(63, 'a')));
  EXPECT_FALSE(IsValidTaskId(std::string(65, 'a')));
  EXPECT_FALSE(IsValidTaskId(std::string(64, 'A')));
  EXPECT_FALSE(IsValidTaskId(std::string(62, 'a') + "/."));
}

// --- the store ---

class PieceStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("piece-store-test-")); }

  PieceStoreOptions Options(uint64_t quota = 0) {
    return {.dir = dir_.Join("store"),
            .task_ttl = absl::Hours(6),
            .quota_bytes = quota,
            .clock = &clock_};
  }

  std::string TaskDir(const std::string& id) { return dir_.Join(StrCat("store/tasks/", id)); }

  // A task of `content` in kPiece pieces.
  static TaskMeta Meta(const std::string& id, const std::string& content, bool digest = true) {
    return {.task_id = id,
            .url = StrCat("https://example.com/", id.substr(0, 8)),
            .content_length = content.size(),
            .piece_size = kPiece,
            .digest = digest ? Sha256Of(content) : "",
            .content_type = "application/octet-stream"};
  }

  static void WriteAll(Task& task, const std::string& content) {
    for (uint32_t n = 0; n < task.meta().piece_count(); ++n) {
      ASSERT_OK(task.WritePiece(n, PieceOf(task.meta(), content, n)));
    }
  }

  TempDir dir_;
  SimulatedClock clock_;
};

TEST_F(PieceStoreTest, WriteAndReadPieces) {
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  const std::string content = PseudoRandomBytes(5 * kPiece + 123);
  ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id('a'), content)));
  EXPECT_EQ(task->meta().piece_count(), 6u);
  EXPECT_EQ(task->pieces_present(), 0u);
  EXPECT_FALSE(task->complete());

  ASSERT_OK(task->WritePiece(2, PieceOf(task->meta(), content, 2)));
  EXPECT_TRUE(task->HasPiece(2));
  EXPECT_FALSE(task->HasPiece(1));
  EXPECT_EQ(task->PieceCrc(2), Crc32c(PieceOf(task->meta(), content, 2)));
  EXPECT_EQ(task->PieceCrc(1), std::nullopt);
  // A range inside piece 2, and one that needs piece 3 too.
  std::string out(1000, '\0');
  ASSERT_OK(task->ReadRange(2 * kPiece + 10, out));
  EXPECT_EQ(out, content.substr(2 * kPiece + 10, 1000));
  EXPECT_THAT(task->ReadRange(3 * kPiece - 10, out),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("piece 3")));
  EXPECT_THAT(task->ReadRange(content.size() - 10, out),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("task")));
  // Rewriting a present piece is a no-op; the crc may be given.
  ASSERT_OK(task->WritePiece(2, PieceOf(task->meta(), content, 2)));
  ASSERT_OK(task->WritePiece(5, PieceOf(task->meta(), content, 5),
                             Crc32c(PieceOf(task->meta(), content, 5))));
  EXPECT_EQ(task->pieces_present(), 2u);
  EXPECT_EQ(store->Stats().tasks, 1u);
  EXPECT_EQ(store->Stats().bytes, kPiece + 123);

  // Bad input.
  EXPECT_THAT(task->WritePiece(6, "x"), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(task->WritePiece(0, "short"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected")));
  EXPECT_THAT(task->WritePiece(5, std::string(kPiece, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, _));

  // The same task is found again.
  EXPECT_EQ(store->Find(Id('a')), task);
  ASSERT_OK_AND_ASSIGN(auto again, store->CreateOrOpen(Meta(Id('a'), content)));
  EXPECT_EQ(again, task);
  EXPECT_EQ(store->Find(Id('b')), nullptr);
}

// Parts: bytes of a piece that is not present, readable here, made a piece once they cover it.
TEST_F(PieceStoreTest, PartsAreReadableAndBecomeAPieceWhenTheyCoverIt) {
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  const std::string content = PseudoRandomBytes(3 * kPiece + 50);
  ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id('a'), content)));
  auto part = [&](uint64_t begin, uint64_t end) {
    return task->WritePart(begin, std::string_view(content).substr(begin, end - begin));
  };
  const uint64_t p1 = kPiece;  // piece 1 is [p1, p1 + kPiece)
  ASSERT_OK(part(p1 + 1000, p1 + 2000));
  ASSERT_OK(part(p1 + 5000, p1 + 6000));
  EXPECT_FALSE(task->HasPiece(1));
  EXPECT_TRUE(task->HasRange({p1 + 1000, p1 + 2000}));
  EXPECT_FALSE(task->HasRange({p1 + 1000, p1 + 2001}));
  EXPECT_EQ(task->FirstGap({p1, p1 + kPiece}), (ByteSpan{p1, p1 + 1000}));
  EXPECT_EQ(task->FirstGap({p1 + 1500, p1 + 5500}), (ByteSpan{p1 + 2000, p1 + 5000}));
  EXPECT_EQ(task->FirstGap({p1 + 1000, p1 + 2000}), std::nullopt);
  // A gap runs on into the next piece while nothing is held there.
  EXPECT_EQ(task->FirstGap({p1 + 5500, 2 * kPiece + 10}), (ByteSpan{p1 + 6000, 2 * kPiece + 10}));
  std::string out(1000, '\0');
  ASSERT_OK(task->ReadRange(p1 + 1000, out));
  EXPECT_EQ(out, content.substr(p1 + 1000, 1000));
  EXPECT_THAT(task->ReadRange(p1 + 1500, out),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("piece 1")));
  EXPECT_THAT(task->WritePart(p1 + kPiece - 10, std::string(20, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("one piece")));

  // A waiter for a range wakes when a part brings it.
  std::atomic<bool> woke{false};
  std::thread waiter([&] {
    woke = task->WaitForRange({p1 + 1500, p1 + 5500}, absl::Now() + absl::Seconds(30));
  });
  ASSERT_OK(part(p1 + 1900, p1 + 5100));
  waiter.join();
  EXPECT_TRUE(woke.load());

  // Filling the gaps (overlapping what is held) makes piece 1 present, with its crc.
  ASSERT_OK(part(p1, p1 + 1200));
  EXPECT_FALSE(task->HasPiece(1));
  ASSERT_OK(part(p1 + 5900, p1 + kPiece));
  EXPECT_TRUE(task->HasPiece(1));
  EXPECT_EQ(task->PieceCrc(1), Crc32c(PieceOf(task->meta(), content, 1)));
  ASSERT_OK(part(p1, p1 + 10));  // a part of a present piece: nothing to do

  // Parts live in memory only: a restart keeps the piece, not the parts of piece 2.
  ASSERT_OK(part(2 * kPiece, 2 * kPiece + 100));
  EXPECT_TRUE(task->HasRange({2 * kPiece, 2 * kPiece + 100}));
  task.reset();
  store.reset();
  ASSERT_OK_AND_ASSIGN(store, PieceStore::Open(Options()));
  task = store->Find(Id('a'));
  ASSERT_NE(task, nullptr);
  EXPECT_TRUE(task->HasPiece(1));
  EXPECT_FALSE(task->HasRange({2 * kPiece, 2 * kPiece + 100}));
}

// The last piece made of parts completes the task: its digest is checked as for any piece.
TEST_F(PieceStoreTest, PartsCompleteATaskAndItsDigestIsChecked) {
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  const std::string content = PseudoRandomBytes(2 * kPiece + 7);
  ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id('a'), content)));
  ASSERT_OK(task->WritePiece(0, PieceOf(task->meta(), content, 0)));
  ASSERT_OK(task->WritePiece(2, PieceOf(task->meta(), content, 2)));
  ASSERT_OK(task->WritePart(kPiece + 100, std::string_view(content).substr(kPiece + 100, 900)));
  std::string wrong(100, 'x');
  EXPECT_FALSE(task->complete());
  ASSERT_OK(task->WritePart(kPiece, wrong));
  EXPECT_THAT(task->WritePart(kPiece + 1000,
                              std::string_view(content).substr(kPiece + 1000, kPiece - 1000)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("expected sha256:")));
  EXPECT_FALSE(task->complete());
  EXPECT_EQ(task->pieces_present(), 0u);
  EXPECT_FALSE(task->HasRange({kPiece + 100, kPiece + 1000}));
}

TEST_F(PieceStoreTest, CrcMismatchIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  const std::string content = PseudoRandomBytes(3 * kPiece);
  ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id('a'), content)));
  const std::string_view piece = PieceOf(task->meta(), content, 1);
  EXPECT_THAT(task->WritePiece(1, piece, Crc32c(piece) ^ 1),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("crc32c")));
  EXPECT_FALSE(task->HasPiece(1));
  EXPECT_EQ(task->pieces_present(), 0u);
  EXPECT_OK(task->failure());  // the piece is refused, the task goes on
  ASSERT_OK(task->WritePiece(1, piece, Crc32c(piece)));
  EXPECT_TRUE(task->HasPiece(1));
}

TEST_F(PieceStoreTest, ConcurrentWritersInRandomOrder) {
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  const std::string content = PseudoRandomBytes(97 * kPiece + 4321, 7);
  ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id('c'), content)));
  const uint32_t count = task->meta().piece_count();
  std::vector<uint32_t> order(count);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(42));

  // Readers wait for random ranges and check them while the pieces arrive.
  std::atomic<int> read_failures{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      std::mt19937 rng(r);
      for (int i = 0; i < 50; ++i) {
        const uint64_t offset = rng() % content.size();
        const uint64_t size = std::min<uint64_t>(1 + rng() % (3 * kPiece), content.size() - offset);
        const uint32_t first = static_cast<uint32_t>(offset / kPiece);
        const uint32_t last = static_cast<uint32_t>((offset + size - 1) / kPiece);
        if (!task->WaitForPieces(first, last, absl::Now() + absl::Seconds(30))) {
          read_failures++;
          continue;
        }
        std::string out(size, '\0');
        if (!task->ReadRange(offset, out).ok() || out != content.substr(offset, size)) {
          read_failures++;
        }
      }
    });
  }
  // Four writers; each piece is offered twice (by different threads), and a few with a crc.
  std::vector<std::thread> writers;
  std::atomic<int> write_failures{0};
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      for (uint32_t i = 0; i < count; ++i) {
        if (i % 4 != static_cast<uint32_t>(w) && (i + 1) % 4 != static_cast<uint32_t>(w)) continue;
        const uint32_t n = order[i];
        const std::string_view piece = PieceOf(task->meta(), content, n);
        std::optional<uint32_t> crc;
        if (n % 3 == 0) crc = Crc32c(piece);
        if (!task->WritePiece(n, piece, crc).ok()) write_failures++;
      }
    });
  }
  for (auto& t : writers) t.join();
  for (auto& t : readers) t.join();
  EXPECT_EQ(write_failures.load(), 0);
  EXPECT_EQ(read_failures.load(), 0);
  EXPECT_TRUE(task->complete());
  EXPECT_OK(task->failure());
  std::string all(content.size(), '\0');
  ASSERT_OK(task->ReadRange(0, all));
  EXPECT_TRUE(all == content);
  EXPECT_EQ(store->Stats().bytes, content.size());
}

TEST_F(PieceStoreTest, WaitForPiecesWakesTimesOutAndFails) {
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  const std::string content = PseudoRandomBytes(4 * kPiece);
  ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id('a'), content)));

  // Times out.
  const absl::Time start = absl::Now();
  EXPECT_FALSE(task->WaitForPieces(0, 0, start + absl::Milliseconds(50)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
  EXPECT_FALSE(task->WaitForPieces(0, 4, absl::Now() + absl::Seconds(5)));  // out of range
  EXPECT_FALSE(task->WaitForPieces(2, 1, absl::Now() + absl::Seconds(5)));

  // Wakes when the last piece of the range arrives.
  std::atomic<bool> woke{false};
  std::thread waiter([&] { woke = task->WaitForPieces(1, 2, absl::Now() + absl::Seconds(60)); });
  ASSERT_OK(task->WritePiece(1, PieceOf(task->meta(), content, 1)));
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(woke.load());
  ASSERT_OK(task->WritePiece(2, PieceOf(task->meta(), content, 2)));
  waiter.join();
  EXPECT_TRUE(woke.load());
  EXPECT_TRUE(task->WaitForPieces(1, 2, absl::InfinitePast()));  // present: no wait

  // Wakes with false when the task fails; present pieces stay.
  std::atomic<bool> result{true};
  std::thread failing([&] { result = task->WaitForPieces(0, 3, absl::Now() + absl::Seconds(60)); });
  absl::SleepFor(absl::Milliseconds(20));
  task->Fail(absl::UnavailableError("origin down"));
  failing.join();
  EXPECT_FALSE(result.load());
  EXPECT_THAT(task->failure(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("origin")));
  EXPECT_TRUE(task->HasPiece(1));
  EXPECT_THAT(task->WritePiece(0, PieceOf(task->meta(), content, 0)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("origin down")));

  // Asked for again, the failed task is a new attempt with its pieces.
  ASSERT_OK_AND_ASSIGN(auto again, store->CreateOrOpen(Meta(Id('a'), content)));
  EXPECT_EQ(again, task);
  EXPECT_OK(task->failure());
  EXPECT_EQ(task->pieces_present(), 2u);
  ASSERT_OK(task->WritePiece(0, PieceOf(task->meta(), content, 0)));
}

TEST_F(PieceStoreTest, DigestVerifiedAtCompletion) {
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  const std::string content = PseudoRandomBytes(6 * kPiece + 17);

  ASSERT_OK_AND_ASSIGN(auto good, store->CreateOrOpen(Meta(Id('a'), content)));
  WriteAll(*good, content);
  EXPECT_TRUE(good->complete());
  EXPECT_OK(good->failure());

  // Pieces that each match their crc but not the whole: the last one is refused and every piece
  // is dropped.
  TaskMeta meta = Meta(Id('b'), content);
  meta.digest = Sha256Of("something else");
  ASSERT_OK_AND_ASSIGN(auto bad, store->CreateOrOpen(meta));
  std::atomic<bool> waited{true};
  std::thread waiter([&] { waited = bad->WaitForPieces(0, 6, absl::Now() + absl::Seconds(60)); });
  for (uint32_t n = 0; n + 1 < bad->meta().piece_count(); ++n) {
    ASSERT_OK(bad->WritePiece(n, PieceOf(bad->meta(), content, n)));
  }
  EXPECT_THAT(bad->WritePiece(6, PieceOf(bad->meta(), content, 6)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("expected sha256:")));
  waiter.join();
  EXPECT_FALSE(waited.load());
  EXPECT_FALSE(bad->complete());
  EXPECT_EQ(bad->pieces_present(), 0u);
  for (uint32_t n = 0; n < bad->meta().piece_count(); ++n) EXPECT_FALSE(bad->HasPiece(n));
  EXPECT_THAT(bad->failure(), StatusIs(absl::StatusCode::kDataLoss, _));
  EXPECT_EQ(store->Stats().bytes, content.size());  // only the good task's

  // On disk too.
  bad.reset();
  good.reset();
  store.reset();
  ASSERT_OK_AND_ASSIGN(store, PieceStore::Open(Options()));
  ASSERT_NE(store->Find(Id('b')), nullptr);
  EXPECT_EQ(store->Find(Id('b'))->pieces_present(), 0u);
  EXPECT_TRUE(store->Find(Id('a'))->complete());
}

TEST_F(PieceStoreTest, TaskWithoutDigestCompletes) {
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  const std::string content = PseudoRandomBytes(2 * kPiece + 1);
  ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id('a'), content, false)));
  WriteAll(*task, content);
  EXPECT_TRUE(task->complete());
  // An empty task is complete at once.
  ASSERT_OK_AND_ASSIGN(auto empty, store->CreateOrOpen(Meta(Id('e'), "")));
  EXPECT_TRUE(empty->complete());
  EXPECT_EQ(empty->meta().piece_count(), 0u);
}

TEST_F(PieceStoreTest, InvalidMetaIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  for (const std::string& id : {std::string("../x"), std::string("ABC"), std::string(63, 'a'),
                                std::string(64, 'A'), std::string(65, 'a'), std::string(""),
                                std::string("../../../../etc") + std::string(49, 'a')}) {
    EXPECT_THAT(store->CreateOrOpen(Meta(id, "abc")),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("task id")))
        << id;
    EXPECT_EQ(store->Find(id), nullptr);
    EXPECT_THAT(store->Delete(id), StatusIs(absl::StatusCode::kInvalidArgument, _));
  }
  TaskMeta meta = Meta(Id('a'), "abc");
  meta.digest = "md5:abc";
  EXPECT_THAT(store->CreateOrOpen(meta), StatusIs(absl::StatusCode::kInvalidArgument, _));
  meta = Meta(Id('a'), "");
  meta.digest = Sha256Of("not empty");
  EXPECT_THAT(store->CreateOrOpen(meta), StatusIs(absl::StatusCode::kInvalidArgument, _));
  meta = {.task_id = Id('a'), .content_length = uint64_t{1} << 40, .piece_size = 1};
  EXPECT_THAT(store->CreateOrOpen(meta),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too many pieces")));
  // Nothing reached the disk.
  EXPECT_TRUE(std::filesystem::is_empty(dir_.Join("store/tasks")));
  EXPECT_EQ(std::filesystem::directory_iterator(dir_.path())->path().filename(), "store");
}

TEST_F(PieceStoreTest, DifferentShapeReplacesTask) {
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  const std::string content = PseudoRandomBytes(3 * kPiece);
  ASSERT_OK_AND_ASSIGN(auto old_task, store->CreateOrOpen(Meta(Id('a'), content)));
  ASSERT_OK(old_task->WritePiece(0, PieceOf(old_task->meta(), content, 0)));
  const std::string longer = PseudoRandomBytes(4 * kPiece);
  ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id('a'), longer)));
  EXPECT_NE(task, old_task);
  EXPECT_EQ(task->pieces_present(), 0u);
  EXPECT_EQ(task->meta().content_length, longer.size());
  EXPECT_THAT(old_task->failure(), StatusIs(absl::StatusCode::kAborted, HasSubstr("replaced")));
  EXPECT_EQ(store->Stats().tasks, 1u);
}

TEST_F(PieceStoreTest, DeleteRemovesTask) {
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  const std::string content = PseudoRandomBytes(2 * kPiece);
  ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id('a'), content)));
  ASSERT_OK(store->Delete(Id('a')));
  EXPECT_FALSE(std::filesystem::exists(TaskDir(Id('a'))));
  EXPECT_EQ(store->Find(Id('a')), nullptr);
  EXPECT_THAT(task->failure(), StatusIs(absl::StatusCode::kAborted, HasSubstr("deleted")));
  EXPECT_THAT(store->Delete(Id('a')), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_TRUE(std::filesystem::is_empty(dir_.Join("store/trash")));
}

TEST_F(PieceStoreTest, RestartRecoversPiecesAndCompleteness) {
  const std::string partial = PseudoRandomBytes(5 * kPiece + 3, 1);
  const std::string whole = PseudoRandomBytes(3 * kPiece, 2);
  {
    ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
    ASSERT_OK_AND_ASSIGN(auto a, store->CreateOrOpen(Meta(Id('a'), partial)));
    ASSERT_OK(a->WritePiece(1, PieceOf(a->meta(), partial, 1)));
    ASSERT_OK(a->WritePiece(5, PieceOf(a->meta(), partial, 5)));
    ASSERT_OK_AND_ASSIGN(auto b, store->CreateOrOpen(Meta(Id('b'), whole)));
    WriteAll(*b, whole);
  }
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  EXPECT_EQ(store->Stats().tasks, 2u);
  EXPECT_EQ(store->Stats().bytes, kPiece + 3 + whole.size());
  std::shared_ptr<Task> a = store->Find(Id('a'));
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->meta().url, Meta(Id('a'), partial).url);
  EXPECT_EQ(a->meta().digest, Sha256Of(partial));
  EXPECT_EQ(a->meta().content_type, "application/octet-stream");
  EXPECT_EQ(a->pieces_present(), 2u);
  EXPECT_TRUE(a->HasPiece(1));
  EXPECT_TRUE(a->HasPiece(5));
  EXPECT_EQ(a->PieceCrc(5), Crc32c(PieceOf(a->meta(), partial, 5)));
  EXPECT_FALSE(a->complete());
  std::string out(kPiece, '\0');
  ASSERT_OK(a->ReadRange(kPiece, out));
  EXPECT_TRUE(out == partial.substr(kPiece, kPiece));
  // The rest arrives after the restart and completes the (verified) task.
  for (uint32_t n : {0u, 2u, 3u, 4u}) ASSERT_OK(a->WritePiece(n, PieceOf(a->meta(), partial, n)));
  EXPECT_TRUE(a->complete());

  std::shared_ptr<Task> b = store->Find(Id('b'));
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->complete());
  std::string all(whole.size(), '\0');
  ASSERT_OK(b->ReadRange(0, all));
  EXPECT_TRUE(all == whole);
}

TEST_F(PieceStoreTest, DamagedTasksAreRemoved) {
  const std::string content = PseudoRandomBytes(4 * kPiece);
  const std::vector<char> ids = {'a', 'b', 'c', 'd', 'e', 'f', '3', '1', '2'};
  {
    ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
    for (char c : ids) {
      ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id(c), content)));
      ASSERT_OK(task->WritePiece(0, PieceOf(task->meta(), content, 0)));
      ASSERT_OK(task->WritePiece(3, PieceOf(task->meta(), content, 3)));
    }
  }
  auto corrupt = [&](char c, const std::string& file, uint64_t offset, std::string_view bytes) {
    ASSERT_OK_AND_ASSIGN(UniqueFd fd, UniqueFd::Open(StrCat(TaskDir(Id(c)), "/", file), O_RDWR));
    ASSERT_OK(PwriteFull(fd.get(), bytes, offset));
  };
  auto truncate = [&](char c, const std::string& file, uint64_t size) {
    ASSERT_EQ(::truncate(StrCat(TaskDir(Id(c)), "/", file).c_str(), static_cast<off_t>(size)), 0);
  };
  ASSERT_OK(testing::WriteTestFile(StrCat(TaskDir(Id('a')), "/meta.json"), "{\"version\": 1, "));
  corrupt('b', "pieces", 0, "garbage!");                     // bad magic
  truncate('c', "pieces", 10);                               // torn header
  corrupt('d', "pieces", PieceRecordOffset(1) + 4, "\x07");  // bad flags
  truncate('e', "data", 100);                                // data cut short
  ASSERT_EQ(::unlink(StrCat(TaskDir(Id('f')), "/pieces").c_str()), 0);
  {
    // A well-formed meta.json that names another task.
    const std::string path = StrCat(TaskDir(Id('3')), "/meta.json");
    ASSERT_OK_AND_ASSIGN(std::string meta_json, ReadFileToString(path));
    const size_t at = meta_json.find(Id('3'));
    ASSERT_NE(at, std::string::npos);
    meta_json.replace(at, 64, Id('4'));
    ASSERT_OK(testing::WriteTestFile(path, meta_json));
  }
  // A record torn at the end of the file: the records before it survive.
  truncate('1', "pieces", PieceRecordOffset(3) + 5);
  // Stray entries in tasks/.
  ASSERT_OK(CreateDirectories(dir_.Join("store/tasks/../tasks/not-a-task")));
  ASSERT_OK(testing::WriteTestFile(dir_.Join("store/tasks/") + Id('9'), "a file"));

  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  for (char c : {'a', 'b', 'c', 'd', 'e', 'f', '3'}) {
    EXPECT_EQ(store->Find(Id(c)), nullptr) << c;
    EXPECT_FALSE(std::filesystem::exists(TaskDir(Id(c)))) << c;
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("store/tasks/not-a-task")));
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("store/tasks/") + Id('9')));
  std::shared_ptr<Task> torn = store->Find(Id('1'));
  ASSERT_NE(torn, nullptr);
  EXPECT_TRUE(torn->HasPiece(0));
  EXPECT_FALSE(torn->HasPiece(3));
  EXPECT_EQ(std::filesystem::file_size(StrCat(TaskDir(Id('1')), "/pieces")), PieceRecordOffset(4));
  std::shared_ptr<Task> intact = store->Find(Id('2'));
  ASSERT_NE(intact, nullptr);
  EXPECT_EQ(intact->pieces_present(), 2u);
  EXPECT_EQ(store->Stats().tasks, 2u);
  // A removed task can be created again.
  ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id('b'), content)));
  WriteAll(*task, content);
  EXPECT_TRUE(task->complete());
}

// A writer process killed at random moments never leaves a piece recorded whose bytes are
// missing: after a reopen every recorded piece reads back whole and matches its crc.
TEST_F(PieceStoreTest, KillDuringWritesLeavesOnlyCompletePieces) {
  const std::string content = PseudoRandomBytes(40 * kPiece + 999, 3);
  const TaskMeta meta = Meta(Id('5'), content);
  std::mt19937 rng(20261128);
  uint32_t max_present = 0;
  int completed = 0;
  for (int iteration = 0; iteration < 30; ++iteration) {
    // Child: fills the task in random order, deletes it and starts again, until killed.
    ASSERT_OK(::naiad::testing::ForkAndKill(
        [&](const std::function<void()>& ready) {
          auto store = PieceStore::Open(Options());
          if (!store.ok()) ::_exit(2);
          ready();
          std::mt19937 child_rng(iteration);
          std::vector<uint32_t> order(meta.piece_count());
          std::iota(order.begin(), order.end(), 0);
          for (;;) {
            auto task = (*store)->CreateOrOpen(meta);
            if (!task.ok()) ::_exit(4);
            std::shuffle(order.begin(), order.end(), child_rng);
            for (uint32_t n : order) {
              if (!(*task)->WritePiece(n, PieceOf(meta, content, n)).ok()) ::_exit(5);
            }
            if (!(*store)->Delete(meta.task_id).ok()) ::_exit(6);
          }
        },
        absl::Microseconds(500 + rng() % 40000)));

    ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
    std::shared_ptr<Task> task = store->Find(meta.task_id);
    if (task == nullptr) continue;
    max_present = std::max(max_present, task->pieces_present());
    if (task->complete()) completed++;
    for (uint32_t n = 0; n < meta.piece_count(); ++n) {
      if (!task->HasPiece(n)) continue;
      std::string out(meta.PieceLength(n), '\0');
      ASSERT_OK(task->ReadRange(meta.PieceOffset(n), out));
      ASSERT_TRUE(out == PieceOf(meta, content, n)) << "iteration " << iteration << " piece " << n;
      ASSERT_EQ(task->PieceCrc(n), Crc32c(out));
    }
  }
  EXPECT_GT(max_present, 0u);
  RecordProperty("max_present", static_cast<int>(max_present));
  RecordProperty("completed", completed);
}

TEST_F(PieceStoreTest, GcByTtlSkipsTasksInUse) {
  const std::string content = PseudoRandomBytes(kPiece);
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  {
    ASSERT_OK_AND_ASSIGN(auto a, store->CreateOrOpen(Meta(Id('a'), content)));
    ASSERT_OK_AND_ASSIGN(auto b, store->CreateOrOpen(Meta(Id('b'), content)));
    WriteAll(*a, content);
    WriteAll(*b, content);
  }
  ASSERT_OK_AND_ASSIGN(auto held, store->CreateOrOpen(Meta(Id('c'), content)));
  clock_.Advance(absl::Hours(5));
  {
    std::string out(10, '\0');
    ASSERT_OK(store->Find(Id('b'))->ReadRange(0, out));  // b is used again
  }
  EXPECT_EQ(store->CollectGarbage().tasks_removed, 0u);
  clock_.Advance(absl::Hours(2));  // a idle 7 h, b 2 h, c 7 h but held
  GcResult result = store->CollectGarbage();
  EXPECT_EQ(result.tasks_removed, 1u);
  EXPECT_EQ(result.bytes_freed, content.size());
  EXPECT_THAT(result.removed, ::testing::ElementsAre(Id('a')));
  EXPECT_EQ(store->Find(Id('a')), nullptr);
  EXPECT_FALSE(std::filesystem::exists(TaskDir(Id('a'))));
  EXPECT_NE(store->Find(Id('b')), nullptr);
  EXPECT_NE(store->Find(Id('c')), nullptr);
  EXPECT_OK(held->failure());
  EXPECT_TRUE(std::filesystem::is_empty(dir_.Join("store/trash")));
  // Released (Find above touched it: it needs another 6 h).
  held.reset();
  clock_.Advance(absl::Hours(6) + absl::Seconds(1));
  EXPECT_EQ(store->CollectGarbage().tasks_removed, 2u);
  EXPECT_EQ(store->Stats().tasks, 0u);
}

TEST_F(PieceStoreTest, ListGivesEveryTaskWithoutCountingAsAUse) {
  const std::string content = PseudoRandomBytes(kPiece);
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  EXPECT_TRUE(store->List().empty());
  for (char c : {'a', 'b'}) {
    ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id(c), content)));
    WriteAll(*task, content);
  }
  clock_.Advance(absl::Hours(5));
  std::vector<std::string> ids;
  for (const auto& task : store->List()) ids.push_back(task->meta().task_id);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{Id('a'), Id('b')}));
  clock_.Advance(absl::Hours(2));  // 7 h after the last use: List() did not count
  EXPECT_EQ(store->CollectGarbage().tasks_removed, 2u);
  EXPECT_TRUE(store->List().empty());
}

TEST_F(PieceStoreTest, LastAccessSurvivesRestart) {
  const std::string content = PseudoRandomBytes(kPiece);
  {
    ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
    ASSERT_OK_AND_ASSIGN(auto a, store->CreateOrOpen(Meta(Id('a'), content)));
    WriteAll(*a, content);
    clock_.Advance(absl::Hours(5));
    std::string out(10, '\0');
    ASSERT_OK(a->ReadRange(0, out));
  }                                // closing the store writes the access time
  clock_.Advance(absl::Hours(2));  // 7 h after creation, 2 h after the read
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options()));
  EXPECT_EQ(store->CollectGarbage().tasks_removed, 0u);
  clock_.Advance(absl::Hours(5));
  EXPECT_EQ(store->CollectGarbage().tasks_removed, 1u);
}

TEST_F(PieceStoreTest, GcByQuotaEvictsLeastRecentlyUsedAndSkipsInUse) {
  const std::string content = PseudoRandomBytes(2 * kPiece);
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options(/*quota=*/3 * kPiece)));
  for (char c : {'a', 'b', 'c', 'd'}) {
    ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id(c), content)));
    WriteAll(*task, content);
    clock_.Advance(absl::Minutes(1));
  }
  // Only present pieces count: e has one piece of two.
  {
    ASSERT_OK_AND_ASSIGN(auto e, store->CreateOrOpen(Meta(Id('e'), content)));
    ASSERT_OK(e->WritePiece(0, PieceOf(e->meta(), content, 0)));
    clock_.Advance(absl::Minutes(1));
  }
  EXPECT_EQ(store->Stats().bytes, 9 * kPiece);
  // Order of use, oldest first: b, d, e, a (touched), c (held).
  std::string out(10, '\0');
  ASSERT_OK(store->Find(Id('a'))->ReadRange(0, out));
  clock_.Advance(absl::Minutes(1));
  std::shared_ptr<Task> held = store->Find(Id('c'));

  GcResult result = store->CollectGarbage();
  // 9 pieces over a quota of 3: b, d and e go (5 pieces), leaving a and c (4 pieces, still over:
  // a goes too). c is held.
  EXPECT_EQ(result.tasks_removed, 4u);
  EXPECT_EQ(result.bytes_freed, 7 * kPiece);
  EXPECT_EQ(store->Stats().tasks, 1u);
  EXPECT_EQ(store->Stats().bytes, 2 * kPiece);
  EXPECT_NE(store->Find(Id('c')), nullptr);
  for (char c : {'a', 'b', 'd', 'e'}) EXPECT_EQ(store->Find(Id(c)), nullptr) << c;
}

TEST_F(PieceStoreTest, GcByQuotaStopsOnceUnder) {
  const std::string content = PseudoRandomBytes(kPiece);
  ASSERT_OK_AND_ASSIGN(auto store, PieceStore::Open(Options(/*quota=*/2 * kPiece)));
  for (char c : {'a', 'b', 'c', 'd'}) {
    ASSERT_OK_AND_ASSIGN(auto task, store->CreateOrOpen(Meta(Id(c), content)));
    WriteAll(*task, content);
    clock_.Advance(absl::Minutes(1));
  }
  std::string out(10, '\0');
  ASSERT_OK(store->Find(Id('a'))->ReadRange(0, out));  // order: b, c, d, a
  GcResult result = store->CollectGarbage();
  EXPECT_EQ(result.tasks_removed, 2u);
  EXPECT_EQ(result.bytes_freed, 2 * kPiece);
  EXPECT_EQ(store->Find(Id('b')), nullptr);
  EXPECT_EQ(store->Find(Id('c')), nullptr);
  EXPECT_NE(store->Find(Id('d')), nullptr);
  EXPECT_NE(store->Find(Id('a')), nullptr);
  EXPECT_EQ(store->CollectGarbage().tasks_removed, 0u);
}

}  // namespace
}  // namespace naiad::piece
