# BLAKE3 has no Debian C library package, but Debian's librust-blake3-dev ships the reference C
# implementation beside the Rust crate. Compile it from there at build time; never copy it in.

file(GLOB NAIAD_BLAKE3_DIRS /usr/share/cargo/registry/blake3-*/c)
list(SORT NAIAD_BLAKE3_DIRS)
list(GET NAIAD_BLAKE3_DIRS -1 NAIAD_BLAKE3_DIR)
if(NOT EXISTS "${NAIAD_BLAKE3_DIR}/blake3.c")
  message(FATAL_ERROR "BLAKE3 C sources not found: install librust-blake3-dev (scripts/setup)")
endif()
message(STATUS "BLAKE3 C sources: ${NAIAD_BLAKE3_DIR}")

add_library(naiad_blake3 STATIC
  ${NAIAD_BLAKE3_DIR}/blake3.c
  ${NAIAD_BLAKE3_DIR}/blake3_dispatch.c
  ${NAIAD_BLAKE3_DIR}/blake3_portable.c
  ${NAIAD_BLAKE3_DIR}/blake3_sse2_x86-64_unix.S
  ${NAIAD_BLAKE3_DIR}/blake3_sse41_x86-64_unix.S
  ${NAIAD_BLAKE3_DIR}/blake3_avx2_x86-64_unix.S
  ${NAIAD_BLAKE3_DIR}/blake3_avx512_x86-64_unix.S)
target_include_directories(naiad_blake3 SYSTEM PUBLIC ${NAIAD_BLAKE3_DIR})
set_target_properties(naiad_blake3 PROPERTIES POSITION_INDEPENDENT_CODE ON)
add_library(naiad::blake3 ALIAS naiad_blake3)
