"""Turns the raw results of scripts/bench.sh into the benchmark table.

usage: report.py RESULTS_DIR MARKDOWN_OUT

RESULTS_DIR holds
  meta.tsv   key<TAB>value           (machine, versions, settings)
  runs.tsv   scenario<TAB>target<TAB>connections<TAB>round<TAB>output file<TAB>CPU ticks<TAB>ticks/s
             <TAB>% of the machine's CPU busy during the idle second before the measurement
             [<TAB>mode (pinned|cores)<TAB>fixed rate in requests/s ("" = closed loop)
             <TAB>VmRSS kB of the target's server after the measurement]
             The output file is wrk's text (closed loop) or oha's JSON (`.json`, open loop).
  rss.tsv    process<TAB>VmRSS kB<TAB>VmHWM kB<TAB>processes
  sse.jsonl  SSE time to first event, one JSON object per target (scripts/bench/sse_ttfe.py)
  *.log      mxgate's logs (summarised)
  sessions.tsv, session_store_reads.tsv   the "mxgate, N sessions" rows (report_sessions.py)
Prints the report (markdown, readable as plain text) and writes it to MARKDOWN_OUT, and draws the
plots (plot.py: cpu_per_request.png, latency_vs_rate.png) next to it when matplotlib is there.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import plot
import report_sessions

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
SCENARIO_TITLES = {
    "A": "Scenario A: static upstream (nginx `return 200`, small JSON), proxy overhead in isolation",
    "B": "Scenario B: real MXCP core, MCP `tools/call whoami` on one MCP session per target",
}
BUSY_LIMIT = 10  # % of the machine busy (with our servers idle) before a measurement: flag it
BASELINE = {"A": ("direct", "nginx"), "B": ("direct", "nginx")}
MODE_TITLES = {
    "pinned": "Pinned: one worker per proxy on one CPU, upstream and load generator on another",
    "cores": "All cores: every proxy with `BENCH_PROXY_THREADS` workers, nothing pinned",
}


def seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


@dataclass
class Run:
    scenario: str
    target: str
    connections: int
    round: int = 1
    background_pct: int | None = None
    rps: float = 0.0
    p50: float | None = None
    p99: float | None = None
    requests: int = 0
    non2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    mcp: dict[str, int] = field(default_factory=dict)
    cpu_us_per_req: float | None = None
    cpu_resolution_us: float | None = None  # one clock tick per request
    rps_range: tuple[float, float] | None = None  # min, max over rounds
    mode: str = "cores"
    rate: int | None = None  # open loop at this many requests/s; None: closed loop (wrk)
    rss_kb: int | None = None  # VmRSS of the target's server after the measurement
    raw: str = ""

    def key(self) -> tuple[str, str, str, int, int | None]:
        return (self.scenario, self.mode, self.target, self.connections, self.rate)

    def problems(self) -> str:
        parts = []
        if self.non2xx:
            parts.append(f"{self.non2xx} non-2xx")
        for k, v in self.socket_errors.items():
            if v:
                parts.append(f"{v} {k} err")
        if self.mcp:
            if self.mcp.get("jsonrpc_errors"):
                parts.append(f"{self.mcp['jsonrpc_errors']} JSON-RPC err")
            if self.mcp.get("unexpected"):
                parts.append(f"{self.mcp['unexpected']} unexpected body")
        return ", ".join(parts) or "0"


def parse_wrk(run: Run, text: str) -> Run:
    run.raw = text
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    run.rps = float(m.group(1)) if m else 0.0
    for pct, attr in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", text, re.M)
        if m:
            setattr(run, attr, seconds(m.group(1)))
    m = re.search(r"^\s+(\d+) requests in", text, re.M)
    run.requests = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    run.non2xx = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        run.socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"^mcp: (.*)$", text, re.M)
    if m:
        run.mcp = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}
    return run


def parse_oha(run: Run, text: str) -> Run:
    """oha's `--output-format json`: achieved rate, latency percentiles (latency-corrected), status
    codes and errors."""
    run.raw = text
    data = json.loads(text)
    run.rps = float(data["summary"].get("requestsPerSec") or 0.0)
    percentiles = data.get("latencyPercentiles") or {}
    run.p50, run.p99 = percentiles.get("p50"), percentiles.get("p99")
    statuses = {k: int(v) for k, v in (data.get("statusCodeDistribution") or {}).items()}
    run.requests = sum(statuses.values())
    run.non2xx = sum(v for k, v in statuses.items() if not k.startswith("2"))
    errors = {k: int(v) for k, v in (data.get("errorDistribution") or {}).items()}
    if errors:
        run.socket_errors = {"oha": sum(errors.values())}
    return run


def fmt_time(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def fmt_delta(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "n/a"
    d = a - b
    sign = "+" if d >= 0 else "−"
    return sign + fmt_time(abs(d))


def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "n/a"


def load(results: Path) -> tuple[dict[str, str], list[Run], list[list[str]]]:
    meta = {}
    for line in (results / "meta.tsv").read_text().splitlines():
        if "\t" in line:
            k, v = line.split("\t", 1)
            meta[k] = v
    runs = []
    runs_file = results / "runs.tsv"
    for line in runs_file.read_text().splitlines() if runs_file.exists() else []:
        fields = line.split("\t")
        scenario, target, conns, rnd, out_file, ticks, hz, bg = fields[:8]
        mode, rate, rss_kb = (fields[8:] + ["", "", ""])[:3] if len(fields) > 8 else ("cores", "", "")
        run = Run(scenario, target, int(conns), int(rnd), mode=mode or "cores",
                  rate=int(rate) if rate else None, rss_kb=int(rss_kb) if rss_kb else None)  # fmt: skip
        text = (results / out_file).read_text()
        run = parse_oha(run, text) if out_file.endswith(".json") else parse_wrk(run, text)
        run.background_pct = int(bg) if bg else None
        if ticks and run.requests:
            run.cpu_us_per_req = int(ticks) / int(hz) / run.requests * 1e6
            run.cpu_resolution_us = 1 / int(hz) / run.requests * 1e6
        runs.append(run)
    runs = median_rounds(runs)
    rss = []
    rss_file = results / "rss.tsv"
    for line in rss_file.read_text().splitlines() if rss_file.exists() else []:
        rss.append(line.split("\t"))
    return meta, runs, rss


def median_rounds(runs: list[Run]) -> list[Run]:
    """One run per (scenario, mode, target, connections, rate), in first-seen order. With several rounds each
    figure (req/s, p50, p99, CPU per request) is the median of that figure over the rounds, the
    req/s range is kept, and the counts of errors are summed."""
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.key(), []).append(r)
    out = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue

        def med(values: list) -> float | None:
            values = sorted(v for v in values if v is not None)
            if not values:
                return None
            mid = len(values) // 2
            return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

        first = group[0]
        m = Run(first.scenario, first.target, first.connections, 0, mode=first.mode, rate=first.rate)
        m.rss_kb = max((r.rss_kb for r in group if r.rss_kb is not None), default=None)
        m.rps = med([r.rps for r in group]) or 0.0
        m.p50 = med([r.p50 for r in group])
        m.p99 = med([r.p99 for r in group])
        m.cpu_us_per_req = med([r.cpu_us_per_req for r in group])
        m.cpu_resolution_us = med([r.cpu_resolution_us for r in group])
        m.background_pct = max((r.background_pct or 0) for r in group)
        m.requests = sum(r.requests for r in group)
        m.non2xx = sum(r.non2xx for r in group)
        for r in group:
            for k, v in r.socket_errors.items():
                m.socket_errors[k] = m.socket_errors.get(k, 0) + v
            for k, v in r.mcp.items():
                m.mcp[k] = m.mcp.get(k, 0) + v
        m.rps_range = (min(r.rps for r in group), max(r.rps for r in group))
        out.append(m)
    return out


def fmt_cpu(r: Run) -> str:
    if r.cpu_us_per_req is None:
        return "—"
    c = r.cpu_us_per_req
    text = f"{c / 1000:.1f} ms" if c >= 1000 else f"{c:.0f} µs" if c >= 10 else f"{c:.1f} µs"
    if r.cpu_resolution_us and r.cpu_resolution_us > 0.05 * max(r.cpu_us_per_req, 1e-9):
        text += f" (±{r.cpu_resolution_us:.0f})"
    return text


def fmt_rps(r: Run) -> str:
    text = f"{r.rps:,.0f}" if r.rps >= 100 else f"{r.rps:,.1f}"
    if r.rps_range:
        lo, hi = r.rps_range
        text += f" ({lo:,.0f}–{hi:,.0f})" if lo >= 100 else f" ({lo:,.1f}–{hi:,.1f})"
    return text


def log_summary(results: Path) -> list[str]:
    """mxgate's warnings and errors during the run, grouped by message."""
    out = []
    for path in sorted(results.glob("*.log")):
        text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(errors="replace"))
        counts: dict[str, int] = {}
        total = 0
        for line in text.splitlines():
            m = re.match(r"\S+\s+(ERROR|WARN)\s+(\S+?):\s+(.*)$", line)
            if not m:
                continue
            total += 1
            msg = re.sub(r"\d+", "N", m.group(3))
            msg = re.sub(r"(context: Peer: addr: )\S+", r"\1…", msg)
            key = f"{m.group(1)} {m.group(2)}: {msg[:170]}"
            counts[key] = counts.get(key, 0) + 1
        out.append(f"- `{path.stem}`: {total} WARN/ERROR lines" + (":" if counts else ""))
        for key, n in sorted(counts.items(), key=lambda kv: -kv[1])[:6]:
            out.append(f"  - {n} × `{key}`")
    return out


