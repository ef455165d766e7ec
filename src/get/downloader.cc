#include "get/downloader.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::get {
namespace {

// Streams the body into `fd` while hashing it, reporting progress.
class BodyWriter {
 public:
  BodyWriter(int fd, const DownloadOptions& options, DigestAlgorithm verify_with)
      : fd_(fd),
        options_(options),
        verify_(verify_with == DigestAlgorithm::kSha256 ? nullptr : Hasher::New(verify_with)) {}

  absl::Status OnHeaders(const net::HttpResponse& response) {
    RETURN_IF_ERROR(net::HttpStatusToStatus(response.status, options_.url));
    if (auto length = response.headers.Get("Content-Length")) {
      uint64_t total = 0;
      if (absl::SimpleAtoi(ToAbsl(*length), &total)) progress_.total = total;
    }
    return absl::OkStatus();
  }

  absl::Status OnData(std::string_view data) {
    RETURN_IF_ERROR(WriteFull(fd_, data));
    sha256_.Update(data);
    if (verify_) verify_->Update(data);
    progress_.bytes += data.size();
    absl::Time now = absl::Now();
    if (options_.on_progress && now - last_report_ >= absl::Milliseconds(100)) {
      last_report_ = now;
      Report();
    }
    return absl::OkStatus();
  }

  void Report() {
    progress_.elapsed = absl::Now() - start_;
    if (options_.on_progress) options_.on_progress(progress_);
  }

  uint64_t bytes() const { return progress_.bytes; }
  std::optional<uint64_t> total() const { return progress_.total; }
  // The sha256 of the body, and the digest to verify (the same one unless that is blake3).
  std::pair<Digest, Digest> Finish() {
    Digest sha256 = sha256_.Finish();
    return {sha256, verify_ ? verify_->Finish() : sha256};
  }
  absl::Duration elapsed() const { return absl::Now() - start_; }

 private:
  int fd_;
  const DownloadOptions& options_;
  Sha256 sha256_;
  std::unique_ptr<Hasher> verify_;  // only when verifying a non-sha256 digest
  DownloadProgress progress_;
  absl::Time start_ = absl::Now();
  absl::Time last_report_ = absl::InfinitePast();
};

absl::Status VerifyLength(const BodyWriter& writer, const DownloadOptions& options) {
  std::optional<uint64_t> total = writer.total();
  if (total && *total != writer.bytes()) {
    return absl::DataLossError(
        StrCat(options.url, ": got ", writer.bytes(), " bytes, Content-Length said ", *total));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DownloadResult> Download(net::HttpClient& client, const DownloadOptions& options) {
  std::filesystem::path output(options.output);
  std::string dir = output.parent_path().empty() ? "." : output.parent_path().string();
  std::string temp = StrCat(dir, "/.", output.filename().string(), ".naiad-XXXXXX");
  int raw = ::mkstemp(temp.data());
  if (raw < 0) return ErrnoError(errno, StrCat("create temporary file in ", dir));
  UniqueFd fd(raw);

  DigestAlgorithm algorithm = options.digest ? options.digest->algorithm : DigestAlgorithm::kSha256;
  BodyWriter writer(fd.get(), options, algorithm);
  net::HttpRequest request{.url = options.url, .headers = options.headers};
  request.timeout = options.timeout;
  request.on_headers = [&](const net::HttpResponse& response) {
    return writer.OnHeaders(response);
  };
  request.body_sink = [&](std::string_view data) { return writer.OnData(data); };

  absl::Status status = client.Send(request).status();
  if (status.ok()) status = VerifyLength(writer, options);
  auto [sha256, got_verify] = writer.Finish();
  if (status.ok() && options.digest && got_verify != *options.digest) {
    status =
        absl::DataLossError(StrCat(options.url, ": digest mismatch: want ",
                                   options.digest->ToString(), ", got ", got_verify.ToString()));
  }
  if (status.ok() && ::fsync(fd.get()) != 0) status = ErrnoError(errno, StrCat("fsync ", temp));
  fd.Reset();
  if (status.ok() && ::rename(temp.c_str(), options.output.c_str()) != 0) {
    status = ErrnoError(errno, StrCat("rename to ", options.output));
  }
  if (!status.ok()) {
    ::unlink(temp.c_str());
    return status;
  }
  writer.Report();
  return DownloadResult{writer.bytes(), sha256, writer.elapsed()};
}

}  // namespace naiad::get
