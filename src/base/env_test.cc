#include "base/env.h"

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "base/file.h"
#include "base/status_matchers.h"

namespace naiad {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::_;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(RealClock, TracksWallTimeAndSleeps) {
  Clock* clock = Clock::Real();
  EXPECT_EQ(clock, Clock::Real());
  absl::Time before = clock->Now();
  EXPECT_LT(absl::AbsDuration(before - absl::Now()), absl::Seconds(1));
  clock->SleepFor(absl::Milliseconds(20));
  EXPECT_GE(clock->Now() - before, absl::Milliseconds(20));
  absl::Time start = absl::Now();
  clock->SleepFor(-absl::Seconds(5));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

class PosixFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("naiad-env-")); }
  std::string Path(std::string_view name) const { return dir_.Join(name); }

  FileSystem* fs_ = FileSystem::Default();
  TempDir dir_;
};

TEST_F(PosixFileSystemTest, RandomRwFileReadsWritesTruncates) {
  ASSERT_OK_AND_ASSIGN(auto file, fs_->OpenForReadWrite(Path("rw"), /*create=*/true));
  ASSERT_OK(file->WriteAt(0, "hello"));
  ASSERT_OK(file->WriteAt(10, "world"));
  EXPECT_THAT(file->Size(), IsOkAndHolds(15u));
  std::string buf(8, '?');
  EXPECT_THAT(file->ReadAt(8, buf), IsOkAndHolds(7u));  // short only at the end of the file
  EXPECT_EQ(buf.substr(0, 7), std::string("\0\0world", 7));
  EXPECT_THAT(file->ReadAt(100, buf), IsOkAndHolds(0u));
  ASSERT_OK(file->Sync());
  ASSERT_OK(file->Truncate(3));
  EXPECT_THAT(file->Size(), IsOkAndHolds(3u));
  EXPECT_THAT(fs_->ReadFile(Path("rw")), IsOkAndHolds("hel"));
}

TEST_F(PosixFileSystemTest, OpenWithoutCreateNeedsAnExistingFile) {
  EXPECT_THAT(fs_->OpenForReadWrite(Path("missing"), /*create=*/false),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(Path("missing"))));
  EXPECT_THAT(
      fs_->OpenForRead(Path("missing")),
      StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr("open "), HasSubstr(Path("missing")))));
}