def fmt_mib(kb: int | None) -> str:
    return "—" if kb is None else f"{kb / 1024:.1f} MiB"


def cpu_ratio(r: Run, base: Run | None) -> str:
    if base is None or r is base or r.cpu_us_per_req is None or not base.cpu_us_per_req:
        return "—"
    return f"{r.cpu_us_per_req / base.cpu_us_per_req:.2f}×"


def table_rows(group: list[Run], direct_name: str, nginx_name: str, *, rss: bool, rate: bool) -> list[str]:
    """One markdown table: every target of one pass (same mode, connections or rate), with ratios
    against direct and against nginx."""
    by = {r.target: r for r in group}
    direct, nginx = by.get(direct_name), by.get(nginx_name)
    rps_head = "achieved req/s" if rate else "req/s"
    ratio_heads = "" if rate else "req/s vs direct | req/s vs nginx | "
    head = (f"| target | {rps_head} | p50 | p99 | {ratio_heads}CPU / req | CPU vs nginx "
            f"| added p50 / p99 vs direct | added p50 / p99 vs nginx |{' RSS |' if rss else ''} errors |")
    align = "|---|--:|--:|--:|" + ("" if rate else "--:|--:|") + "--:|--:|--:|--:|" + ("--:|" if rss else "") + "---|"
    out = [head, align]
    for r in group:
        ratios = ""
        if not rate:
            vs_direct = fmt_ratio(r.rps, direct.rps) if direct and r is not direct else "—"
            vs_nginx = fmt_ratio(r.rps, nginx.rps) if nginx and r is not nginx else "—"
            ratios = f"{vs_direct} | {vs_nginx} | "
        add_direct = (f"{fmt_delta(r.p50, direct.p50)} / {fmt_delta(r.p99, direct.p99)}"
                      if direct and r is not direct else "—")
        add_nginx = (f"{fmt_delta(r.p50, nginx.p50)} / {fmt_delta(r.p99, nginx.p99)}"
                     if nginx and r is not nginx and r is not direct else "—")
        cpu_vs = cpu_ratio(r, nginx) if r is not direct else "—"
        mark = " †" if (r.background_pct or 0) > BUSY_LIMIT else ""
        out.append(f"| {r.target}{mark} | {fmt_rps(r)} | {fmt_time(r.p50)} | {fmt_time(r.p99)} | {ratios}"
                   f"{fmt_cpu(r)} | {cpu_vs} | {add_direct} | {add_nginx} |"
                   + (f" {fmt_mib(r.rss_kb)} |" if rss else "") + f" {r.problems()} |")
    out.append("")
    return out


