#!/usr/bin/env bash
# Builds the static guest agent: build.sh OUT_PATH (CC overrides the compiler, default musl-gcc).
set -euo pipefail

out="${1:?usage: build.sh OUT_PATH}"
src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

cc="${CC:-musl-gcc}"
if ! command -v "$cc" >/dev/null 2>&1; then
  if [[ -z "${CC:-}" ]] && command -v gcc >/dev/null 2>&1; then
    echo "build.sh: musl-gcc not found, falling back to gcc -static (glibc: larger binary)" >&2
    cc=gcc
  else
    echo "build.sh: compiler $cc not found (apt-get install musl-tools)" >&2
    exit 1
  fi
fi

flags=(-std=c11 -static -Os -Wall -Wextra -Werror -fno-asynchronous-unwind-tables -ffunction-sections
  -fdata-sections -Wl,--gc-sections -s)
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
"$cc" "${flags[@]}" -o "$tmp" "$src"/*.c
mv -f "$tmp" "$out"
trap - EXIT
