#!/usr/bin/env python3
"""Checks that each workspace crate's `rust-version` is true for its locked
dependencies: no crate it needs to build (normal and build dependencies, all
features on, transitively) may declare a newer `rust-version`. Only one
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
        ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"]))
    pkgs = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    bad = 0
    for member in meta["workspace_members"]:
        claim = pkgs[member].get("rust_version")
        if claim is None:
            continue
        seen, stack = set(), [member]
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            for dep in nodes[pid]["deps"]:
                if any(k["kind"] in (None, "build") for k in dep["dep_kinds"]):
                    stack.append(dep["pkg"])
        seen.discard(member)
        worst = max(seen, key=lambda i: version(pkgs[i].get("rust_version")), default=None)
        need = pkgs[worst].get("rust_version") if worst else None
        name = pkgs[member]["name"]
        if version(need) > version(claim):
            bad += 1
            print(f"{name}: rust-version {claim} is false: {pkgs[worst]['name']} "
                  f"{pkgs[worst]['version']} needs {need}")
        else:
            print(f"{name}: rust-version {claim} ok ({len(seen)} dependencies, highest "
                  f"{need or 'none'})")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