def scenario_table(scenario: str, runs: list[Run]) -> list[str]:
    """The tables of one scenario and mode: closed loop by connections (throughput first), then
    open loop by rate."""
    direct_name, nginx_name = BASELINE[scenario]
    out = []
    closed = [r for r in runs if r.rate is None]
    for conns in sorted({r.connections for r in closed}, reverse=True):
        group = [r for r in closed if r.connections == conns]
        label = "single connection (unloaded latency)" if conns == 1 else f"{conns} connections (throughput)"
        out += [f"**{label}, closed loop (wrk)**", ""]
        out += table_rows(group, direct_name, nginx_name, rss=conns != 1, rate=False)
    opened = [r for r in runs if r.rate is not None]
    for rate in sorted({r.rate for r in opened if r.rate is not None}):
        group = [r for r in opened if r.rate == rate]
        out += [f"**{rate:,} requests/s, open loop (oha, latency-corrected, {group[0].connections} connections)**", ""]
        out += table_rows(group, direct_name, nginx_name, rss=False, rate=True)
    return out


def verdicts(runs: list[Run]) -> list[str]:
    """The design's performance budget and issue 10's targets, checked against this run."""
    out = []

    def get(scenario: str, mode: str, target: str, conns: int | None, rate: int | None = None) -> Run | None:
        c = [r for r in runs if r.scenario == scenario and r.mode == mode and r.target == target
             and r.rate == rate and (rate is not None or (r.connections == 1) == (conns == 1))]  # fmt: skip
        return c[0] if c else None

    for scenario in ("A", "B"):
        modes = list(dict.fromkeys(r.mode for r in runs if r.scenario == scenario))
        for mode in modes:
            label = f"{scenario}, {mode}" if scenario == "A" else scenario
            for single in (1, None):
                d, n, g = (get(scenario, mode, t, single) for t in ("direct", "nginx", "mxgate"))
                if not (d and g and d.p50 is not None and g.p50 is not None):
                    continue
                where = f"{label}, {'1 connection' if single else f'{g.connections} connections'}"
                a50, a99 = g.p50 - d.p50, (g.p99 or 0) - (d.p99 or 0)
                ok50, ok99 = a50 <= 50e-6, a99 <= 1e-3
                line = (f"- {where}: added latency mxgate vs direct p50 {fmt_delta(g.p50, d.p50)} "
                        f"(budget ≤ 50 µs: {'met' if ok50 else 'NOT met'}), p99 {fmt_delta(g.p99, d.p99)} "
                        f"(budget ≤ 1 ms: {'met' if ok99 else 'NOT met'})")
                if n and not single:
                    ok = g.rps >= n.rps
                    line += (f"; throughput mxgate/nginx {g.rps / n.rps:.2f} "
                             f"(budget ≥ 1.00: {'met' if ok else 'NOT met'})")
                out.append(line)
                off = get(scenario, mode, "mxgate, auth off", single)
                if off and off.p50 is not None:
                    cpu = ""
                    if g.cpu_us_per_req is not None and off.cpu_us_per_req is not None:
                        cpu = f", CPU/req {g.cpu_us_per_req - off.cpu_us_per_req:+.1f} µs"
                    out.append(f"  - of which authentication (mxgate vs mxgate auth off): p50 "
                               f"{fmt_delta(g.p50, off.p50)}, p99 {fmt_delta(g.p99, off.p99)}, "
                               f"req/s {fmt_ratio(g.rps, off.rps)}{cpu}")
            if scenario == "A":
                out += issue_targets(mode, runs, get)
    return out


