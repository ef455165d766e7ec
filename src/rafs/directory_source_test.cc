#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/test_files.h"
#include "gtest/gtest.h"
#include "rafs/entry_source.h"

namespace naiad::rafs {
namespace {

using ::naiad::testing::PseudoRandomBytes;
using ::naiad::testing::WriteTestFile;

class DirectorySourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/naiad-dirsource-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // Every entry with its content, read in pieces of `piece` bytes (what the builder reads is a
  // chunk; odd sizes check that a read never skips or repeats a byte).
  absl::StatusOr<std::map<std::string, std::string>> ReadAll(DirectorySource& source,
                                                             size_t piece) {
    std::map<std::string, std::string> seen;
    std::vector<char> buf(piece);
    while (true) {
      ASSIGN_OR_RETURN(std::optional<SourceEntry> entry, source.Next());
      if (!entry) return seen;
      order_.push_back(entry->path);
      std::string content;
      if (S_ISREG(entry->mode) && entry->hardlink_to.empty()) {
        while (true) {
          ASSIGN_OR_RETURN(size_t n, source.Read(buf.data(), buf.size()));
          if (n == 0) break;
          content.append(buf.data(), n);
        }
        if (content.size() != entry->size) return absl::InternalError(entry->path);
      } else if (!entry->hardlink_to.empty()) {
        content = "link to " + entry->hardlink_to;
      }
      seen[entry->path] = content;
    }
  }

  static int OpenDescriptors() {
    int count = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
    return count;
  }

  std::string root_;
  std::vector<std::string> order_;
};

// Around the sizes where the walker switches from reading a file whole to leaving it to the
// caller, and more content than the read-ahead holds, so the walker must wait for room.
TEST_F(DirectorySourceTest, EveryEntryAndByteArriveInOrderWhateverTheFileSizes) {
  constexpr size_t kWhole = DirectorySource::kWholeFileBytes;
  std::map<std::string, std::string> want;
  auto add = [&](const std::string& path, size_t size, uint64_t seed) {
    std::string data = PseudoRandomBytes(size, seed);
    ASSERT_OK(WriteTestFile(root_ + "/" + path, data));
    want[path] = data;
  };
  ASSERT_EQ(::mkdir((root_ + "/d").c_str(), 0755), 0);
  add("a-empty", 0, 1);
  add("b-one", 1, 2);
  add("c-whole", kWhole, 3);
  add("d-over", kWhole + 1, 4);
  add("e-big", 3 * kWhole + 12345, 5);
  size_t many = 2 * DirectorySource::kReadAheadBytes / (kWhole / 2);
  for (size_t i = 0; i < many; ++i) add(StrCat("d/f", 1000 + i), kWhole / 2 + i, 100 + i);
  ASSERT_EQ(::symlink("c-whole", (root_ + "/s").c_str()), 0);
  ASSERT_EQ(::link((root_ + "/b-one").c_str(), (root_ + "/h").c_str()), 0);
  want["h"] = "link to b-one";
  want["s"] = "";
  want["d"] = "";
  want[""] = "";

  for (size_t piece : {size_t{4096}, size_t{1000003}}) {
    SCOPED_TRACE(piece);
    order_.clear();
    ASSERT_OK_AND_ASSIGN(auto source, DirectorySource::Create(root_));
    ASSERT_OK_AND_ASSIGN(auto seen, ReadAll(*source, piece));
    std::vector<std::string> order = {"", "a-empty", "b-one", "c-whole", "d"};  // depth first
    for (size_t i = 0; i < many; ++i) order.push_back(StrCat("d/f", 1000 + i));
    order.insert(order.end(), {"d-over", "e-big", "h", "s"});
    EXPECT_EQ(order_, order);
    EXPECT_EQ(seen.size(), want.size());
    for (const auto& [path, data] : want) {
      ASSERT_TRUE(seen.count(path)) << path;
      EXPECT_TRUE(seen[path] == data) << path << ": " << seen[path].size() << " bytes";
    }
  }
}

// A thousand small files: many wake-ups' worth of batches, and a caller that never waits.
TEST_F(DirectorySourceTest, ManySmallFiles) {
  std::map<std::string, std::string> want;
  for (int i = 0; i < 1000; ++i) {
    std::string path = StrCat("f", 10000 + i);
    std::string data = PseudoRandomBytes(i % 7 == 0 ? 0 : 1 + i * 3, i);
    ASSERT_OK(WriteTestFile(root_ + "/" + path, data));
    want[path] = data;
  }
  want[""] = "";
  ASSERT_OK_AND_ASSIGN(auto source, DirectorySource::Create(root_));
  ASSERT_OK_AND_ASSIGN(auto seen, ReadAll(*source, 65536));
  EXPECT_TRUE(seen == want);
  ASSERT_OK_AND_ASSIGN(std::optional<SourceEntry> after_end, source->Next());
  EXPECT_FALSE(after_end.has_value());
}

// Dropped half way (a failed build): no hang, and no descriptor of a queued file left open.
TEST_F(DirectorySourceTest, DroppedMidWalkWithoutHangOrOpenFiles) {
  for (int i = 0; i < 40; ++i) {
    ASSERT_OK(WriteTestFile(StrCat(root_, "/big", i),
                            PseudoRandomBytes(DirectorySource::kWholeFileBytes + 1, i)));
    ASSERT_OK(WriteTestFile(StrCat(root_, "/small", i), "x"));
  }
  int before = OpenDescriptors();
  for (int taken : {0, 1, 5, 30}) {
    ASSERT_OK_AND_ASSIGN(auto source, DirectorySource::Create(root_));
    for (int i = 0; i < taken; ++i) {
      ASSERT_OK_AND_ASSIGN(std::optional<SourceEntry> entry, source->Next());
      ASSERT_TRUE(entry.has_value());
    }
  }
  EXPECT_EQ(OpenDescriptors(), before);
}

TEST_F(DirectorySourceTest, AFileThatIsNotADirectoryIsRejected) {
  ASSERT_OK(WriteTestFile(root_ + "/file", "x"));
  EXPECT_FALSE(DirectorySource::Create(root_ + "/file").ok());
  EXPECT_FALSE(DirectorySource::Create(root_ + "/missing").ok());
}

}  // namespace
}  // namespace naiad::rafs
