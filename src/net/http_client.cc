#include "net/http_client.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>
#include <vector>

#include "absl/strings/match.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/version.h"

namespace naiad::net {
namespace {

constexpr char kDefaultCaBundle[] = "/etc/ssl/certs/ca-certificates.crt";
constexpr size_t kMaxIdleHandles = 32;

// curl_global_init() must run once before any other libcurl call; a function-local static makes
// that happen exactly once, on first use, without a global constructor.
bool CurlInitialized() {
  static const bool kCurlReady = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  return kCurlReady;
}

// The request body, read from a position curl may rewind (it re-sends the body on a 307/308).
struct BodySource {
  std::string_view memory;
  UniqueFd fd;
  std::string path;
  uint64_t size = 0;
  uint64_t position = 0;
  absl::Status error;
};

// Everything the callbacks of one transfer share.
struct Transfer {
  const HttpRequest* request = nullptr;
  CURL* easy = nullptr;
  HttpResponse response;
  bool headers_delivered = false;
  absl::Status callback_error;  // from on_headers or body_sink; becomes Send()'s result
  BodySource body;
};

// User callbacks run inside libcurl's C frames, where an exception must not unwind.
template <typename F>
absl::Status CallUser(F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    return absl::InternalError(StrCat("HTTP client callback threw: ", e.what()));
  } catch (...) {
    return absl::InternalError("HTTP client callback threw");
  }
}

// Runs on_headers once, when the final response's headers are complete: before the first body
// byte, or after the transfer for a response without a body.
bool DeliverHeaders(Transfer* t) {
  if (t->headers_delivered) return t->callback_error.ok();
  t->headers_delivered = true;
  char* url = nullptr;
  if (curl_easy_getinfo(t->easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url != nullptr) {
    t->response.effective_url = url;
  }
  if (t->request->on_headers) {
    t->callback_error = CallUser([&] { return t->request->on_headers(t->response); });
  }
  return t->callback_error.ok();
}

std::string_view TrimLine(std::string_view s) {
  while (!s.empty() &&
         (s.back() == '\r' || s.back() == '\n' || s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

// "HTTP/1.1 206 Partial Content" -> 206; 0 if unparsable.
int ParseStatusLine(std::string_view line) {
  size_t space = line.find(' ');
  if (space == std::string_view::npos || line.size() < space + 4) return 0;
  int code = 0;
  for (char c : line.substr(space + 1, 3)) {
    if (c < '0' || c > '9') return 0;
    code = code * 10 + (c - '0');
  }
  return code;
}

// libcurl hands over every header line of every response (1xx, redirects, the final one, and
// trailers); a status line starts a new response, so only the final one's fields remain.
size_t OnHeaderLine(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * count);
  if (t->headers_delivered) return line.size();  // trailers: not part of the contract
  if (line.starts_with("HTTP/")) {
    t->response.headers = HttpHeaders();
    t->response.status = ParseStatusLine(line);
    return line.size();
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return line.size();  // the blank line, or junk
  // A field that HttpHeaders rejects (e.g. a bad name) is dropped rather than failing the request.
  t->response.headers.Add(line.substr(0, colon), TrimLine(line.substr(colon + 1))).IgnoreError();
  return line.size();
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * count;
  if (!DeliverHeaders(t)) return CURL_WRITEFUNC_ERROR;
  if (t->request->body_sink) {
    t->callback_error = CallUser([&] { return t->request->body_sink(std::string_view(data, n)); });
    if (!t->callback_error.ok()) return CURL_WRITEFUNC_ERROR;
  } else {
    t->response.body.append(data, n);
  }
  return n;
}

size_t OnReadBody(char* buffer, size_t size, size_t count, void* user) {
  auto* body = static_cast<BodySource*>(user);
  size_t want = std::min<uint64_t>(size * count, body->size - body->position);
  if (want == 0) return 0;
  if (!body->fd.valid()) {
    std::memcpy(buffer, body->memory.data() + body->position, want);
    body->position += want;
    return want;
  }
  ssize_t got;
  do {
    got = pread(body->fd.get(), buffer, want, static_cast<off_t>(body->position));
  } while (got < 0 && errno == EINTR);
  if (got <= 0) {
    body->error = got < 0 ? ErrnoError(errno, StrCat("reading ", body->path))
                          : absl::DataLossError(StrCat(body->path, " shrank while being sent"));
    return CURL_READFUNC_ABORT;
  }
  body->position += static_cast<uint64_t>(got);
  return static_cast<size_t>(got);
}

int OnSeekBody(void* user, curl_off_t offset, int origin) {
  auto* body = static_cast<BodySource*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > body->size) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  body->position = static_cast<uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

// Called at least about once a second, also while the transfer stalls; non-zero aborts it.
int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  return t->request->cancel != nullptr && t->request->cancel->cancelled() ? 1 : 0;
}

// The one place a CURLcode becomes a Status. Errors raised by our own callbacks come first:
// they are what actually went wrong.
absl::Status TransferStatus(CURLcode code, const Transfer& t, const char* error_buffer) {
  if (!t.callback_error.ok()) return t.callback_error;
  if (!t.body.error.ok()) return t.body.error;
  if (code == CURLE_OK) return absl::OkStatus();
  const HttpRequest& r = *t.request;
  if (code == CURLE_ABORTED_BY_CALLBACK && r.cancel != nullptr && r.cancel->cancelled()) {
    return absl::CancelledError(StrCat(r.method, " ", r.url, ": cancelled"));
  }
  std::string message = StrCat(r.method, " ", r.url, ": ",
                               error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code),
                               " (curl error ", static_cast<int>(code), ")");
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:  // the connection closed before the announced body was complete
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_PROXY:
      return absl::UnavailableError(message);
    case CURLE_OPERATION_TIMEDOUT:  // also the low-speed limit
      return absl::DeadlineExceededError(message);
    case CURLE_ABORTED_BY_CALLBACK:
      return absl::CancelledError(message);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
      return absl::UnauthenticatedError(message);
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_TOO_MANY_REDIRECTS:
      return absl::FailedPreconditionError(message);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_FUNCTION_ARGUMENT:
      return absl::InvalidArgumentError(message);
    case CURLE_OUT_OF_MEMORY:
    case CURLE_FILESIZE_EXCEEDED:
      return absl::ResourceExhaustedError(message);
    case CURLE_NOT_BUILT_IN:
      return absl::UnimplementedError(message);
    default:
      return absl::UnknownError(message);
  }
}

bool IsMethodToken(std::string_view method) {
  return !method.empty() && std::all_of(method.begin(), method.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

absl::Status ValidateRequest(const HttpRequest& r) {
  if (r.url.empty()) return absl::InvalidArgumentError("HTTP request without a URL");
  if (!IsMethodToken(r.method)) {
    return absl::InvalidArgumentError(StrCat("invalid HTTP method \"", r.method, "\""));
  }
  if (r.range && r.range->length == 0) {
    return absl::InvalidArgumentError(StrCat(r.url, ": empty byte range"));
  }
  if (!r.body.empty() && !r.body_file.empty()) {
    return absl::InvalidArgumentError(StrCat(r.url, ": both body and body_file set"));
  }
  return absl::OkStatus();
}

absl::Status OpenBody(const HttpRequest& r, BodySource* body) {
  if (r.body_file.empty()) {
    body->memory = r.body;
    body->size = r.body.size();
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(body->fd, UniqueFd::Open(r.body_file, O_RDONLY));
  struct stat st;
  if (fstat(body->fd.get(), &st) != 0) return ErrnoError(errno, StrCat("stat ", r.body_file));
  body->path = r.body_file;
  body->size = static_cast<uint64_t>(st.st_size);
  return absl::OkStatus();
}

// Owns a curl_slist.
class HeaderList {
 public:
  ~HeaderList() { curl_slist_free_all(list_); }
  bool Append(const std::string& line) {
    curl_slist* next = curl_slist_append(list_, line.c_str());
    if (next != nullptr) list_ = next;
    return next != nullptr;
  }
  curl_slist* get() const { return list_; }

 private:
  curl_slist* list_ = nullptr;
};

absl::Status BuildHeaderList(const HttpRequest& r, HeaderList* list) {
  std::vector<std::string> lines;
  for (const auto& [name, value] : r.headers.entries()) {
    if (r.range && absl::EqualsIgnoreCase(ToAbsl(name), "Range")) {
      continue;  // request.range wins
    }
    // "Name;" is curl's syntax for a field with an empty value ("Name:" would remove it).
    lines.push_back(value.empty() ? StrCat(name, ";") : StrCat(name, ": ", value));
  }
  if (r.range) lines.push_back(StrCat("Range: ", r.range->ToRangeHeader()));
  // curl would otherwise wait for "100 Continue" before sending large bodies.
  if (!r.headers.Has("Expect")) lines.push_back("Expect:");
  for (const std::string& line : lines) {
    if (!list->Append(line)) return absl::ResourceExhaustedError("curl_slist_append failed");
  }
  return absl::OkStatus();
}

// Collects the first failure of a series of curl_easy_setopt() calls.
class Options {
 public:
  explicit Options(CURL* easy) : easy_(easy) {}
  template <typename T>
  void Set(CURLoption option, T value) {
    CURLcode code = curl_easy_setopt(easy_, option, value);
    if (first_error_ == CURLE_OK && code != CURLE_OK) {
      first_error_ = code;
      failed_option_ = option;
    }
  }
  absl::Status status(const HttpRequest& r) const {
    if (first_error_ == CURLE_OK) return absl::OkStatus();
    return absl::InternalError(StrCat(r.url, ": configuring libcurl (option ",
                                      static_cast<int>(failed_option_),
                                      "): ", curl_easy_strerror(first_error_)));
  }

 private:
  CURL* easy_;
  CURLcode first_error_ = CURLE_OK;
  CURLoption failed_option_ = CURLOPT_URL;
};

long Millis(absl::Duration d) { return static_cast<long>(absl::ToInt64Milliseconds(d)); }

void SetMethod(const HttpRequest& r, Transfer* t, Options& o) {
  bool has_body = !r.body.empty() || !r.body_file.empty();
  if (r.method == "HEAD" && !has_body) {
    o.Set(CURLOPT_NOBODY, 1L);
  } else if (!has_body && r.method != "POST" && r.method != "PUT" && r.method != "PATCH") {
    o.Set(CURLOPT_HTTPGET, 1L);
    if (r.method != "GET") o.Set(CURLOPT_CUSTOMREQUEST, r.method.c_str());
  } else {
    // UPLOAD streams the body through the read callback with a Content-Length, whatever the
    // method; CUSTOMREQUEST then names the method.
    o.Set(CURLOPT_UPLOAD, 1L);
    o.Set(CURLOPT_CUSTOMREQUEST, r.method.c_str());
    o.Set(CURLOPT_READFUNCTION, &OnReadBody);
    o.Set(CURLOPT_READDATA, static_cast<void*>(&t->body));
    o.Set(CURLOPT_SEEKFUNCTION, &OnSeekBody);
    o.Set(CURLOPT_SEEKDATA, static_cast<void*>(&t->body));
    o.Set(CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(t->body.size));
  }
}

// A share of connections, DNS and TLS sessions, and a pool of easy handles attached to it.
// Sharing the connection cache lets every pooled handle, on any thread, reuse any idle
// connection; the lock callbacks make that safe.
class HandlePool {
 public:
  HandlePool() {
    if (!CurlInitialized()) return;
    share_ = curl_share_init();
    if (share_ == nullptr) return;
    curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, &HandlePool::Lock);
    curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &HandlePool::Unlock);
    curl_share_setopt(share_, CURLSHOPT_USERDATA, static_cast<void*>(this));
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }
  ~HandlePool() {
    // Handles first: a share may only be cleaned up once no handle uses it.
    for (CURL* easy : idle_) curl_easy_cleanup(easy);
    if (share_ != nullptr) curl_share_cleanup(share_);
  }
  HandlePool(const HandlePool&) = delete;
  HandlePool& operator=(const HandlePool&) = delete;

  bool ok() const { return share_ != nullptr; }

  CURL* Acquire() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        CURL* easy = idle_.back();
        idle_.pop_back();
        return easy;
      }
    }
    CURL* easy = curl_easy_init();
    if (easy != nullptr) curl_easy_setopt(easy, CURLOPT_SHARE, share_);
    return easy;
  }

