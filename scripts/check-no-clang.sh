#!/usr/bin/env bash
# Builds a fresh crate outside the workspace that depends on podnet-datapath
# and podnet-conntrack by path, with a PATH on which no clang can be found:
# what a user who never installed LLVM gets. Also builds its docs with DOCS_RS=1,
# as docs.rs would. Run from anywhere; CI runs it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/podnet-no-clang.XXXXXX)
trap 'rm -rf "$work"' EXIT

# A PATH holding every program of the usual directories except clang/LLVM.
mkdir -p "$work/bin"
for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  [ -d "$dir" ] || continue
  for f in "$dir"/*; do
    name=$(basename "$f")
    case "$name" in clang*|llc*|llvm-*|ld.lld*|lld*) continue ;; esac
    [ -e "$work/bin/$name" ] || ln -s "$f" "$work/bin/$name"
  done
done
cargo_bin=$(dirname "$(command -v cargo)")
nopath="$cargo_bin:$work/bin"
if PATH="$nopath" command -v clang >/dev/null; then
  echo "check-no-clang: clang is still on the shadow PATH" >&2; exit 1
fi

mkdir -p "$work/agent/src"
cat > "$work/agent/Cargo.toml" <<TOML
[package]
name = "no-clang-agent"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
podnet-datapath = { path = "$repo/datapath-bpf" }
podnet-conntrack = { path = "$repo/conntrack" }
podnet-route = { path = "$repo/route" }

[workspace]
TOML
cat > "$work/agent/src/main.rs" <<'RS'
fn main() {
    // The embedded object is there without any compiler having run.
    assert_eq!(&podnet_datapath::OBJECT[..4], b"\x7fELF");
    println!("object: {} bytes", podnet_datapath::OBJECT.len());
}
RS
cd "$work/agent"
export CARGO_TARGET_DIR="$repo/target/no-clang"
PATH="$nopath" cargo build --quiet
PATH="$nopath" cargo run --quiet
PATH="$nopath" DOCS_RS=1 cargo doc --quiet --no-deps -p podnet-datapath -p podnet-conntrack
echo "check-no-clang: ok (built, ran and documented without clang on PATH)"
