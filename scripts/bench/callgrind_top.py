"""Reads a callgrind output file and prints instructions per request: the total, then the self
(exclusive) cost grouped by crate or library, then the costliest functions.
usage: callgrind_top.py <callgrind.out> <requests> [functions]
The first line is `instructions <per request>` (scripts/bench/profile.sh reads it)."""

from __future__ import annotations

import collections
import re
import sys

NAMED = re.compile(r"\((\d+)\)(?: (.*))?")
CRATE = re.compile(r"index\.crates\.io-[^/]+/([A-Za-z0-9_\-]+?)-\d")


def self_costs(path: str) -> collections.Counter:
    """Self cost per (function, file, object); call lines (inclusive costs) are skipped."""
    names: dict[str, dict[str, str]] = {"fn": {}, "fl": {}, "ob": {}}
    kinds = {"fn": "fn", "fl": "fl", "fi": "fl", "fe": "fl", "ob": "ob", "cfn": "fn", "cfl": "fl", "cfi": "fl", "cob": "ob"}
    current = {"fn": "?", "fl": "?", "fi": "?", "ob": "?"}
    costs: collections.Counter = collections.Counter()
    after_call = False
    with open(path, errors="replace") as f:
        for line in f:
            key, _, rest = line.rstrip("\n").partition("=")
            if key in kinds and rest:
                match = NAMED.match(rest)
                value = rest
                if match:
                    table = names[kinds[key]]
                    if match.group(2) is not None:
                        table[match.group(1)] = match.group(2)
                    value = table.get(match.group(1), "?")
                if key in ("fn", "fl", "ob"):
                    current[key] = value
                    if key in ("fn", "fl"):
                        current["fi"] = current["fl"]
                elif key in ("fi", "fe"):
                    current["fi"] = value
                continue
            if key == "calls":
                after_call = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                fields = line.split()
                if not after_call and len(fields) >= 2:
                    costs[(current["fn"], current["fi"], current["ob"])] += int(fields[1])
                after_call = False
    return costs


def group(file: str, obj: str) -> str:
    match = CRATE.search(file)
    if match:
        return match.group(1)
    if "/src/" in file and ("/work/" in file or "/bench/" in file):
        return "own code (mxgate / bare-pingora)"
    if "vendor/httparse" in file:
        return "httparse (vendored)"
    if file.startswith("/rustc/"):
        return "Rust std (inlined)"
    return obj.rsplit("/", 1)[-1]


def main() -> None:
    path, requests = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    costs = self_costs(path)
    total = sum(costs.values())
    by_group: collections.Counter = collections.Counter()
    by_function: collections.Counter = collections.Counter()
    for (function, file, obj), cost in costs.items():
        by_group[group(file, obj)] += cost
        by_function[function[:160]] += cost
    print(f"instructions {total // requests}")
    print(f"\nper request, by crate or library (self cost; {requests} requests):")
    for name, cost in by_group.most_common(15):
        print(f"{cost // requests:>10,}  {100 * cost / total:5.1f}%  {name}")
    print("\ncostliest functions (self cost per request):")
    for name, cost in by_function.most_common(top):
        print(f"{cost // requests:>10,}  {name}")


if __name__ == "__main__":
    main()
