#include "base/fault_injection.h"

#include <string>
#include <vector>

#include "base/file.h"
#include "base/status_matchers.h"

namespace naiad {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class FaultInjectionTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("naiad-fault-")); }
  std::string Path(std::string_view name) const { return dir_.Join(name); }
  // The content on disk, bypassing the fault-injecting filesystem.
  absl::StatusOr<std::string> OnDisk(std::string_view name) const {
    return FileSystem::Default()->ReadFile(Path(name));
  }
  absl::Status AppendAndMaybeSync(std::string_view name, std::string_view data, bool sync) {
    ASSIGN_OR_RETURN(auto file, fs_.OpenForAppend(Path(name), /*truncate=*/false));
    RETURN_IF_ERROR(file->Append(data));
    if (sync) RETURN_IF_ERROR(file->Sync());
    return file->Close();
  }

  TempDir dir_;
  FaultInjectingFileSystem fs_{FileSystem::Default()};
};

TEST_F(FaultInjectionTest, PassesCallsThroughWithoutFaults) {
  ASSERT_OK(fs_.CreateDirectories(Path("d")));
  ASSERT_OK(fs_.WriteFileAtomically(Path("d/f"), "data"));
  EXPECT_THAT(fs_.ReadFile(Path("d/f")), IsOkAndHolds("data"));
  EXPECT_THAT(fs_.ListDirectory(Path("d")), IsOkAndHolds(ElementsAre("f")));
  EXPECT_THAT(fs_.FileSize(Path("d/f")), IsOkAndHolds(4u));
  EXPECT_EQ(fs_.calls(FsOp::kRename), 1);
  EXPECT_EQ(fs_.calls(FsOp::kSyncDirectory), 1);
  EXPECT_EQ(fs_.calls(FsOp::kTruncate), 0);
}

TEST_F(FaultInjectionTest, FailsOnlyTheNthMatchingCall) {
  fs_.AddFault({.op = FsOp::kSync, .path = "blob", .nth = 2, .status = absl::DataLossError("x")});
  ASSERT_OK_AND_ASSIGN(auto blob, fs_.OpenForReadWrite(Path("blob-1"), /*create=*/true));
  ASSERT_OK_AND_ASSIGN(auto other, fs_.OpenForReadWrite(Path("other"), /*create=*/true));
  EXPECT_OK(blob->Sync());
  EXPECT_OK(other->Sync());  // does not match, not counted
  EXPECT_THAT(blob->Sync(), StatusIs(absl::StatusCode::kDataLoss, Eq("x")));
  EXPECT_OK(blob->Sync());
  EXPECT_EQ(fs_.calls(FsOp::kSync), 4);
}

TEST_F(FaultInjectionTest, FailsEveryMatchingCallUntilRemoved) {
  int id = fs_.AddFault({.op = FsOp::kOpen, .path = "secret"});
  EXPECT_THAT(fs_.OpenForAppend(Path("secret"), false),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("injected fault")));
  EXPECT_THAT(fs_.OpenForRead(Path("secret")), StatusIs(absl::StatusCode::kInternal, _));
  EXPECT_OK(fs_.OpenForAppend(Path("public"), false));
  fs_.RemoveFault(id);
  EXPECT_OK(fs_.OpenForAppend(Path("secret"), false));
  fs_.AddFault({.op = FsOp::kOpen});  // "" matches every path
  EXPECT_THAT(fs_.OpenForAppend(Path("public"), false), StatusIs(absl::StatusCode::kInternal, _));
  fs_.ClearFaults();
  EXPECT_OK(fs_.OpenForAppend(Path("public"), false));
}