def issue_targets(mode: str, runs: list[Run], get) -> list[str]:
    """Issue 10's targets for scenario A in one mode: mxgate (full auth) ≤ 1.0× nginx's CPU per
    request and ≤ 1.1× bare Pingora's; added p50 on one connection ≤ nginx's; p99 at the highest
    fixed rate ≤ nginx's + 0.5 ms."""
    out = []
    g, n, bare = (get("A", mode, t, None) for t in ("mxgate", "nginx", "bare Pingora"))
    parts = []
    for base, name, limit in ((n, "nginx", 1.0), (bare, "bare Pingora", 1.1)):
        if g and base and g.cpu_us_per_req is not None and base.cpu_us_per_req:
            ratio = g.cpu_us_per_req / base.cpu_us_per_req
            parts.append(f"CPU/req at {g.connections} connections {ratio:.2f}× {name}'s "
                         f"(target ≤ {limit:.1f}×: {'met' if ratio <= limit else 'NOT met'})")
    d1, n1, g1 = (get("A", mode, t, 1) for t in ("direct", "nginx", "mxgate"))
    if d1 and n1 and g1 and None not in (d1.p50, n1.p50, g1.p50):
        ok = g1.p50 - d1.p50 <= n1.p50 - d1.p50
        parts.append(f"added p50 on 1 connection {fmt_delta(g1.p50, d1.p50)} vs nginx's "
                     f"{fmt_delta(n1.p50, d1.p50)} (target ≤ nginx's: {'met' if ok else 'NOT met'})")
    top = max((r.rate for r in runs if r.scenario == "A" and r.mode == mode and r.rate), default=None)
    if top:
        gr, nr = get("A", mode, "mxgate", None, top), get("A", mode, "nginx", None, top)
        if gr and nr and gr.p99 is not None and nr.p99 is not None:
            ok = gr.p99 <= nr.p99 + 0.5e-3
            parts.append(f"p99 at {top:,} req/s {fmt_time(gr.p99)} vs nginx's {fmt_time(nr.p99)} "
                         f"(target ≤ nginx + 0.5 ms: {'met' if ok else 'NOT met'})")
    if parts:
        out.append(f"- A, {mode}, issue 10's targets for mxgate: " + "; ".join(parts))
    return out


