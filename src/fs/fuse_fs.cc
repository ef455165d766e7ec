#define FUSE_USE_VERSION 312
#include "fs/fuse_fs.h"

#include <fuse_lowlevel.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/file.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::fs {
namespace {

using rafs::DirEntry;
using rafs::Inode;

// The one place a Status becomes an errno for the kernel.
int ToErrno(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 0;
    case absl::StatusCode::kNotFound:
      return ENOENT;
    case absl::StatusCode::kInvalidArgument:
      return EINVAL;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return EACCES;
    case absl::StatusCode::kOutOfRange:
      return ERANGE;
    case absl::StatusCode::kCancelled:
      return EINTR;
    default:
      return EIO;  // DataLoss, Unavailable, DeadlineExceeded, Internal, ...
  }
}

// Decodes the new-style encoded dev_t EROFS stores for device inodes.
dev_t DecodeDev(uint32_t dev) {
  return makedev((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00));
}

// The device number of the filesystem mounted at `path`, from /proc/self/mountinfo (the last
// mount there wins); 0 if none.
dev_t MountDevice(const std::string& path) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  dev_t device = 0;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string id, parent, numbers, root, mount_point;
    fields >> id >> parent >> numbers >> root >> mount_point;
    unsigned major_number = 0, minor_number = 0;
    if (mount_point == path &&
        sscanf(numbers.c_str(), "%u:%u", &major_number, &minor_number) == 2) {
      device = makedev(major_number, minor_number);
    }
  }
  return device;
}

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

// Per open file: its chunk list, computed once at open().
struct OpenFile {
  uint64_t nid;
  uint64_t size;
  std::vector<rafs::ChunkRef> chunks;
};

}  // namespace

// The libfuse callbacks; a struct so that it may be FuseFs's friend.
struct FuseOps {
  static FuseFs& Self(fuse_req_t req) { return *static_cast<FuseFs*>(fuse_req_userdata(req)); }

  static uint64_t ToNid(const FuseFs& fs, fuse_ino_t ino) {
    return ino == FUSE_ROOT_ID ? fs.boot_.root_nid() : ino - 2;
  }
  static fuse_ino_t ToIno(const FuseFs& fs, uint64_t nid) {
    return nid == fs.boot_.root_nid() ? FUSE_ROOT_ID : nid + 2;
  }

  static void ReplyError(fuse_req_t req, const absl::Status& status) {
    int error = ToErrno(status);
    if (error != ENOENT) {
      ++Self(req).metrics_.errors;
      LogDebug("fuse operation failed", {{"error", status}});
    }
    fuse_reply_err(req, error);
  }

  static struct stat ToStat(const FuseFs& fs, const Inode& inode) {
    struct stat st {};
    st.st_ino = ToIno(fs, inode.nid);
    st.st_mode = inode.mode;
    st.st_nlink = inode.nlink;
    st.st_uid = inode.uid;
    st.st_gid = inode.gid;
    st.st_size = static_cast<off_t>(inode.size);
    st.st_blksize = 4096;
    st.st_blocks = static_cast<blkcnt_t>((inode.size + 511) / 512);
    if (S_ISCHR(inode.mode) || S_ISBLK(inode.mode)) st.st_rdev = DecodeDev(inode.rdev);
    st.st_mtim.tv_sec = static_cast<time_t>(inode.mtime);
    st.st_mtim.tv_nsec = inode.mtime_nsec;
    st.st_atim = st.st_mtim;
    st.st_ctim = st.st_mtim;
    return st;
  }

  static absl::StatusOr<fuse_entry_param> Entry(FuseFs& fs, uint64_t nid) {
    ASSIGN_OR_RETURN(Inode inode, fs.boot_.GetInode(nid));
    fuse_entry_param entry{};
    entry.ino = ToIno(fs, nid);
    entry.generation = 1;
    entry.attr = ToStat(fs, inode);
    entry.attr_timeout = Seconds(fs.options_.cache_timeout);
    entry.entry_timeout = entry.attr_timeout;
    return entry;
  }

  static void Init(void* userdata, fuse_conn_info* conn) {
    auto want = [conn](unsigned cap) {
      if (conn->capable & cap) conn->want |= cap;
    };
    want(FUSE_CAP_ASYNC_READ);
    want(FUSE_CAP_READDIRPLUS);
    want(FUSE_CAP_READDIRPLUS_AUTO);
    want(FUSE_CAP_CACHE_SYMLINKS);
    want(FUSE_CAP_PARALLEL_DIROPS);
    want(FUSE_CAP_EXPORT_SUPPORT);
    // The image never changes: keep cached pages even if the kernel sees an mtime it did not
    // expect.
    conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
    conn->max_readahead = 1 << 20;
    conn->max_write = 1 << 20;  // also raises the kernel's request size (max_pages) for reads
    (void)userdata;
  }

