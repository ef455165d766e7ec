// File: base/units.h
//
// Byte quantities written by people in configuration files: "100Mi", "50MB", "1.5Gi", "1048576".
//
//   ASSIGN_OR_RETURN(uint64_t bytes_per_second, ParseByteQuantity(config.upload.rate_limit));
//   if (bytes_per_second == 0) { ... unlimited ... }
//
// Every unit is binary: k, K, Ki, KB, KiB (any case) all mean 1024, and likewise M (2^20),
// G (2^30) and T (2^40). This is what dfdaemon does with the same keys (docker/go-units'
// RAMInBytes, Dragonfly's pkg/unit), so a dfdaemon.yaml means the same thing here.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace naiad {

// Parses `<number>[ ][unit]`: a decimal number with an optional fraction ("1.5"), an optional
// single space, and an optional unit — k/m/g/t in any case, optionally followed by i/I, then
// optionally b/B; a bare "B" means bytes. Leading and trailing blanks are ignored. The empty
// string is 0. A fractional result is rounded down. InvalidArgument, naming the text, for
// anything else (signs, other units, values above 2^64 - 1).
absl::StatusOr<uint64_t> ParseByteQuantity(std::string_view text);

}  // namespace naiad