@dataclass
class SseRow:
    """SSE time to first event through one target (scripts/bench/sse_ttfe.py's JSON line)."""

    target: str
    requests: int
    ttfe_s: list[float]
    total_s: list[float]
    errors: int
    error_samples: list[str]

    def ttfe(self, q: float) -> float | None:
        return percentile(self.ttfe_s, q)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def load_sse(results: Path) -> list[SseRow]:
    path = results / "sse.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        d = json.loads(line)
        rows.append(SseRow(d["target"], int(d["requests"]), [float(x) for x in d["ttfe_s"]],
                           [float(x) for x in d["total_s"]], int(d["errors"]), list(d.get("error_samples", []))))  # fmt: skip
    return rows


def sse_section(results: Path, note: str | None) -> list[str]:
    """The "SSE time to first event" table: p50/p99 from sending the request to the first
    `data:` line, added against direct and against nginx, and the whole stream's p50."""
    rows = load_sse(results)
    if not rows:
        return []
    by = {r.target: r for r in rows}
    direct, nginx = by.get("direct"), by.get("nginx")
    out = ["## SSE time to first event", ""]
    if note:
        out += [note, ""]
    out += ["| target | first event p50 | p99 | added p50 / p99 vs direct | added p50 / p99 vs nginx "
            "| end of stream p50 | requests | errors |",
            "|---|--:|--:|--:|--:|--:|--:|---|"]  # fmt: skip
    for r in rows:
        add_direct = (f"{fmt_delta(r.ttfe(50), direct.ttfe(50))} / {fmt_delta(r.ttfe(99), direct.ttfe(99))}"
                      if direct and r is not direct else "—")
        add_nginx = (f"{fmt_delta(r.ttfe(50), nginx.ttfe(50))} / {fmt_delta(r.ttfe(99), nginx.ttfe(99))}"
                     if nginx and r is not nginx and r is not direct else "—")
        errors = str(r.errors) + (f" ({'; '.join(r.error_samples)})" if r.errors else "")
        out.append(f"| {r.target} | {fmt_time(r.ttfe(50))} | {fmt_time(r.ttfe(99))} | {add_direct} | {add_nginx} "
                   f"| {fmt_time(percentile(r.total_s, 50))} | {len(r.ttfe_s)} | {errors} |")
    out.append("")
    return out