  void Release(CURL* easy) {
    // Drops every per-request option and pointer; keeps the share (and so the connections).
    curl_easy_reset(easy);
    {
      std::lock_guard lock(mu_);
      if (idle_.size() < kMaxIdleHandles) {
        idle_.push_back(easy);
        return;
      }
    }
    curl_easy_cleanup(easy);
  }

 private:
  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<HandlePool*>(user)->locks_[data].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<HandlePool*>(user)->locks_[data].unlock();
  }

  CURLSH* share_ = nullptr;
  std::array<std::mutex, CURL_LOCK_DATA_LAST> locks_;
  std::mutex mu_;
  std::vector<CURL*> idle_;
};

// Returns a pooled handle on destruction.
class HandleLease {
 public:
  explicit HandleLease(HandlePool* pool) : pool_(pool), easy_(pool->Acquire()) {}
  ~HandleLease() {
    if (easy_ != nullptr) pool_->Release(easy_);
  }
  HandleLease(const HandleLease&) = delete;
  HandleLease& operator=(const HandleLease&) = delete;
  CURL* get() const { return easy_; }

 private:
  HandlePool* pool_;
  CURL* easy_;
};

}  // namespace

struct HttpClient::Impl {
  HttpClientOptions options;
  std::string user_agent;
  std::string ca_bundle;     // the default store plus options.ca_files; empty: curl's default
  absl::Status setup_error;  // why the client cannot work (reported by every Send())
  HandlePool pool;
  std::atomic<uint64_t> connections{0};