TEST_F(PosixFileSystemTest, WritableFileAppendsAndClosesOnce) {
  {
    ASSERT_OK_AND_ASSIGN(auto file, fs_->OpenForAppend(Path("log"), /*truncate=*/false));
    ASSERT_OK(file->Append("one,"));
    ASSERT_OK(file->Append("two,"));
    ASSERT_OK(file->Sync());
    ASSERT_OK(file->Close());
    EXPECT_THAT(file->Append("x"), StatusIs(absl::StatusCode::kFailedPrecondition, _));
    EXPECT_THAT(file->Close(), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  }
  {
    ASSERT_OK_AND_ASSIGN(auto file, fs_->OpenForAppend(Path("log"), /*truncate=*/false));
    ASSERT_OK(file->Append("three"));
  }  // closed by the destructor
  EXPECT_THAT(fs_->ReadFile(Path("log")), IsOkAndHolds("one,two,three"));
  {
    ASSERT_OK_AND_ASSIGN(auto file, fs_->OpenForAppend(Path("log"), /*truncate=*/true));
    ASSERT_OK(file->Append("new"));
  }
  EXPECT_THAT(fs_->ReadFile(Path("log")), IsOkAndHolds("new"));
}

TEST_F(PosixFileSystemTest, RandomAccessFileReadsAndSizes) {
  ASSERT_OK(WriteFileAtomically(Path("r"), "0123456789"));
  ASSERT_OK_AND_ASSIGN(auto file, fs_->OpenForRead(Path("r")));
  EXPECT_THAT(file->Size(), IsOkAndHolds(10u));
  std::string buf(4, '\0');
  EXPECT_THAT(file->ReadAt(3, buf), IsOkAndHolds(4u));
  EXPECT_EQ(buf, "3456");
}

TEST_F(PosixFileSystemTest, DirectoryOperations) {
  ASSERT_OK(fs_->CreateDirectories(Path("a/b/c")));
  ASSERT_OK(fs_->CreateDirectories(Path("a/b/c")));  // already there
  ASSERT_OK(fs_->WriteFileAtomically(Path("a/z"), "z"));
  ASSERT_OK(fs_->WriteFileAtomically(Path("a/m"), "mm"));
  EXPECT_THAT(fs_->ListDirectory(Path("a")), IsOkAndHolds(ElementsAre("b", "m", "z")));
  EXPECT_THAT(fs_->ListDirectory(Path("nope")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(Path("nope"))));
  EXPECT_THAT(fs_->FileSize(Path("a/m")), IsOkAndHolds(2u));
  EXPECT_THAT(fs_->FileSize(Path("a/q")), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(fs_->Exists(Path("a/m")), IsOkAndHolds(true));
  EXPECT_THAT(fs_->Exists(Path("a/q")), IsOkAndHolds(false));
  EXPECT_THAT(fs_->Exists(Path("a/m/under-a-file")), IsOkAndHolds(false));
  ASSERT_OK(fs_->SyncDirectory(Path("a")));
  EXPECT_THAT(fs_->SyncDirectory(Path("nope")), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(PosixFileSystemTest, RenameAndRemove) {
  ASSERT_OK(fs_->WriteFileAtomically(Path("from"), "data"));
  ASSERT_OK(fs_->Rename(Path("from"), Path("to")));
  EXPECT_THAT(fs_->ReadFile(Path("to")), IsOkAndHolds("data"));
  EXPECT_THAT(
      fs_->Rename(Path("from"), Path("to")),
      StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr(Path("from")), HasSubstr(Path("to")))));
  ASSERT_OK(fs_->Remove(Path("to")));
  EXPECT_THAT(fs_->Remove(Path("to")), StatusIs(absl::StatusCode::kNotFound, HasSubstr("to")));
  ASSERT_OK(fs_->CreateDirectories(Path("d/e")));
  ASSERT_OK(fs_->WriteFileAtomically(Path("d/e/f"), "x"));
  ASSERT_OK(fs_->RemoveAll(Path("d")));
  ASSERT_OK(fs_->RemoveAll(Path("d")));  // missing is fine
  EXPECT_THAT(fs_->Exists(Path("d")), IsOkAndHolds(false));
}

TEST_F(PosixFileSystemTest, ReadFileHandlesEmptyAndLargeFiles) {
  ASSERT_OK(fs_->WriteFileAtomically(Path("empty"), ""));
  EXPECT_THAT(fs_->ReadFile(Path("empty")), IsOkAndHolds(""));
  std::string big(300000, 'b');
  big[123456] = 'c';
  ASSERT_OK(fs_->WriteFileAtomically(Path("big"), big));
  EXPECT_THAT(fs_->ReadFile(Path("big")), IsOkAndHolds(big));
}

TEST_F(PosixFileSystemTest, WriteFileAtomicallyReplacesAndLeavesNoTempFiles) {
  ASSERT_OK(fs_->WriteFileAtomically(Path("state"), "one"));
  ASSERT_OK(fs_->WriteFileAtomically(Path("state"), "two, longer"));
  EXPECT_THAT(fs_->ReadFile(Path("state")), IsOkAndHolds("two, longer"));
  EXPECT_THAT(fs_->ListDirectory(dir_.path()), IsOkAndHolds(ElementsAre("state")));
  EXPECT_THAT(fs_->WriteFileAtomically(Path("missing/x"), "data"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("writing " + Path("missing/x"))));
}

}  // namespace
}  // namespace naiad
