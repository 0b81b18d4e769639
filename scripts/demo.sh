#!/usr/bin/env bash
# The main demo: two nodes in network namespaces, routes, the BPF datapath,
# traffic, conntrack and GC. Run as root on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

cargo run --release --example native_routing -- "$@"
