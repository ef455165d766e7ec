#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "base/status_matchers.h"

namespace naiad {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

TEST(TempDir, CreatesAndRemovesRecursively) {
  std::string path;
  {
    ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("naiad-test-"));
    path = dir.path();
    ASSERT_OK(CreateDirectories(dir.Join("a/b/c")));
    ASSERT_OK(WriteFileAtomically(dir.Join("a/b/c/f"), "data"));
    EXPECT_TRUE(std::filesystem::exists(dir.Join("a/b/c/f")));
    TempDir moved = std::move(dir);
    EXPECT_EQ(moved.path(), path);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(WriteFileAtomically, ReplacesContentAndLeavesNoTempFiles) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create());
  std::string path = dir.Join("state");
  ASSERT_OK(WriteFileAtomically(path, "one"));
  ASSERT_OK(WriteFileAtomically(path, "two, longer", 0600));
  EXPECT_THAT(ReadFileToString(path), ::naiad::testing::IsOkAndHolds("two, longer"));
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  int entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    (void)entry;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(WriteFileAtomically, FailureNamesPathAndLeavesNothing) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create());
  EXPECT_THAT(WriteFileAtomically(dir.Join("missing/x"), "data"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing/x")));
}

TEST(ReadFileToString, MissingFileIsNotFoundNamingPath) {
  EXPECT_THAT(ReadFileToString("/nonexistent/naiad"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/naiad")));
}

TEST(UniqueFd, PreadPwriteRoundTripAndShortReadIsOutOfRange) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create());
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, UniqueFd::Open(dir.Join("f"), O_RDWR | O_CREAT));
  ASSERT_OK(PwriteFull(fd.get(), "hello world", 100));
  std::string buf(5, '\0');
  ASSERT_OK(PreadFull(fd.get(), buf, 106));
  EXPECT_EQ(buf, "world");
  EXPECT_THAT(PreadFull(fd.get(), buf, 108),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("end of file")));
  int raw = fd.get();
  UniqueFd other = std::move(fd);
  EXPECT_EQ(other.get(), raw);
  EXPECT_FALSE(fd.valid());  // NOLINT(bugprone-use-after-move): checking the moved-from state
}

TEST(WriteFull, WritesEveryPieceInOrderPastTheVectorLimit) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create());
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, UniqueFd::Open(dir.Join("v"), O_RDWR | O_CREAT));
  // More pieces than one writev takes (IOV_MAX is 1024), empty ones among them, and one big
  // piece that a pipe or a full disk would cut short.
  std::vector<std::string> owned;
  std::string expected;
  for (int i = 0; i < 3000; ++i) {
    owned.push_back(i % 7 == 0 ? "" : std::to_string(i) + ",");
    expected += owned.back();
  }
  owned.push_back(std::string(3 << 20, 'z'));
  expected += owned.back();
  std::vector<std::string_view> pieces(owned.begin(), owned.end());
  ASSERT_OK(WriteFull(fd.get(), pieces));
  EXPECT_THAT(ReadFileToString(dir.Join("v")), IsOkAndHolds(expected));
  EXPECT_THAT(WriteFull(-1, std::span<const std::string_view>(pieces)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("write")));
}

TEST(MappedFile, MapsWholeFile) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create());
  std::string content(1 << 20, 'x');
  content[12345] = 'y';
  ASSERT_OK(WriteFileAtomically(dir.Join("m"), content));
  ASSERT_OK_AND_ASSIGN(MappedFile map, MappedFile::Open(dir.Join("m")));
  EXPECT_EQ(map.size(), content.size());
  EXPECT_EQ(map.data()[12345], 'y');
  ASSERT_OK(WriteFileAtomically(dir.Join("empty"), ""));
  ASSERT_OK_AND_ASSIGN(MappedFile empty, MappedFile::Open(dir.Join("empty")));
  EXPECT_EQ(empty.size(), 0u);
}

}  // namespace
}  // namespace naiad
