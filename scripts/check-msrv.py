#!/usr/bin/env python3
"""Checks that each workspace crate's `rust-version` is true for its locked
dependencies: no crate it needs to build (normal and build dependencies, all
features of the crate on, transitively, as `cargo tree` resolves them for it
alone) may declare a newer `rust-version`. Only one
toolchain can be installed on these machines, so this is what can be checked;
clippy's `incompatible_msrv` lint (on in CI with -D warnings) covers the
crates' own use of the standard library.

Usage: scripts/check-msrv.py   (exit 1 and a list when a claim is false)
"""
import json
import subprocess
import sys


def version(v):
    return tuple(int(x) for x in (v or "0").split("."))


def main():
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--locked"]))
    rust_version = {(p["name"], p["version"]): p.get("rust_version") for p in meta["packages"]}
    members = [p for p in meta["packages"] if p["id"] in meta["workspace_members"]]
    bad = 0
    for pkg in members:
        claim = pkg.get("rust_version")
        if claim is None or pkg.get("publish") == []:
            continue  # unpublished crates (the root package, fixtures, fuzz bodies)
        # What a user of this crate builds on Linux: its normal and build
        # dependencies with every feature of the crate on, resolved for it alone.
        tree = subprocess.check_output(
            ["cargo", "tree", "--locked", "-p", pkg["name"], "--all-features", "-e", "normal,build",
             "--prefix", "none", "--format", "{p}"], text=True)
        deps = set()
        for line in tree.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] != pkg["name"]:
                deps.add((parts[0], parts[1].lstrip("v")))
        worst = max(deps, key=lambda d: version(rust_version.get(d)), default=None)
        need = rust_version.get(worst) if worst else None
        if version(need) > version(claim):
            bad += 1
            print(f"{pkg['name']}: rust-version {claim} is false: {worst[0]} {worst[1]} needs {need}")
        else:
            print(f"{pkg['name']}: rust-version {claim} ok ({len(deps)} dependencies, highest "
                  f"{need or 'none'})")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
