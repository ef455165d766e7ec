// naiad_test_fileserver: serves the files of one directory over HTTP, with Range support, for
// end-to-end tests that need an origin inside a network namespace.
//
//   naiad_test_fileserver --dir /srv/www --address 10.77.1.1 --port 8080
//
// GET/HEAD /<name> answers 200 with the file, 206 for a satisfiable single Range, 416 for a range
// past the end, 404 for anything that is not a regular file under --dir. Prints
// "listening on <url>" once it accepts connections, and exits on SIGTERM or SIGINT.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "base/file.h"
#include "base/strings.h"
#include "net/http_server.h"
#include "net/http_types.h"

namespace naiad::testing {
namespace {

constexpr size_t kChunk = 1 << 20;

void RespondText(net::ResponseWriter& w, int status, std::string_view text) {
  net::HttpHeaders headers;
  headers.Set("Content-Type", "text/plain").IgnoreError();
  w.Respond(status, headers, text).IgnoreError();
}

// Streams [range.offset, range.end()) of `fd`; stops when the client goes away.
void StreamRange(int fd, const net::ByteRange& range, net::ResponseWriter& w) {
  std::string buf;
  for (uint64_t at = range.offset; at < range.end();) {
    buf.resize(std::min<uint64_t>(kChunk, range.end() - at));
    if (!PreadFull(fd, std::span<char>(buf.data(), buf.size()), at).ok()) return;
    if (!w.Write(buf).ok()) return;
    at += buf.size();
  }
  w.End().IgnoreError();
}

void ServeFile(const std::string& root, const net::ServerRequest& req, net::ResponseWriter& w) {
  if (req.path.find("..") != std::string::npos || !req.path.starts_with("/")) {
    return RespondText(w, 400, "bad path\n");
  }
  if (req.path == "/") return RespondText(w, 200, "naiad_test_fileserver\n");
  absl::StatusOr<UniqueFd> fd = UniqueFd::Open(root + req.path, O_RDONLY);
  struct stat st;
  if (!fd.ok() || ::fstat(fd->get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return RespondText(w, 404, "not found\n");
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  net::ByteRange range{0, size};
  int status = 200;
  net::HttpHeaders headers;
  headers.Set("Content-Type", "application/octet-stream").IgnoreError();
  headers.Set("Accept-Ranges", "bytes").IgnoreError();
  if (std::optional<std::string> header = req.headers.Get("Range")) {
    absl::StatusOr<net::ByteRange> parsed = net::ParseRangeHeader(*header, size);
    if (absl::IsOutOfRange(parsed.status())) {
      headers.Set("Content-Range", StrCat("bytes */", size)).IgnoreError();
      return w.Respond(416, headers, "").IgnoreError();
    }
    if (parsed.ok()) {  // an unparseable Range is ignored, as RFC 9110 allows
      range = *parsed;
      status = 206;
      headers.Set("Content-Range", range.ToContentRange(size)).IgnoreError();
    }
  }
  if (!w.Begin(status, headers, range.length).ok()) return;
  StreamRange(fd->get(), range, w);
}

int Main(int argc, char** argv) {
  CLI::App app{"Serves a directory over HTTP for tests"};
  std::string dir;
  std::string address = "127.0.0.1";
  uint16_t port = 0;
  app.add_option("--dir", dir, "directory to serve")->required();
  app.add_option("--address", address, "address to listen on");
  app.add_option("--port", port, "port (0 picks one)");
  CLI11_PARSE(app, argc, argv);

  // Blocked before the server's threads start, so only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto server =
      net::HttpServer::Start({.address = address, .port = port, .threads = 8},
                             [&dir](const net::ServerRequest& req, net::ResponseWriter& w) {
                               if (req.method != "GET" && req.method != "HEAD") {
                                 return RespondText(w, 405, "GET only\n");
                               }
                               ServeFile(dir, req, w);
                             });
  if (!server.ok()) {
    std::fprintf(stderr, "naiad_test_fileserver: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::printf("listening on %s\n", (*server)->url().c_str());
  std::fflush(stdout);
  int signal = 0;
  sigwait(&stop_signals, &signal);
  (*server)->Shutdown(absl::Seconds(2));
  return 0;
}

}  // namespace
}  // namespace naiad::testing

int main(int argc, char** argv) { return naiad::testing::Main(argc, argv); }