TEST_F(FaultInjectionTest, EveryOperationCanFail) {
  ASSERT_OK(fs_.WriteFileAtomically(Path("f"), "data"));
  const absl::Status error = absl::UnavailableError("boom");
  for (FsOp op : {FsOp::kRename, FsOp::kRemove, FsOp::kCreateDirectories, FsOp::kList, FsOp::kStat,
                  FsOp::kSyncDirectory}) {
    fs_.AddFault({.op = op, .status = error});
  }
  EXPECT_EQ(fs_.Rename(Path("f"), Path("g")), error);
  EXPECT_EQ(fs_.Remove(Path("f")), error);
  EXPECT_EQ(fs_.RemoveAll(Path("f")), error);
  EXPECT_EQ(fs_.CreateDirectories(Path("d")), error);
  EXPECT_EQ(fs_.ListDirectory(dir_.path()).status(), error);
  EXPECT_EQ(fs_.FileSize(Path("f")).status(), error);
  EXPECT_EQ(fs_.Exists(Path("f")).status(), error);
  EXPECT_EQ(fs_.SyncDirectory(dir_.path()), error);
  EXPECT_THAT(OnDisk("f"), IsOkAndHolds("data"));  // nothing happened

  fs_.ClearFaults();
  for (FsOp op : {FsOp::kRead, FsOp::kWrite, FsOp::kTruncate, FsOp::kClose}) {
    fs_.AddFault({.op = op, .status = error});
  }
  ASSERT_OK_AND_ASSIGN(auto rw, fs_.OpenForReadWrite(Path("f"), false));
  std::string buf(4, '\0');
  EXPECT_EQ(rw->ReadAt(0, buf).status(), error);
  EXPECT_EQ(rw->WriteAt(0, "x"), error);
  EXPECT_EQ(rw->Truncate(0), error);
  ASSERT_OK_AND_ASSIGN(auto append, fs_.OpenForAppend(Path("f"), false));
  EXPECT_EQ(append->Append("x"), error);
  EXPECT_EQ(append->Close(), error);
  ASSERT_OK_AND_ASSIGN(auto reader, fs_.OpenForRead(Path("f")));
  EXPECT_EQ(reader->ReadAt(0, buf).status(), error);
  EXPECT_THAT(OnDisk("f"), IsOkAndHolds("data"));
}

TEST_F(FaultInjectionTest, RenameFaultMatchesEitherPath) {
  ASSERT_OK(fs_.WriteFileAtomically(Path("a"), "1"));
  fs_.AddFault({.op = FsOp::kRename, .path = "target"});
  EXPECT_THAT(fs_.Rename(Path("a"), Path("target")), StatusIs(absl::StatusCode::kInternal, _));
  EXPECT_OK(fs_.Rename(Path("a"), Path("b")));
}

TEST_F(FaultInjectionTest, TornWritesPersistAPrefix) {
  fs_.AddFault({.op = FsOp::kWrite,
                .path = "torn",
                .nth = 1,
                .status = absl::DataLossError("torn"),
                .torn_write = 3});
  ASSERT_OK_AND_ASSIGN(auto file, fs_.OpenForReadWrite(Path("torn"), true));
  EXPECT_THAT(file->WriteAt(0, "abcdef"), StatusIs(absl::StatusCode::kDataLoss, _));
  EXPECT_THAT(OnDisk("torn"), IsOkAndHolds("abc"));

  // With an OK status the short write is silent, as with a disk that lies.
  fs_.AddFault({.op = FsOp::kWrite, .path = "short", .status = absl::OkStatus(), .torn_write = 2});
  ASSERT_OK_AND_ASSIGN(auto log, fs_.OpenForAppend(Path("short"), false));
  EXPECT_OK(log->Append("12345"));
  EXPECT_OK(log->Append("67"));
  EXPECT_THAT(OnDisk("short"), IsOkAndHolds("1267"));
}

TEST_F(FaultInjectionTest, FailedWriteFileAtomicallyKeepsTheOldFile) {
  ASSERT_OK(fs_.WriteFileAtomically(Path("state"), "old"));
  for (FsOp op : {FsOp::kOpen, FsOp::kWrite, FsOp::kSync, FsOp::kClose, FsOp::kRename}) {
    fs_.ClearFaults();
    fs_.AddFault({.op = op, .status = absl::DataLossError("injected")});
    EXPECT_THAT(fs_.WriteFileAtomically(Path("state"), "new"),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr("writing " + Path("state"))))
        << static_cast<int>(op);
    EXPECT_THAT(OnDisk("state"), IsOkAndHolds("old"));
    EXPECT_THAT(fs_.ListDirectory(dir_.path()), IsOkAndHolds(ElementsAre("state")));
  }
}

TEST_F(FaultInjectionTest, CrashDropsUnsyncedAppends) {
  ASSERT_OK(AppendAndMaybeSync("log", "synced,", /*sync=*/true));
  ASSERT_OK(AppendAndMaybeSync("log", "lost", /*sync=*/false));
  ASSERT_OK(AppendAndMaybeSync("never-synced", "gone", /*sync=*/false));
  EXPECT_THAT(fs_.UnsyncedFiles(), ElementsAre(Path("log"), Path("never-synced")));
  ASSERT_OK(fs_.DropUnsyncedData());
  EXPECT_THAT(OnDisk("log"), IsOkAndHolds("synced,"));
  EXPECT_THAT(fs_.Exists(Path("never-synced")), IsOkAndHolds(false));
  EXPECT_THAT(fs_.UnsyncedFiles(), IsEmpty());
}