  static void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    FuseFs& fs = Self(req);
    ++fs.metrics_.lookups;
    uint64_t parent_nid = ToNid(fs, parent);
    absl::StatusOr<DirEntry> child = fs.boot_.Lookup(parent_nid, name);
    if (absl::IsNotFound(child.status())) {
      fuse_entry_param negative{};  // ino 0: the kernel caches the absence
      negative.entry_timeout = Seconds(fs.options_.cache_timeout);
      fuse_reply_entry(req, &negative);
      return;
    }
    if (!child.ok()) return ReplyError(req, child.status());
    absl::StatusOr<fuse_entry_param> entry = Entry(fs, child->nid);
    if (!entry.ok()) return ReplyError(req, entry.status());
    if (fs.trace_ != nullptr) fs.trace_->NotePath(child->nid, fs.trace_->PathOf(parent_nid), name);
    fuse_reply_entry(req, &*entry);
  }

  static void Forget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }
  static void ForgetMulti(fuse_req_t req, size_t, fuse_forget_data*) { fuse_reply_none(req); }

  static void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    FuseFs& fs = Self(req);
    absl::StatusOr<Inode> inode = fs.boot_.GetInode(ToNid(fs, ino));
    if (!inode.ok()) return ReplyError(req, inode.status());
    struct stat st = ToStat(fs, *inode);
    fuse_reply_attr(req, &st, Seconds(fs.options_.cache_timeout));
  }

  static void ReadLink(fuse_req_t req, fuse_ino_t ino) {
    FuseFs& fs = Self(req);
    absl::StatusOr<std::string> target = fs.boot_.ReadLink(ToNid(fs, ino));
    if (!target.ok()) return ReplyError(req, target.status());
    fuse_reply_readlink(req, target->c_str());
  }

  static void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    FuseFs& fs = Self(req);
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return (void)fuse_reply_err(req, EROFS);
    uint64_t nid = ToNid(fs, ino);
    absl::StatusOr<Inode> inode = fs.boot_.GetInode(nid);
    if (!inode.ok()) return ReplyError(req, inode.status());
    if (!inode->is_regular()) return (void)fuse_reply_err(req, inode->is_dir() ? EISDIR : EINVAL);
    absl::StatusOr<std::vector<rafs::ChunkRef>> chunks = fs.boot_.FileChunks(nid);
    if (!chunks.ok()) return ReplyError(req, chunks.status());
    auto* file = new OpenFile{nid, inode->size, std::move(*chunks)};
    fi->fh = reinterpret_cast<uint64_t>(file);
    fi->keep_cache = 1;
    ++fs.metrics_.opens;
    if (fs.trace_ != nullptr) fs.trace_->RecordOpen(nid);
    if (fuse_reply_open(req, fi) != 0) delete file;  // the open was interrupted
  }

  static void Read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
    FuseFs& fs = Self(req);
    auto* file = reinterpret_cast<OpenFile*>(fi->fh);
    absl::Time start = absl::Now();
    uint64_t offset = static_cast<uint64_t>(off);
    size_t length = offset >= file->size ? 0 : std::min<uint64_t>(size, file->size - offset);
    thread_local std::vector<char> buffer;
    if (buffer.size() < length) buffer.resize(length);
    absl::Status status =
        fs.store_->Read(file->chunks, offset, std::span<char>(buffer.data(), length));
    ++fs.metrics_.reads;
    if (!status.ok()) {
      ++fs.metrics_.read_errors;
      LogWarn("read failed", {{"nid", file->nid}, {"offset", offset}, {"error", status}});
      return ReplyError(req, status);
    }
    fs.metrics_.read_bytes += length;
    if (fs.trace_ != nullptr) fs.trace_->RecordRead(file->nid, length);
    uint64_t micros = static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - start));
    for (size_t i = 0; i < kLatencyBucketsUs.size(); ++i) {
      if (micros <= kLatencyBucketsUs[i]) {
        ++fs.metrics_.read_latency[i];
        break;
      }
    }
    fuse_reply_buf(req, buffer.data(), length);
  }

  static void Release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    delete reinterpret_cast<OpenFile*>(fi->fh);
    fuse_reply_err(req, 0);
  }

  static void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    FuseFs& fs = Self(req);
    absl::StatusOr<std::vector<DirEntry>> entries = fs.boot_.ReadDir(ToNid(fs, ino));
    if (!entries.ok()) return ReplyError(req, entries.status());
    auto* dir = new std::vector<DirEntry>(std::move(*entries));
    fi->fh = reinterpret_cast<uint64_t>(dir);
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    if (fuse_reply_open(req, fi) != 0) delete dir;
  }

  static void ReadDirCommon(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                            fuse_file_info* fi, bool plus) {
    FuseFs& fs = Self(req);
    const auto& entries = *reinterpret_cast<std::vector<DirEntry>*>(fi->fh);
    std::string buffer(size, '\0');
    size_t used = 0;
    // Entries listed with attributes count as looked up: remember their paths for the trace.
    const std::string dir_path =
        plus && fs.trace_ != nullptr ? fs.trace_->PathOf(ToNid(fs, ino)) : "";
    for (size_t i = static_cast<size_t>(off); i < entries.size(); ++i) {
      const DirEntry& entry = entries[i];
      size_t added;
      char* at = buffer.data() + used;
      off_t next = static_cast<off_t>(i + 1);
      if (plus) {
        absl::StatusOr<fuse_entry_param> param = Entry(fs, entry.nid);
        if (!param.ok()) return ReplyError(req, param.status());
        added = fuse_add_direntry_plus(req, at, size - used, entry.name.c_str(), &*param, next);
        bool dots = entry.name == "." || entry.name == "..";
        if (added <= size - used && !dots && fs.trace_ != nullptr) {
          fs.trace_->NotePath(entry.nid, dir_path, entry.name);
        }
      } else {
        struct stat st {};
        st.st_ino = ToIno(fs, entry.nid);
        st.st_mode = static_cast<mode_t>(rafs::FileTypeToMode(entry.type));
        added = fuse_add_direntry(req, at, size - used, entry.name.c_str(), &st, next);
      }
      if (added > size - used) break;
      used += added;
    }
    fuse_reply_buf(req, buffer.data(), used);
  }

  static void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    ReadDirCommon(req, ino, size, off, fi, false);
  }
  static void ReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                          fuse_file_info* fi) {
    ReadDirCommon(req, ino, size, off, fi, true);
  }

  static void ReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    delete reinterpret_cast<std::vector<DirEntry>*>(fi->fh);
    fuse_reply_err(req, 0);
  }

  static void StatFs(fuse_req_t req, fuse_ino_t) {
    FuseFs& fs = Self(req);
    struct statvfs st {};
    st.f_bsize = 4096;
    st.f_frsize = 4096;
    st.f_blocks = fs.total_blocks_;
    st.f_files = fs.boot_.superblock().inos;
    st.f_namemax = 255;
    fuse_reply_statfs(req, &st);
  }

  static void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    FuseFs& fs = Self(req);
    if (!fs.options_.enable_xattr) return (void)fuse_reply_err(req, ENOSYS);
    auto xattrs = fs.boot_.Xattrs(ToNid(fs, ino));
    if (!xattrs.ok()) return ReplyError(req, xattrs.status());
    for (const auto& [key, value] : *xattrs) {
      if (key != name) continue;
      if (size == 0) return (void)fuse_reply_xattr(req, value.size());
      if (size < value.size()) return (void)fuse_reply_err(req, ERANGE);
      return (void)fuse_reply_buf(req, value.data(), value.size());
    }
    fuse_reply_err(req, ENODATA);
  }

  static void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
    FuseFs& fs = Self(req);
    if (!fs.options_.enable_xattr) return (void)fuse_reply_err(req, ENOSYS);
    auto xattrs = fs.boot_.Xattrs(ToNid(fs, ino));
    if (!xattrs.ok()) return ReplyError(req, xattrs.status());
    std::string names;
    for (const auto& [key, value] : *xattrs) names.append(key).push_back('\0');
    if (size == 0) return (void)fuse_reply_xattr(req, names.size());
    if (size < names.size()) return (void)fuse_reply_err(req, ERANGE);
    fuse_reply_buf(req, names.data(), names.size());
  }

  static void Access(fuse_req_t req, fuse_ino_t, int mask) {
    fuse_reply_err(req, (mask & W_OK) ? EROFS : 0);
  }

  static fuse_lowlevel_ops Table() {
    fuse_lowlevel_ops ops{};
    ops.init = Init;
    ops.lookup = Lookup;
    ops.forget = Forget;
    ops.forget_multi = ForgetMulti;
    ops.getattr = GetAttr;
    ops.readlink = ReadLink;
    ops.open = Open;
    ops.read = Read;
    ops.release = Release;
    ops.opendir = OpenDir;
    ops.readdir = ReadDir;
    ops.readdirplus = ReadDirPlus;
    ops.releasedir = ReleaseDir;
    ops.statfs = StatFs;
    ops.getxattr = GetXattr;
    ops.listxattr = ListXattr;
    ops.access = Access;
    return ops;
  }
};

