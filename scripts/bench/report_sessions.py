"""The "mxgate, N sessions" rows of scenario A in the benchmark report (scripts/bench/sessions.sh):
memory, CPU and latency of mxgate with N live sessions next to the one-session mxgate row, and
issue 10's memory target.

Reads, from the raw results directory:
  sessions.tsv              mode<TAB>target<TAB>sessions<TAB>seeding s<TAB>VmRSS kB at start-up
                            <TAB>VmRSS kB after priming<TAB>the prime's summary line
  session_store_reads.tsv   mode<TAB>target<TAB>connections<TAB>round<TAB>store reads in the pass
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

RSS_TARGET_MIB = 50  # issue 10: RSS ≤ 50 MiB with 100k sessions
RSS_TARGET_SESSIONS = 100_000
ONE_SESSION_ROW = "mxgate"


@dataclass
class SessionRow:
    mode: str
    target: str
    sessions: int
    seed_seconds: float | None = None
    rss_start_kb: int | None = None
    rss_primed_kb: int | None = None
    primed_tokens: int | None = None
    store_reads: dict[int, int] = field(default_factory=dict)  # connections -> reads over all rounds


def load(results: Path) -> list[SessionRow]:
    rows: dict[tuple[str, str], SessionRow] = {}
    path = results / "sessions.tsv"
    for line in path.read_text().splitlines() if path.exists() else []:
        mode, target, count, seed_s, rss_start, rss_primed, prime = (line.split("\t") + [""] * 7)[:7]
        m = re.search(r"tokens=(\d+)", prime)
        rows[(mode, target)] = SessionRow(
            mode, target, int(count), float(seed_s) if seed_s else None,
            int(rss_start) if rss_start else None, int(rss_primed) if rss_primed else None,
            int(m.group(1)) if m else None)  # fmt: skip
    path = results / "session_store_reads.tsv"
    for line in path.read_text().splitlines() if path.exists() else []:
        mode, target, conns, _round, reads = line.split("\t")[:5]
        row = rows.get((mode, target))
        if row is not None and reads:
            row.store_reads[int(conns)] = row.store_reads.get(int(conns), 0) + int(reads)
    return list(rows.values())


def mib(kb: int | None) -> str:
    return "—" if kb is None else f"{kb / 1024:.1f} MiB"


def fmt_count(n: int) -> str:
    return f"{n:,}"


def worst_rss_kb(row: SessionRow, throughput_rss_kb: int | None) -> int | None:
    """The most memory seen with every session live: after priming or after the throughput pass,
    whichever is higher."""
    values = [v for v in (row.rss_primed_kb, throughput_rss_kb) if v is not None]
    return max(values) if values else None


def section(results: Path, runs: list, fmt_time, fmt_cpu) -> list[str]:
    """The report's section on these rows, per mode: one table with the one-session mxgate row
    first. `runs` are report.py's (median-merged) runs; `fmt_time` and `fmt_cpu` its formatters."""
    rows = load(results)
    if not rows:
        return []

    def run(mode: str, target: str, single: bool):
        c = [r for r in runs if r.scenario == "A" and r.mode == mode and r.target == target
             and r.rate is None and (r.connections == 1) == single]  # fmt: skip
        return c[0] if c else None

    out = ["## mxgate with many live sessions (scenario A)", ""]
    misses = False
    for mode in dict.fromkeys(r.mode for r in rows):
        out += [f"**{mode}**", "",
                "| target | live sessions | seeded in | RSS at start-up | RSS after priming | RSS after throughput pass "
                "| req/s | CPU / req | p50 / p99, 1 conn. | store reads / req (throughput / 1 conn.) |",
                "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
        one = run(mode, ONE_SESSION_ROW, False)
        if one:
            one1 = run(mode, ONE_SESSION_ROW, True)
            lat = f"{fmt_time(one1.p50)} / {fmt_time(one1.p99)}" if one1 else "—"
            out.append(f"| {ONE_SESSION_ROW} (the bench's own login) | 1 | — | — | — | {mib(one.rss_kb)} | "
                       f"{one.rps:,.0f} | {fmt_cpu(one)} | {lat} | — |")
        for row in (r for r in rows if r.mode == mode):
            big, single = run(mode, row.target, False), run(mode, row.target, True)
            reads = []
            for r in (big, single):
                n = row.store_reads.get(r.connections) if r else None
                reads.append("—" if n is None or not r.requests else f"{n / r.requests:.3f}")
                misses |= n is not None and bool(r and r.requests) and n / r.requests > 0.001
            seeded = f"{row.seed_seconds:.0f} s" if row.seed_seconds is not None else "—"
            lat = f"{fmt_time(single.p50)} / {fmt_time(single.p99)}" if single else "—"
            out.append(f"| {row.target} | {fmt_count(row.sessions)} | {seeded} | {mib(row.rss_start_kb)} | "
                       f"{mib(row.rss_primed_kb)} | {mib(big.rss_kb if big else None)} | "
                       f"{f'{big.rps:,.0f}' if big else '—'} | {fmt_cpu(big) if big else '—'} | {lat} | "
                       f"{' / '.join(reads)} |")
        out.append("")
    out.append("RSS at start-up: after the store purge that runs at start-up (it reads every entry), the store "
               "full and nothing cached. After priming: each token used once (the token cache holds what "
               "fits `limits.token_cache_memory`). req/s and CPU / req: the throughput pass; the one-session row "
               "sends one token (wrk's static request), the session rows cycle through their tokens (wrk "
               "formats each request in Lua: the load generator works harder, mxgate's CPU / req does not "
               "include it).")
    if misses:
        out.append("")
        out.append("**Store reads per request above 0 mean cache misses**: the token cache holds what fits "
                   "`limits.token_cache_memory` (8 MiB by default, about 2.5 KiB a session) and at most "
                   "`limits.max_cached_tokens` tokens; when it is full it drops the expired entries and then "
                   "half of the rest, so a load cycling evenly through more sessions than fit keeps missing. "
                   "Each miss reads the token and the session (decrypting it) and mints a new assertion: "
                   "those rows measure that path, not the cached hot path; the miss rate is about "
                   "reads / req ÷ 2.")
    out.append("")
    return out


def target_lines(results: Path, runs: list) -> list[str]:
    """Issue 10's memory target: RSS ≤ 50 MiB with 100k sessions, per mode."""
    out = []
    for row in load(results):
        if row.sessions != RSS_TARGET_SESSIONS:
            continue
        big = [r for r in runs if r.scenario == "A" and r.mode == row.mode and r.target == row.target
               and r.rate is None and r.connections != 1]  # fmt: skip
        worst = worst_rss_kb(row, big[0].rss_kb if big else None)
        if worst is None:
            continue
        over = worst / 1024 - RSS_TARGET_MIB
        verdict = "met" if over <= 0 else f"NOT met, {over:.1f} MiB over ({worst / 1024 / RSS_TARGET_MIB:.1f}×)"
        out.append(f"- A, {row.mode}, issue 10's memory target: RSS with {fmt_count(row.sessions)} live sessions, "
                   f"all of them in use: {mib(worst)} (at start-up {mib(row.rss_start_kb)}) "
                   f"(target ≤ {RSS_TARGET_MIB} MiB: {verdict})")
    return out
