// File: base/digest.h
//
// Content digests: SHA-256 (OpenSSL), BLAKE3 (the reference C implementation) and CRC32C.
//
//   Sha256 hasher;
//   hasher.Update(part1);
//   hasher.Update(part2);
//   Digest d = hasher.Finish();            // d.ToString() == "sha256:9f86d0..."
//   ASSIGN_OR_RETURN(Digest want, Digest::Parse("sha256:9f86d0..."));
//   uint32_t crc = Crc32c(data);           // Castagnoli, hardware-accelerated where available
//
// Hashers are not thread-safe; Digest is a plain value.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace naiad {

enum class DigestAlgorithm : uint8_t { kSha256, kBlake3 };

std::string_view DigestAlgorithmName(DigestAlgorithm algorithm);  // "sha256" / "blake3"
absl::StatusOr<DigestAlgorithm> ParseDigestAlgorithm(std::string_view name);

// A 32-byte digest and the algorithm that produced it.
struct Digest {
  DigestAlgorithm algorithm = DigestAlgorithm::kSha256;
  std::array<uint8_t, 32> bytes{};

  // Parses "<algorithm>:<64 lowercase hex digits>", as OCI descriptors write digests.
  static absl::StatusOr<Digest> Parse(std::string_view text);
  static Digest Of(DigestAlgorithm algorithm, std::string_view data);
  // The sha256 of a file's contents, read in slices.
  static absl::StatusOr<Digest> Sha256OfFile(const std::string& path);

  std::string Hex() const;       // 64 lowercase hex digits
  std::string ToString() const;  // "sha256:<hex>"

  friend bool operator==(const Digest&, const Digest&) = default;
};

// Streaming hasher interface.
class Hasher {
 public:
  virtual ~Hasher() = default;
  virtual void Update(std::string_view data) = 0;
  // Returns the digest of everything passed to Update(). The hasher is then reset.
  virtual Digest Finish() = 0;

  static std::unique_ptr<Hasher> New(DigestAlgorithm algorithm);
};

class Sha256 final : public Hasher {
 public:
  Sha256();
  ~Sha256() override;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data) override;
  Digest Finish() override;
  // The digest of everything passed so far, without resetting (one hasher can then yield the
  // digest of a prefix and of the whole).
  Digest Snapshot() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

class Blake3 final : public Hasher {
 public:
  Blake3();
  ~Blake3() override;
  Blake3(const Blake3&) = delete;
  Blake3& operator=(const Blake3&) = delete;

  void Update(std::string_view data) override;
  Digest Finish() override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// CRC32C (Castagnoli). `Crc32cExtend(Crc32c(a), b) == Crc32c(a + b)`.
uint32_t Crc32cExtend(uint32_t crc, std::string_view data);
inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data); }

// Lowercase hex of arbitrary bytes, and its inverse (fails on odd length or non-hex digits).
std::string HexEncode(std::string_view bytes);
absl::StatusOr<std::string> HexDecode(std::string_view hex);

}  // namespace naiad
