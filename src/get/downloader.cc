#include "get/downloader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <utility>

#include "absl/strings/numbers.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::get {
namespace {

constexpr size_t kMaxExcerpt = 200;

// Streams a successful response's body into `fd` while hashing it, reporting progress; keeps
// the start of an error response's body for the error message instead.
class BodyWriter {
 public:
  BodyWriter(int fd, const DownloadOptions& options, DigestAlgorithm verify_with)
      : fd_(fd),
        options_(options),
        verify_(verify_with == DigestAlgorithm::kSha256 ? nullptr : Hasher::New(verify_with)) {}

  absl::Status OnHeaders(const net::HttpResponse& response) {
    if (!net::HttpStatusToStatus(response.status, "").ok()) {
      error_response_ = response;
      error_response_->body.clear();
      return absl::OkStatus();  // the body is the server's explanation: read (the start of) it
    }
    if (auto length = response.headers.Get("Content-Length")) {
      uint64_t total = 0;
      if (absl::SimpleAtoi(ToAbsl(*length), &total)) progress_.total = total;
    }
    if (options_.on_response) options_.on_response(response);
    return absl::OkStatus();
  }

  absl::Status OnData(std::string_view data) {
    if (error_response_.has_value()) {
      std::string& body = error_response_->body;
      body.append(data.substr(0, kMaxErrorBody - body.size()));
      // Enough to explain the error: stop the transfer (Download reports the HTTP error).
      if (body.size() >= kMaxErrorBody) return absl::CancelledError("error body truncated");
      return absl::OkStatus();
    }
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

  const std::optional<net::HttpResponse>& error_response() const { return error_response_; }
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
  std::optional<net::HttpResponse> error_response_;
  absl::Time start_ = absl::Now();
  absl::Time last_report_ = absl::InfinitePast();
};

// The process's umask, read without changing it: umask(2) reads it only by setting it, which
// would race with other threads creating files.
mode_t CurrentUmask() {
  constexpr std::string_view kField = "\nUmask:";
  absl::StatusOr<std::string> status = ReadFileToString("/proc/self/status");
  size_t at = status.ok() ? status->find(kField) : std::string::npos;
  if (at == std::string::npos) return 022;
  return static_cast<mode_t>(std::strtoul(status->c_str() + at + kField.size(), nullptr, 8));
}

absl::Status VerifyLength(const BodyWriter& writer, const DownloadOptions& options) {
  std::optional<uint64_t> total = writer.total();
  if (total && *total != writer.bytes()) {
    return absl::DataLossError(
        StrCat(options.url, ": got ", writer.bytes(), " bytes, Content-Length said ", *total));
  }
  return absl::OkStatus();
}

absl::Status DefaultHttpError(const DownloadOptions& options, const net::HttpResponse& response) {
  absl::Status status = net::HttpStatusToStatus(response.status, options.url);
  std::string excerpt = ErrorBodyExcerpt(response.body);
  if (excerpt.empty()) return status;
  return absl::Status(status.code(), StrCat(status.message(), ": ", excerpt));
}

// A transfer that failed (not an HTTP error): the message names the content's URL and the way
// it came, which the client's message may not (it names the request's URL).
absl::Status DescribeTransferError(const absl::Status& status, const net::HttpRequest& request,
                                   const DownloadOptions& options) {
  std::string what = options.url;
  if (!options.via.empty()) what = StrCat(what, " via ", options.via);
  if (absl::IsDeadlineExceeded(status) && request.timeout > absl::ZeroDuration()) {
    return absl::DeadlineExceededError(StrCat(what, ": timed out after ",
                                              absl::FormatDuration(request.timeout), " (",
                                              status.message(), ")"));
  }
  if (request.url == options.url && options.via.empty()) return status;
  return absl::Status(status.code(), StrCat(what, ": ", status.message()));
}

}  // namespace

std::string ErrorBodyExcerpt(std::string_view body) {
  std::string out;
  bool space = false;
  for (char c : body) {
    if (std::isspace(static_cast<unsigned char>(c)) != 0 ||
        std::iscntrl(static_cast<unsigned char>(c)) != 0) {
      space = !out.empty();
      continue;
    }
    if (out.size() >= kMaxExcerpt) {
      out += "...";
      return out;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

absl::StatusOr<DownloadResult> Download(net::HttpClient& client, const DownloadOptions& options) {
  return Download(client, net::HttpRequest{.url = options.url, .headers = options.headers},
                  options);
}

absl::StatusOr<DownloadResult> Download(net::HttpClient& client, net::HttpRequest request,
                                        const DownloadOptions& options) {
  std::filesystem::path output(options.output);
  std::string dir = output.parent_path().empty() ? "." : output.parent_path().string();
  std::string temp = StrCat(dir, "/.", output.filename().string(), ".naiad-XXXXXX");
  int raw = ::mkstemp(temp.data());
  if (raw < 0) return ErrnoError(errno, StrCat("create temporary file in ", dir));
  UniqueFd fd(raw);

  DigestAlgorithm algorithm = options.digest ? options.digest->algorithm : DigestAlgorithm::kSha256;
  BodyWriter writer(fd.get(), options, algorithm);
  if (request.timeout == absl::ZeroDuration()) request.timeout = options.timeout;
  request.on_headers = [&](const net::HttpResponse& response) {
    return writer.OnHeaders(response);
  };
  request.body_sink = [&](std::string_view data) { return writer.OnData(data); };

  absl::Status status = client.Send(request).status();
  if (const std::optional<net::HttpResponse>& error = writer.error_response()) {
    status = options.on_error ? options.on_error(*error) : DefaultHttpError(options, *error);
  } else if (!status.ok()) {
    status = DescribeTransferError(status, request, options);
  }
  if (status.ok()) status = VerifyLength(writer, options);
  auto [sha256, got_verify] = writer.Finish();
  if (status.ok() && options.digest && got_verify != *options.digest) {
    status =
        absl::DataLossError(StrCat(options.url, ": digest mismatch: want ",
                                   options.digest->ToString(), ", got ", got_verify.ToString()));
  }
  // mkstemp() made the file 0600; the output gets the mode a new file would have.
  if (status.ok() && ::fchmod(fd.get(), 0666 & ~CurrentUmask()) != 0) {
    status = ErrnoError(errno, StrCat("chmod ", temp));
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
