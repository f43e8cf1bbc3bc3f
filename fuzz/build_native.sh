#!/usr/bin/env bash
# Build flows/native with libFuzzer coverage (SanitizerCoverage: inline 8-bit
# counters, PC table, comparison tracing) for fuzz/scanner.py, which loads it
# in place of flows._native when IOTPIPE_FUZZ_NATIVE names it:
#
#   so=$(bash fuzz/build_native.sh)
#   IOTPIPE_FUZZ_NATIVE=$so .venv/bin/python fuzz/scanner.py -dict=fuzz/scanner.dict CORPUS
#
# Prints the built library's path. Only the crate itself is instrumented
# (`cargo rustc` passes the flags to it alone; its dependencies build as
# usual). The target dir is kept out of the work tree
# (IOTPIPE_FUZZ_TARGET_DIR, default ~/.cache/iotpipe/fuzz-native), so that a
# fresh clone rebuilds only the crate (seconds), not its dependencies (about
# 30 s of CPU). Work trees share it, and a cdylib's file name is the same for
# all of them, so the crate is cleaned first whenever another tree built last.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target_dir="${IOTPIPE_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/iotpipe/fuzz-native}"
manifest="$root/flows/native/Cargo.toml"
stamp="$target_dir/built-from"
export PYO3_PYTHON="${PYO3_PYTHON:-$root/.venv/bin/python}"
if [[ -d "$target_dir" && "$(cat "$stamp" 2>/dev/null)" != "$root" ]]; then
    cargo clean --release --quiet -p iotpipe-flows-native \
        --manifest-path "$manifest" --target-dir "$target_dir" >&2
fi
cargo rustc --release --locked --quiet --lib \
    --manifest-path "$manifest" --target-dir "$target_dir" -- \
    -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=3 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares >&2
echo "$root" >"$stamp"
echo "$target_dir/release/lib_native.so"
