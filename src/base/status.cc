#include <cstring>
#include <string>

#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad {

absl::Status Annotate(const absl::Status& status, std::string_view context) {
  if (status.ok()) {
    return status;
  }
  return absl::Status(status.code(), StrCat(context, ": ", status.message()));
}

absl::Status ErrnoError(int error_number, std::string_view context) {
  return absl::Status(absl::ErrnoToStatusCode(error_number),
                      StrCat(context, ": ", std::strerror(error_number)));
}

}  // namespace naiad
