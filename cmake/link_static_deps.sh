#!/usr/bin/env bash
# Link launcher for the naiad executable (RULE_LAUNCH_LINK in apps/naiad/CMakeLists.txt): runs the
# link command it is given with gRPC, protobuf, abseil and their helpers taken from their static
# archives (Debian ships both) instead of their shared libraries, in one --start-group.
#
# Why: every naiad process (each `naiad fs` mount, each `naiad image create`) paid about 17 ms
# of CPU before main() just to map and relocate those ~60 shared libraries; a node starting 8
# containers at once starts 8 of them on its 2 cores. Tests keep the shared libraries (their
# links stay fast). A library without a static archive is left shared.
set -euo pipefail

static_pattern='^(.*/)?lib(absl_[a-z0-9_]+|grpc\+\+|grpc|gpr|upb|address_sorting|protobuf|re2|cares)\.so(\.[0-9.]+)?$'
args=()
first=-1
last=-1
for arg in "$@"; do
  replacement=""
  if [[ "$arg" =~ $static_pattern ]]; then
    replacement="${BASH_REMATCH[1]}lib${BASH_REMATCH[2]}.a"
  elif [[ "$arg" == "-lre2" ]]; then
    replacement=/usr/lib/x86_64-linux-gnu/libre2.a
  fi
  if [[ -n "$replacement" && -f "$replacement" ]]; then
    (( first < 0 )) && first=${#args[@]}
    last=${#args[@]}
    args+=("$replacement")
  else
    args+=("$arg")
  fi
done
if (( first >= 0 )); then
  args=("${args[@]:0:first}" -Wl,--start-group "${args[@]:first:last-first+1}" -Wl,--end-group
        "${args[@]:last+1}")
fi
exec "${args[@]}"
