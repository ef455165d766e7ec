#include "base/digest.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cstring>

#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "blake3.h"

namespace naiad {

std::string_view DigestAlgorithmName(DigestAlgorithm algorithm) {
  return algorithm == DigestAlgorithm::kBlake3 ? "blake3" : "sha256";
}

absl::StatusOr<DigestAlgorithm> ParseDigestAlgorithm(std::string_view name) {
  if (name == "sha256") return DigestAlgorithm::kSha256;
  if (name == "blake3") return DigestAlgorithm::kBlake3;
  return absl::InvalidArgumentError(
      StrCat("unknown digest algorithm \"", name, "\": expected sha256 or blake3"));
}

absl::StatusOr<Digest> Digest::Parse(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return absl::InvalidArgumentError(StrCat("digest \"", text, "\": expected <algorithm>:<hex>"));
  }
  Digest digest;
  auto algorithm = ParseDigestAlgorithm(text.substr(0, colon));
  if (!algorithm.ok()) {
    return absl::InvalidArgumentError(
        StrCat("digest \"", text, "\": ", algorithm.status().message()));
  }
  digest.algorithm = *algorithm;
  std::string_view hex = text.substr(colon + 1);
  if (hex.size() != 64) {
    return absl::InvalidArgumentError(
        StrCat("digest \"", text, "\": expected 64 hex digits, got ", hex.size()));
  }
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return absl::InvalidArgumentError(StrCat("digest \"", text, "\": not lowercase hex"));
    }
  }
  auto bytes = HexDecode(hex);
  if (!bytes.ok()) return bytes.status();
  std::memcpy(digest.bytes.data(), bytes->data(), 32);
  return digest;
}

Digest Digest::Of(DigestAlgorithm algorithm, std::string_view data) {
  std::unique_ptr<Hasher> hasher = Hasher::New(algorithm);
  hasher->Update(data);
  return hasher->Finish();
}

std::string Digest::Hex() const {
  return HexEncode(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

std::string Digest::ToString() const { return StrCat(DigestAlgorithmName(algorithm), ":", Hex()); }

std::unique_ptr<Hasher> Hasher::New(DigestAlgorithm algorithm) {
  if (algorithm == DigestAlgorithm::kBlake3) return std::make_unique<Blake3>();
  return std::make_unique<Sha256>();
}

struct Sha256::State {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~State() { EVP_MD_CTX_free(ctx); }
  void Reset() { EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr); }
};

Sha256::Sha256() : state_(std::make_unique<State>()) { state_->Reset(); }
Sha256::~Sha256() = default;

void Sha256::Update(std::string_view data) {
  EVP_DigestUpdate(state_->ctx, data.data(), data.size());
}

Digest Sha256::Finish() {
  Digest digest{DigestAlgorithm::kSha256, {}};
  unsigned int length = 0;
  EVP_DigestFinal_ex(state_->ctx, digest.bytes.data(), &length);
  state_->Reset();
  return digest;
}

Digest Sha256::Snapshot() const {
  Digest digest{DigestAlgorithm::kSha256, {}};
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  EVP_MD_CTX_copy_ex(copy, state_->ctx);
  unsigned int length = 0;
  EVP_DigestFinal_ex(copy, digest.bytes.data(), &length);
  EVP_MD_CTX_free(copy);
  return digest;
}

struct Blake3::State {
  blake3_hasher hasher;
};

Blake3::Blake3() : state_(std::make_unique<State>()) { blake3_hasher_init(&state_->hasher); }
Blake3::~Blake3() = default;

void Blake3::Update(std::string_view data) {
  blake3_hasher_update(&state_->hasher, data.data(), data.size());
}

Digest Blake3::Finish() {
  Digest digest{DigestAlgorithm::kBlake3, {}};
  blake3_hasher_finalize(&state_->hasher, digest.bytes.data(), digest.bytes.size());
  blake3_hasher_init(&state_->hasher);
  return digest;
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto b = static_cast<uint8_t>(bytes[i]);
    out[2 * i] = kDigits[b >> 4];
    out[2 * i + 1] = kDigits[b & 0xf];
  }
  return out;
}

absl::StatusOr<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return absl::InvalidArgumentError("hex: odd number of digits");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]);
    int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("hex: not a hex digit");
    out[i] = static_cast<char>((hi << 4) | lo);
  }
  return out;
}

absl::StatusOr<Digest> Digest::Sha256OfFile(const std::string& path) {
  ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_RDONLY));
  Sha256 hasher;
  std::string buffer(4 << 20, '\0');
  while (true) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, StrCat("read ", path));
    if (n == 0) break;
    hasher.Update(std::string_view(buffer.data(), static_cast<size_t>(n)));
  }
  return hasher.Finish();
}

}  // namespace naiad