  explicit Impl(HttpClientOptions o) : options(std::move(o)) {
    user_agent = options.user_agent.empty() ? StrCat("naiad/", Version()) : options.user_agent;
    if (!pool.ok()) {
      setup_error = absl::InternalError("initializing libcurl failed");
      return;
    }
    setup_error = LoadCaBundle();
  }
  absl::Status LoadCaBundle();
  absl::Status Configure(const HttpRequest& r, Transfer* t, const HeaderList& headers,
                         char* error_buffer);
};

// libcurl takes a single CA bundle, which replaces its default one. To honour "extra CAs, the
// system store as well", the bundle handed over (in memory) is curl's default bundle followed by
// every options.ca_files entry.
absl::Status HttpClient::Impl::LoadCaBundle() {
  if (options.ca_files.empty()) return absl::OkStatus();
  std::string system_path = kDefaultCaBundle;
  if (CURL* probe = curl_easy_init(); probe != nullptr) {
    char* path = nullptr;
    if (curl_easy_getinfo(probe, CURLINFO_CAINFO, &path) == CURLE_OK && path != nullptr) {
      system_path = path;
    }
    curl_easy_cleanup(probe);
  }
  if (absl::StatusOr<std::string> system = ReadFileToString(system_path); system.ok()) {
    ca_bundle = std::move(*system);
    ca_bundle += "\n";
  }
  for (const std::string& file : options.ca_files) {
    absl::StatusOr<std::string> pem = ReadFileToString(file);
    if (!pem.ok()) return Annotate(pem.status(), "loading HTTP client CA file");
    if (pem->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return absl::InvalidArgumentError(StrCat("CA file ", file, " has no PEM certificate"));
    }
    StrAppend(&ca_bundle, *pem, "\n");
  }
  return absl::OkStatus();
}

