"""The benchmark's plots (PNG), drawn with matplotlib from report.py's runs, so that
`report.py target/bench/latest.raw out.md` draws them again from the raw results:

  cpu_per_request.png   CPU µs per request of every scenario A row in the throughput pass, pinned
                        and all cores side by side (horizontal bars)
  latency_vs_rate.png   p50 and p99 of every scenario A row against the offered load: one
                        connection (about unloaded), then each fixed rate (open loop); one line
                        per row, one panel per mode and percentile

Both go next to the markdown report. matplotlib lives in the bench's Python environment
(target/py/bench, `MXGATE_SETUP_BENCH=1 scripts/setup.sh`); `draw` says so when it is missing.
"""

from __future__ import annotations

from pathlib import Path

CPU_PLOT = "cpu_per_request.png"
LATENCY_PLOT = "latency_vs_rate.png"
MODE_LABELS = {"pinned": "pinned (one worker, own CPU)", "cores": "all cores"}
MODE_COLOURS = {"pinned": "#1f77b4", "cores": "#ff7f0e"}
DPI = 120


def scenario_a(runs: list) -> list:
    return [r for r in runs if r.scenario == "A"]


def targets_in_order(runs: list) -> list[str]:
    return list(dict.fromkeys(r.target for r in runs))


def draw(runs: list, out_dir: Path, title: str) -> list[str]:
    """Writes the plots into `out_dir`; returns the files written, or says why there are none."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots: not drawn, matplotlib is missing here (MXGATE_SETUP_BENCH=1 scripts/setup.sh installs it "
              "in target/py/bench; run report.py with target/py/bench/bin/python)")
        return []
    runs = scenario_a(runs)
    if not runs:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in ((CPU_PLOT, cpu_per_request), (LATENCY_PLOT, latency_vs_rate)):
        fig = plot(plt, runs, title)
        if fig is None:
            continue
        fig.savefig(out_dir / name, dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        written.append(name)
    return written


def cpu_per_request(plt, runs: list, title: str):
    """Horizontal bars: CPU µs per request of each row's throughput pass, one bar per mode."""
    closed = [r for r in runs if r.rate is None and r.connections != 1 and r.cpu_us_per_req is not None]
    if not closed:
        return None
    targets = targets_in_order(closed)
    modes = list(dict.fromkeys(r.mode for r in closed))
    by = {(r.mode, r.target): r for r in closed}
    height = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(targets) * max(1, len(modes) * 0.75) + 1.6))
    for k, mode in enumerate(modes):
        ys, values, labels = [], [], []
        for i, target in enumerate(targets):
            r = by.get((mode, target))
            if r is None:
                continue
            ys.append(i + (k - (len(modes) - 1) / 2) * height)
            values.append(r.cpu_us_per_req)
            labels.append(f"{r.cpu_us_per_req:.0f} µs" if r.cpu_us_per_req >= 10 else f"{r.cpu_us_per_req:.1f} µs")
        connections = next(r.connections for r in closed if r.mode == mode)
        bars = ax.barh(ys, values, height=height * 0.95, color=MODE_COLOURS.get(mode),
                       label=f"{MODE_LABELS.get(mode, mode)}, {connections} connections")  # fmt: skip
        ax.bar_label(bars, labels=labels, padding=3, fontsize=8)
    ax.set_yticks(range(len(targets)), targets)
    ax.invert_yaxis()
    ax.set_xlabel("CPU time of the row's server per request (µs, user + system; lower is better)")
    ax.set_title(f"CPU per request, scenario A (static upstream)\n{title}", fontsize=10)
    ax.margins(x=0.15)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def latency_vs_rate(plt, runs: list, title: str):
    """p50 and p99 against the offered load (1 connection, then each fixed rate), per mode."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _pos: f"{value:g}")  # 0.1, 1, 10: no 10^x on a log axis
    # Between the decades only 2 and 5 (0.2, 0.5, 2, 5 …), so the labels do not run together.
    some = FuncFormatter(lambda value, _pos: f"{value:g}" if f"{value:.0e}"[0] in "25" else "")
    rates = sorted({r.rate for r in runs if r.rate is not None})
    modes = list(dict.fromkeys(r.mode for r in runs))
    points = ["1 connection\n(≈ unloaded)"] + [f"{rate:,} req/s\n(open loop)" for rate in rates]
    # Rows without a fixed-rate pass (the "N sessions" rows: oha sends one token) would be a
    # lone point: left out, and said so under the plot.
    with_rates = {r.target for r in runs if r.rate is not None}
    targets = [t for t in targets_in_order(runs) if not rates or t in with_rates]
    left_out = [t for t in targets_in_order(runs) if t not in targets]
    if not targets:
        return None
    fig, axes = plt.subplots(len(modes), 2, figsize=(12, 4.2 * len(modes) + 0.8), squeeze=False, sharex=True)
    colours = plt.get_cmap("tab10" if len(targets) <= 10 else "tab20")
    markers = "osD^v<>ph*"
    for row, mode in enumerate(modes):
        for col, (percentile, attr) in enumerate((("p50", "p50"), ("p99", "p99"))):
            ax = axes[row][col]
            for i, target in enumerate(targets):
                series = [next((r for r in runs if r.mode == mode and r.target == target and r.rate is None
                                and r.connections == 1), None)]  # fmt: skip
                series += [next((r for r in runs if r.mode == mode and r.target == target and r.rate == rate), None)
                           for rate in rates]  # fmt: skip
                xs = [x for x, r in enumerate(series) if r is not None and getattr(r, attr) is not None]
                ys = [getattr(series[x], attr) * 1e3 for x in xs]
                if xs:
                    ax.plot(xs, ys, marker=markers[i % len(markers)], color=colours(i), label=target, linewidth=1.4)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(some)
            ax.tick_params(axis="y", which="minor", labelsize=7)
            ax.set_title(f"{percentile}, {MODE_LABELS.get(mode, mode)}", fontsize=10)
            ax.set_ylabel(f"{percentile} latency (ms, log scale)")
            ax.set_xticks(range(len(points)), points, fontsize=8)
            ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if not labels:  # no single-connection and no fixed-rate pass (BENCH_LATENCY_PASS=0, BENCH_RATES="")
        plt.close(fig)
        return None
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8, bbox_to_anchor=(0.5, -0.02))
    note = f"; left out (no fixed-rate pass): {', '.join(left_out)}" if left_out else ""
    fig.suptitle(f"Latency against offered load, scenario A (static upstream){note}\n{title}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
