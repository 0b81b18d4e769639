#!/usr/bin/env bash
# The publishing check: every published crate's tarball is built and verified
# (`cargo package`), `cargo publish --dry-run` passes, and the unpacked
# tarballs build and pass their own tests (unit and doc tests; the privileged
# integration tests stay in the workspace) in a workspace of their own.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
crates=(podnet-bpf-build podnet-route podnet-conntrack podnet-datapath)
ex=(--exclude podnet --exclude testsupport --exclude podnet-fuzz)

cargo package --workspace "${ex[@]}" --quiet
cargo publish --workspace "${ex[@]}" --dry-run --quiet 2>&1 | { grep -i 'already exists' && exit 1 || true; }

work=$(mktemp -d /tmp/podnet-packages.XXXXXX)
trap 'rm -rf "$work"' EXIT
members=()
for c in "${crates[@]}"; do
  ver=$(cargo metadata --format-version 1 --no-deps |
    python3 -c "import json,sys; print(next(p['version'] for p in json.load(sys.stdin)['packages'] if p['name']=='$c'))")
  tar -xzf "target/package/$c-$ver.crate" -C "$work"
  members+=("\"$c-$ver\"")
done
{
  echo "[workspace]"
  echo "members = [$(IFS=,; echo "${members[*]}")]"
  echo "resolver = \"2\""
  echo "[patch.crates-io]"
  for c in "${crates[@]}"; do
    echo "$c = { path = \"$(ls -d "$work/$c-"*)\" }"
  done
} > "$work/Cargo.toml"
cp Cargo.lock "$work/"
(cd "$work" && CARGO_TARGET_DIR="$repo/target/packages" cargo test --quiet --workspace 2>&1 | grep -E '^test result|error|FAILED|panicked' )
echo "check-packages: ok (${crates[*]})"
