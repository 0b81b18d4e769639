#!/usr/bin/env python3
"""One vocabulary for the crate family: no two of the published crates export,
at their root, an item of the same name (so `use podnet_route::*;
use podnet_conntrack::*; use podnet_datapath::*;` never meets an ambiguous
name), except each crate's own `Error` and `Result`, which are named by path.

Reads the root-level items from `cargo doc`'s all.html of each crate.
Usage: scripts/check-names.py   (exit 1 and the clashes when there are any)
"""
import os
import re
import subprocess
import sys

CRATES = ["podnet_route", "podnet_conntrack", "podnet_datapath"]
ALLOWED = {"Error", "Result"}


def main():
    subprocess.check_call(
        ["cargo", "doc", "--quiet", "--no-deps"] + sum((["-p", c.replace("_", "-")] for c in CRATES), []))
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    names = {}
    for crate in CRATES:
        html = open(os.path.join(target, "doc", crate, "all.html"), encoding="utf-8").read()
        # Root items link as "struct.Name.html"; items in modules as "mod/struct.Name.html".
        for kind, name in re.findall(r'href="(struct|enum|trait|fn|type|constant|macro|static|union)\.([A-Za-z0-9_]+)\.html"', html):
            names.setdefault(name, set()).add(crate)
    clashes = {n: sorted(c) for n, c in names.items() if len(c) > 1 and n not in ALLOWED}
    for n, c in sorted(clashes.items()):
        print(f"{n}: exported by {', '.join(c)}")
    if clashes:
        sys.exit(1)
    print(f"check-names: ok ({len(names)} root names over {len(CRATES)} crates, no clash)")


if __name__ == "__main__":
    main()