def sse_verdicts(rows: list[SseRow]) -> list[str]:
    """Issue 10's SSE target: mxgate's first event ≤ direct's + 1 ms (p50 and p99)."""
    by = {r.target: r for r in rows}
    d, g = by.get("direct"), by.get("mxgate")
    if not (d and g) or None in (d.ttfe(50), g.ttfe(50), d.ttfe(99), g.ttfe(99)):
        return []
    parts = []
    for q in (50, 99):
        added = (g.ttfe(q) or 0) - (d.ttfe(q) or 0)
        parts.append(f"p{q} {fmt_delta(g.ttfe(q), d.ttfe(q))} ({'met' if added <= 1e-3 else 'NOT met'})")
    return ["- SSE, issue 10's target for mxgate: first event ≤ direct + 1 ms: " + ", ".join(parts)
            + f" over {len(g.ttfe_s)} requests" + (f"; {g.errors} errors" if g.errors else "")]


def peer_verdicts(runs: list[Run]) -> list[str]:
    """Scenario B: mxgate against FastMCP's OAuth proxy rows, the MCP-native peer (both verify a
    token on every call)."""
    out = []
    closed = [r for r in runs if r.scenario == "B" and r.rate is None]
    for single in (False, True):
        g = next((r for r in closed if r.target == "mxgate" and (r.connections == 1) == single), None)
        peers = [r for r in closed if r.target.startswith("FastMCP") and (r.connections == 1) == single]
        for f in peers if g else []:
            cpu = ""
            if g.cpu_us_per_req is not None and f.cpu_us_per_req:
                cpu = f", CPU/req {fmt_cpu(g)} vs {fmt_cpu(f)} ({g.cpu_us_per_req / f.cpu_us_per_req:.3f}×)"
            out.append(f"- B, {g.connections} connection{'s' if g.connections != 1 else ''}: mxgate against "
                       f"{f.target}: req/s {fmt_ratio(g.rps, f.rps)}, p50 {fmt_time(g.p50)} vs {fmt_time(f.p50)}{cpu}")
    return out


