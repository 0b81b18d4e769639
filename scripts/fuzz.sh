#!/usr/bin/env bash
# A short fuzzing run of every target in fuzz/ (cargo-fuzz, libFuzzer):
# SECONDS per target (60 by default), one target at a time, new inputs
# merged into fuzz/corpus/<target>/. Needs a nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`); a crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script fail.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   scripts/fuzz.sh 600 route_text  # one target, 10 minutes
#
# The corpus is replayed on stable by `cargo test -p podnet-fuzz`
# (part of scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(route_text rule_text netlink_decode ct_decode gc_interval)
fi
for t in "${targets[@]}"; do
    echo "== $t: ${secs}s"
    # No sanitizer: the code under test is safe Rust; cargo-fuzz keeps
    # debug assertions and overflow checks on.
    cargo +nightly fuzz run --fuzz-dir fuzz --features libfuzzer -s none "$t" \
        "fuzz/corpus/$t" -- -max_total_time="$secs" -max_len=4096 -print_final_stats=1
done