absl::StatusOr<std::unique_ptr<FuseFs>> FuseFs::Mount(const rafs::Bootstrap& boot,
                                                      ChunkStore* store, AccessTrace* trace,
                                                      FuseOptions options) {
  std::unique_ptr<FuseFs> fs(new FuseFs(boot, store, trace, std::move(options)));
  for (const rafs::BlobInfo& blob : boot.blobs())
    fs->total_blocks_ += blob.uncompressed_size / 4096;
  if (trace != nullptr) trace->NoteRoot(boot.root_nid());

  std::string mount_options =
      StrCat("ro,default_permissions,allow_other,fsname=", fs->options_.fsname, ",subtype=naiad");
  std::vector<std::string> argv_strings = {"naiad-fs", "-o", mount_options};
  std::vector<char*> argv;
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  static const fuse_lowlevel_ops kOps = FuseOps::Table();
  fs->session_ = fuse_session_new(&args, &kOps, sizeof(kOps), fs.get());
  if (fs->session_ == nullptr) return absl::InternalError("fuse_session_new failed");
  if (fuse_session_mount(fs->session_, fs->options_.mountpoint.c_str()) != 0) {
    fuse_session_destroy(fs->session_);
    fs->session_ = nullptr;
    return absl::UnavailableError(
        StrCat("cannot mount FUSE at ", fs->options_.mountpoint, " (is /dev/fuse usable?)"));
  }
  // Not stat(): that would wait for our own, not yet running, FUSE loop.
  fs->device_ = MountDevice(fs->options_.mountpoint);
  LogInfo("mounted", {{"mountpoint", fs->options_.mountpoint}});
  return fs;
}