def render(meta: dict[str, str], runs: list[Run], rss: list[list[str]]) -> str:
    lines = ["# mxgate benchmark", ""]
    lines.append(f"- date: {meta.get('date', '?')}")
    lines.append(f"- machine: {meta.get('nproc', '?')} CPUs ({meta.get('cpu', '?')}), "
                 f"{meta.get('ram', '?')} RAM, Linux {meta.get('kernel', '?')}")
    lines.append(f"- versions: {meta.get('versions', '?')}")
    lines.append(f"- load average: {meta.get('loadavg', '?')}")
    bgs = [r.background_pct for r in runs if r.background_pct is not None]
    if bgs:
        flagged = [r for r in runs if (r.background_pct or 0) > BUSY_LIMIT]
        lines.append(f"- other load: in the second before each measurement (our servers idle) the CPUs were "
                     f"{min(bgs)}–{max(bgs)} % busy"
                     + (f"; rows marked † had more than {BUSY_LIMIT} % (other processes on the machine), "
                        "treat them with care" if flagged else ""))
    lines.append(f"- load: {meta.get('load', '?')}")
    lines.append(f"- servers: {meta.get('servers', '?')}")
    if meta.get("skipped"):
        lines.append(f"- **left out** (BENCH_SKIP_MISSING=1, tool missing): {meta['skipped'].replace(';', '; ')}")
    lines.append(f"- NOTE: the load generator and every server share the same {meta.get('nproc', '?')} CPUs, so "
                 "the numbers are lower than on separate machines; compare rows of one run, not across machines.")
    lines.append("")
    lines.append("Closed-loop latencies are wrk's percentiles; open-loop ones are oha's at a fixed rate, "
                 "counted from when each request was due (latency correction), so a proxy that stalls "
                 "cannot hide its queue. `added` = this row minus the baseline at the same percentile; at many "
                 "connections that mostly reflects throughput, the single-connection and fixed-rate rows show "
                 "per-request overhead. `CPU / req` = CPU time (user+system) that the row's own server used "
                 "during the measured interval (the proxy for proxy rows, the upstream for direct rows; all "
                 "processes and threads, from /proc/PID/stat) divided by the requests completed; (±x) is one "
                 "clock tick per request when that is coarse. `CPU vs nginx` is that figure over nginx's. "
                 "`RSS` = VmRSS of the row's server (all its processes) at the end of its throughput pass. "
                 "`errors` counts non-2xx responses, socket errors and, for MCP, responses that were a "
                 "JSON-RPC error or lacked the expected user.")
    lines.append("")
    for scenario in ("A", "B"):
        srun = [r for r in runs if r.scenario == scenario]
        if not srun:
            continue
        lines.append(f"## {SCENARIO_TITLES[scenario]}")
        lines.append("")
        for key in (f"scenario_{scenario}", f"scenario_{scenario}_fastmcp"):
            if meta.get(key):
                lines += [meta[key], ""]
        modes = list(dict.fromkeys(r.mode for r in srun))
        for mode in modes:
            if scenario == "A":
                lines.append(f"### {MODE_TITLES.get(mode, mode)}")
                lines.append("")
                if meta.get(f"mode_{mode}"):
                    lines += [meta[f"mode_{mode}"], ""]
            lines += scenario_table(scenario, [r for r in srun if r.mode == mode])
        store_notes = [meta[k] for k in ("stores", "login_cost") if scenario == "A" and meta.get(k)]
        if store_notes:
            lines += [f"- {note}." for note in store_notes] + [""]
    results = Path(meta.get("_results", "."))
    lines += report_sessions.section(results, runs, fmt_time, fmt_cpu)
    lines += sse_section(results, meta.get("sse"))
    v = (
        verdicts(runs)
        + peer_verdicts(runs)
        + sse_verdicts(load_sse(results))
        + report_sessions.target_lines(results, runs)
    )
    if v:
        lines.append("## Budget (DESIGN.md: added ≤ 50 µs p50, ≤ 1 ms p99; throughput ≥ nginx) and issue 10's targets")
        lines.append("")
        lines += v
        lines.append("")
    logs = log_summary(Path(meta.get("_results", ".")))
    if logs:
        lines.append("## mxgate log during the run (MXGATE_LOG=warn)")
        lines.append("")
        lines.append("wrk closes its connections with requests still in flight when each warm-up and "
                     "measurement ends; mxgate logs such a client hang-up at debug level only, so any line "
                     "here is worth a look.")
        lines.append("")
        lines += logs
        lines.append("")
    if rss:
        lines.append("## Resident memory after the run")
        lines.append("")
        lines.append("Scenario A's proxies: after all the measurements of their mode; scenario B's and the "
                     "upstream: at the end of the run.")
        lines.append("")
        lines.append("| process | RSS now | peak RSS (VmHWM) | processes |")
        lines.append("|---|--:|--:|--:|")
        for name, now_kb, peak_kb, procs in rss:
            lines.append(f"| {name} | {int(now_kb) / 1024:.1f} MiB | {int(peak_kb) / 1024:.1f} MiB | {procs} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    results, out = Path(sys.argv[1]), Path(sys.argv[2])
    meta, runs, rss = load(results)
    meta["_results"] = str(results)
    text = render(meta, runs, rss)
    title = f"{meta.get('date', '?')}, {meta.get('nproc', '?')} CPUs ({meta.get('cpu', '?')})"
    plots = plot.draw(runs, out.parent, title)
    if plots:
        text += "\n## Plots\n\n" + "\n".join(f"![{name}]({name})" for name in plots) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
