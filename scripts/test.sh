#!/usr/bin/env bash
# The whole test suite: unit, privileged (in network namespaces the tests
# create and remove), end-to-end, doc tests, and every benchmark once at a
# small size. Run as root on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

cargo test --workspace --all-targets --no-fail-fast "$@"
cargo test --workspace --doc --no-fail-fast "$@"
# The optional serde feature of each published crate (round-trip unit tests).
cargo test --no-fail-fast --lib -p podnet-route -p podnet-conntrack -p podnet-datapath \
  --features podnet-route/serde,podnet-conntrack/serde,podnet-datapath/serde "$@"
