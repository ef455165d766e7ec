// File: base/version.h
#pragma once

#include <string_view>

namespace naiad {

// "0.1.0" plus " (<git describe>)" when built from a git checkout.
std::string_view Version();

}  // namespace naiad