absl::Status HttpClient::Impl::Configure(const HttpRequest& r, Transfer* t,
                                         const HeaderList& headers, char* error_buffer) {
  Options o(t->easy);
  o.Set(CURLOPT_URL, r.url.c_str());
  o.Set(CURLOPT_NOSIGNAL, 1L);
  o.Set(CURLOPT_ERRORBUFFER, error_buffer);
  o.Set(CURLOPT_PROTOCOLS_STR, "http,https");
  o.Set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  o.Set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  // An empty proxy disables proxies, including the environment's http_proxy & co.
  o.Set(CURLOPT_PROXY, options.proxy.c_str());
  o.Set(CURLOPT_USERAGENT, user_agent.c_str());
  o.Set(CURLOPT_HTTPHEADER, headers.get());
  if (options.unix_socket_path.empty()) {
    o.Set(CURLOPT_TCP_KEEPALIVE, 1L);
  } else {
    o.Set(CURLOPT_UNIX_SOCKET_PATH, options.unix_socket_path.c_str());
  }
  SetMethod(r, t, o);
  o.Set(CURLOPT_FOLLOWLOCATION, r.follow_redirects ? 1L : 0L);
  o.Set(CURLOPT_MAXREDIRS, static_cast<long>(options.max_redirects));
  if (options.connect_timeout > absl::ZeroDuration()) {
    o.Set(CURLOPT_CONNECTTIMEOUT_MS, std::max(1L, Millis(options.connect_timeout)));
  }
  absl::Duration timeout = r.timeout > absl::ZeroDuration() ? r.timeout : options.timeout;
  if (timeout > absl::ZeroDuration()) o.Set(CURLOPT_TIMEOUT_MS, std::max(1L, Millis(timeout)));
  if (options.low_speed_time > absl::ZeroDuration() && options.low_speed_bytes_per_second > 0) {
    // curl counts the low-speed window in whole seconds.
    o.Set(CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(options.low_speed_bytes_per_second));
    o.Set(CURLOPT_LOW_SPEED_TIME,
          std::max(1L, static_cast<long>(absl::ToInt64Seconds(options.low_speed_time +
                                                              absl::Milliseconds(999)))));
  }
  o.Set(CURLOPT_SSL_VERIFYPEER, options.verify_tls ? 1L : 0L);
  o.Set(CURLOPT_SSL_VERIFYHOST, options.verify_tls ? 2L : 0L);
  curl_blob blob{ca_bundle.data(), ca_bundle.size(), CURL_BLOB_NOCOPY};
  if (!ca_bundle.empty()) o.Set(CURLOPT_CAINFO_BLOB, &blob);
  o.Set(CURLOPT_HEADERFUNCTION, &OnHeaderLine);
  o.Set(CURLOPT_HEADERDATA, static_cast<void*>(t));
  o.Set(CURLOPT_WRITEFUNCTION, &OnBody);
  o.Set(CURLOPT_WRITEDATA, static_cast<void*>(t));
  o.Set(CURLOPT_NOPROGRESS, 0L);
  o.Set(CURLOPT_XFERINFOFUNCTION, &OnProgress);
  o.Set(CURLOPT_XFERINFODATA, static_cast<void*>(t));
  return o.status(r);
}

