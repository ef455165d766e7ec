#include "fs/access_trace.h"

#include <algorithm>

#include "base/strings.h"

namespace naiad::fs {

void AccessTrace::NoteRoot(uint64_t nid) {
  absl::MutexLock lock(&mu_);
  paths_.insert_or_assign(nid, std::string(1, '/'));
}

void AccessTrace::NotePath(uint64_t nid, std::string_view parent_path, std::string_view name) {
  absl::MutexLock lock(&mu_);
  if (paths_.contains(nid)) return;
  bool slash = !parent_path.empty() && parent_path.back() == '/';
  paths_.emplace(nid, StrCat(parent_path, slash ? "" : "/", name));
}

std::string AccessTrace::PathOf(uint64_t nid) const {
  absl::MutexLock lock(&mu_);
  auto it = paths_.find(nid);
  return it == paths_.end() ? std::string() : it->second;
}

FileAccess& AccessTrace::Touch(uint64_t nid) {
  auto [it, inserted] = files_.try_emplace(nid);
  if (inserted) {
    it->second.nid = nid;
    it->second.first_access = absl::Now() - start_;
    it->second.order = files_.size() - 1;
    if (auto path = paths_.find(nid); path != paths_.end()) it->second.path = path->second;
  }
  return it->second;
}

void AccessTrace::RecordOpen(uint64_t nid) {
  absl::MutexLock lock(&mu_);
  ++Touch(nid).opens;
}

void AccessTrace::RecordRead(uint64_t nid, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  FileAccess& file = Touch(nid);
  ++file.reads;
  file.bytes_read += bytes;
}

std::vector<FileAccess> AccessTrace::Files() const {
  std::vector<FileAccess> files;
  {
    absl::MutexLock lock(&mu_);
    files.reserve(files_.size());
    for (const auto& [nid, file] : files_) files.push_back(file);
  }
  std::sort(files.begin(), files.end(),
            [](const FileAccess& a, const FileAccess& b) { return a.order < b.order; });
  return files;
}

std::string AccessTrace::TraceText() const {
  std::string text;
  for (const FileAccess& file : Files()) {
    if (!file.path.empty()) StrAppend(&text, file.path, "\n");
  }
  return text;
}

}  // namespace naiad::fs