TEST_F(FaultInjectionTest, CrashRestoresOverwrittenAndTruncatedFiles) {
  ASSERT_OK(FileSystem::Default()->WriteFileAtomically(Path("pre"), "preexisting"));
  ASSERT_OK_AND_ASSIGN(auto file, fs_.OpenForReadWrite(Path("piece"), true));
  ASSERT_OK(file->WriteAt(0, "AAAABBBB"));
  ASSERT_OK(file->Sync());
  ASSERT_OK(file->WriteAt(2, "xx"));
  ASSERT_OK(file->WriteAt(20, "tail"));
  ASSERT_OK_AND_ASSIGN(auto pre, fs_.OpenForReadWrite(Path("pre"), false));
  ASSERT_OK(pre->Truncate(3));
  ASSERT_OK_AND_ASSIGN(auto log, fs_.OpenForAppend(Path("pre2"), true));
  ASSERT_OK(fs_.DropUnsyncedData());
  EXPECT_THAT(OnDisk("piece"), IsOkAndHolds("AAAABBBB"));
  EXPECT_THAT(OnDisk("pre"), IsOkAndHolds("preexisting"));  // unsynced truncation undone
  EXPECT_THAT(fs_.Exists(Path("pre2")), IsOkAndHolds(false));
}

TEST_F(FaultInjectionTest, FileObjectsFromBeforeACrashAreStale) {
  ASSERT_OK_AND_ASSIGN(auto file, fs_.OpenForReadWrite(Path("f"), true));
  ASSERT_OK(file->WriteAt(0, "x"));
  ASSERT_OK(file->Sync());
  ASSERT_OK(fs_.DropUnsyncedData());
  EXPECT_THAT(file->WriteAt(0, "y"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("simulated crash")));
  std::string buf(1, '\0');
  EXPECT_THAT(file->ReadAt(0, buf), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  ASSERT_OK_AND_ASSIGN(auto reopened, fs_.OpenForReadWrite(Path("f"), false));
  EXPECT_THAT(reopened->ReadAt(0, buf), IsOkAndHolds(1u));
  EXPECT_EQ(buf, "x");
}

TEST_F(FaultInjectionTest, FailedSyncLeavesDataUnsynced) {
  fs_.AddFault({.op = FsOp::kSync, .path = "f", .nth = 1});
  ASSERT_OK_AND_ASSIGN(auto file, fs_.OpenForAppend(Path("f"), true));
  ASSERT_OK(file->Append("data"));
  EXPECT_THAT(file->Sync(), StatusIs(absl::StatusCode::kInternal, _));
  EXPECT_THAT(fs_.UnsyncedFiles(), ElementsAre(Path("f")));
  ASSERT_OK(fs_.DropUnsyncedData());
  EXPECT_THAT(fs_.Exists(Path("f")), IsOkAndHolds(false));
}

TEST_F(FaultInjectionTest, WriteFileAtomicallySurvivesACrash) {
  ASSERT_OK(fs_.WriteFileAtomically(Path("state"), "v1"));
  EXPECT_THAT(fs_.UnsyncedFiles(), IsEmpty());
  ASSERT_OK(fs_.DropUnsyncedData());
  EXPECT_THAT(OnDisk("state"), IsOkAndHolds("v1"));
}

TEST_F(FaultInjectionTest, RenameCarriesUnsyncedStateToTheNewPath) {
  ASSERT_OK(FileSystem::Default()->WriteFileAtomically(Path("target"), "old"));
  ASSERT_OK(AppendAndMaybeSync("temp", "unsynced", /*sync=*/false));
  ASSERT_OK(fs_.Rename(Path("temp"), Path("target")));
  EXPECT_THAT(fs_.UnsyncedFiles(), ElementsAre(Path("target")));
  ASSERT_OK(fs_.DropUnsyncedData());
  // The renamed file never had durable data: the crash leaves no file at all.
  EXPECT_THAT(fs_.Exists(Path("target")), IsOkAndHolds(false));
}

TEST_F(FaultInjectionTest, RemovedFilesAreForgotten) {
  ASSERT_OK(fs_.CreateDirectories(Path("dir")));
  ASSERT_OK(AppendAndMaybeSync("a", "x", /*sync=*/false));
  ASSERT_OK(AppendAndMaybeSync("dir/b", "y", /*sync=*/false));
  ASSERT_OK(fs_.Remove(Path("a")));
  ASSERT_OK(fs_.RemoveAll(Path("dir")));
  EXPECT_THAT(fs_.UnsyncedFiles(), IsEmpty());
  ASSERT_OK(fs_.DropUnsyncedData());
}

}  // namespace
}  // namespace naiad