HttpClient::HttpClient(HttpClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpClient::~HttpClient() = default;

absl::StatusOr<HttpResponse> HttpClient::Send(const HttpRequest& request) {
  RETURN_IF_ERROR(impl_->setup_error);
  RETURN_IF_ERROR(ValidateRequest(request));
  if (request.cancel != nullptr && request.cancel->cancelled()) {
    return absl::CancelledError(StrCat(request.method, " ", request.url, ": cancelled"));
  }
  Transfer t;
  t.request = &request;
  RETURN_IF_ERROR(OpenBody(request, &t.body));
  HeaderList headers;
  RETURN_IF_ERROR(BuildHeaderList(request, &headers));
  HandleLease lease(&impl_->pool);
  if (lease.get() == nullptr) return absl::ResourceExhaustedError("curl_easy_init failed");
  t.easy = lease.get();
  char error_buffer[CURL_ERROR_SIZE] = "";
  RETURN_IF_ERROR(impl_->Configure(request, &t, headers, error_buffer));
  CURLcode code = curl_easy_perform(t.easy);
  long connects = 0;
  if (curl_easy_getinfo(t.easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK && connects > 0) {
    impl_->connections.fetch_add(static_cast<uint64_t>(connects), std::memory_order_relaxed);
  }
  RETURN_IF_ERROR(TransferStatus(code, t, error_buffer));
  if (!DeliverHeaders(&t)) return t.callback_error;  // a response without a body
  return std::move(t.response);
}

absl::StatusOr<HttpResponse> HttpClient::Get(std::string_view url, const HttpHeaders& headers) {
  HttpRequest request;
  request.url = std::string(url);
  request.headers = headers;
  return Send(request);
}

uint64_t HttpClient::connections_opened() const {
  return impl_->connections.load(std::memory_order_relaxed);
}

}  // namespace naiad::net