absl::Status FuseFs::Run() {
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(config, 1);
  fuse_loop_cfg_set_idle_threads(config, static_cast<unsigned>(std::max(options_.threads, 1)));
  fuse_loop_cfg_set_max_threads(config, static_cast<unsigned>(std::max(options_.threads, 64)));
  int result = fuse_session_loop_mt(session_, config);
  fuse_loop_cfg_destroy(config);
  run_done_.Notify();
  if (result != 0 && !exiting_) {
    return absl::InternalError(StrCat("FUSE session ended with error ", result));
  }
  return absl::OkStatus();
}

void FuseFs::Exit() {
  if (exiting_.exchange(true)) return;
  fuse_session_exit(session_);
  // A lazy unmount ends the session as soon as no one uses the mount; the kernel then answers
  // the workers' reads of /dev/fuse with ENODEV and Run() returns.
  if (umount2(options_.mountpoint.c_str(), MNT_DETACH) != 0) {
    LogWarn("lazy unmount failed", {{"mountpoint", options_.mountpoint}, {"errno", errno}});
  }
  if (run_done_.WaitForNotificationWithTimeout(options_.exit_grace)) return;
  // Still busy: abort the connection (open files then fail with ENOTCONN).
  constexpr char kFuseControl[] = "/sys/fs/fuse/connections";
  std::string abort_file = StrCat(kFuseControl, "/", minor(device_), "/abort");
  LogWarn("mount still busy, aborting the FUSE connection", {{"file", abort_file}});
  absl::StatusOr<UniqueFd> fd = UniqueFd::Open(abort_file, O_WRONLY);
  if (absl::IsNotFound(fd.status())) {
    // The FUSE control filesystem is not always mounted (containers, minimal systems).
    mount("fusectl", kFuseControl, "fusectl", 0, nullptr);
    fd = UniqueFd::Open(abort_file, O_WRONLY);
  }
  if (!fd.ok()) {
    LogWarn("cannot abort the FUSE connection", {{"error", fd.status()}});
    return;
  }
  WriteFull(fd->get(), "1").IgnoreError();
}

FuseFs::~FuseFs() {
  if (session_ == nullptr) return;
  if (!exiting_) umount2(options_.mountpoint.c_str(), MNT_DETACH);
  fuse_session_unmount(session_);
  fuse_session_destroy(session_);
}

}  // namespace naiad::fs
