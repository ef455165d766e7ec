#!/usr/bin/env bash
# Link launcher for the naiad executable (CXX_LINKER_LAUNCHER in apps/naiad/CMakeLists.txt): runs
# the link command it is given with gRPC, protobuf, abseil and their helpers taken from their
# static archives (Debian ships both) instead of their shared libraries, in one --start-group
# placed where the first of them was.
#
# Why: every naiad process (each `naiad fs` mount, each `naiad image create`) paid about 17 ms
# of CPU before main() just to map and relocate those ~60 shared libraries; a node starting 8
# containers at once starts 8 of them on its 2 cores. Tests keep the shared libraries (their
# links stay fast).
#
# All or nothing: if any of them has no static archive, the command runs unchanged (a mix would
# load a second, shared copy of abseil next to the static one).
set -euo pipefail

static_pattern='^(.*/)?lib(absl_[a-z0-9_]+|grpc[a-z0-9_+]*|gpr|upb[a-z0-9_]*|utf8_[a-z0-9_]+|address_sorting|protobuf|re2|cares)\.so(\.[0-9.]+)?$'
archive_for() {  # prints the static archive that replaces argument $1, if $1 is one to replace
  if [[ "$1" =~ $static_pattern ]]; then
    local dir="${BASH_REMATCH[1]}" name="lib${BASH_REMATCH[2]}.a"
    if [[ -n "$dir" ]]; then echo "$dir$name"; else echo "$name"; fi
  elif [[ "$1" =~ ^-l(re2|cares|protobuf|gpr|upb|address_sorting|grpc.*|absl_.*)$ ]]; then
    "${CXX:-c++}" -print-file-name="lib${BASH_REMATCH[1]}.a"
  fi
}

archives=()
first=-1
rest=()
for arg in "$@"; do
  archive=$(archive_for "$arg")
  if [[ -z "$archive" ]]; then
    rest+=("$arg")
    continue
  fi
  if [[ ! -f "$archive" ]]; then
    echo "link_static_deps: no static archive for $arg; linking every library shared" >&2
    exec "$@"
  fi
  archives+=("$archive")
  (( first < 0 )) && first=${#rest[@]}
done
if (( first < 0 )); then exec "$@"; fi
# Where the first of them was: after the project's own archives that need them, before the
# shared libraries (ssl, crypto, z) that they need.
exec "${rest[@]:0:first}" -Wl,--start-group "${archives[@]}" -Wl,--end-group "${rest[@]:first}"
