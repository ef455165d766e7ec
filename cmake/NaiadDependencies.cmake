# Every dependency comes from a Debian 12 -dev package (scripts/setup installs them).

find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(fmt CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(yaml-cpp CONFIG REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(CURL REQUIRED)
find_package(Boost 1.81 CONFIG REQUIRED COMPONENTS system url)
find_package(CLI11 CONFIG REQUIRED)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
pkg_check_modules(LZ4 REQUIRED IMPORTED_TARGET liblz4)
pkg_check_modules(FUSE3 REQUIRED IMPORTED_TARGET fuse3)
if(NAIAD_BUILD_TESTS)
  find_package(GTest CONFIG REQUIRED)
endif()

include(Blake3)

# Control-plane RPC (api/): protobuf 3.21 and gRPC 1.51.
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
