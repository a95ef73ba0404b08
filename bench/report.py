"""From raw medians to what the paper reports: ns per element, GB/s, % of the bandwidth bound,
speed-up over the best three-pass kernel; as a text table, CSV, JSON and a throughput plot.

Conventions (the paper's):
- GB/s counts 8 bytes per element (4 read, 4 written), whatever the algorithm really moves.
- The bound of a row on an ISA is time(read probe) + time(copy probe): two reads of x and one
  write of y, the traffic of two-pass softmax; "bound nt" uses the copy with non-temporal
  stores. "% of bound" is bound time / candidate time (100% = as fast as the probes).
  Both are given only out of cache: in cache the probes run from the caches and bound nothing.
- "vs 3-pass" is (best three-pass softjit time on that ISA) / candidate time (> 1: faster); not
  given for the probes.
- "x floor" is a softjit kernel's time over its port floor (port_floor.py): 1.0 would be the
  busiest of the FP pipes, load and store ports and dispatch busy every cycle of the main loops.
Candidates without an ISA (peers, probes aside) are compared with the host's best ISA.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

BYTES_PER_ELEMENT = 8


def _ok(entry: dict) -> bool:
    return (entry.get("status") == "ok" and entry.get("median_ns") is not None
            and entry.get("check") != "wrong" and math.isfinite(entry["median_ns"]))


def derive(document: dict) -> dict:
    """Add the derived figures to every case and candidate of a results document (in place)."""
    host_isas = document["meta"].get("host_isas") or []
    for case in document["cases"]:
        by_key = {e["key"]: e for e in case["candidates"]}
        bounds, bounds_nt, three_pass = {}, {}, {}
        for e in case["candidates"]:
            if e["family"] == "softjit" and _ok(e) and e["algorithm"].startswith("three-pass"):
                three_pass[e["isa"]] = min(three_pass.get(e["isa"], math.inf), e["median_ns"])
        for isa in {e["isa"] for e in case["candidates"] if e["family"] == "probe"}:
            read, copy, copy_nt = (by_key.get(f"probe/{k}/{isa}") for k in ("read", "copy", "copy-nt"))
            if read and _ok(read) and copy and _ok(copy):
                bounds[isa] = read["median_ns"] + copy["median_ns"]
            if read and _ok(read) and copy_nt and _ok(copy_nt):
                bounds_nt[isa] = read["median_ns"] + copy_nt["median_ns"]
        case["bound_ns"], case["bound_nt_ns"], case["best_three_pass_ns"] = (
            bounds, bounds_nt, three_pass)
        for e in case["candidates"]:
            isa = e["isa"] if e["isa"] in host_isas else (host_isas[0] if host_isas else None)
            e["reference_isa"] = isa
            if not _ok(e):
                for field in ("ns_per_element", "gbps", "pct_bound", "pct_bound_nt",
                              "vs_best_three_pass", "x_floor"):
                    e[field] = None
                continue
            t = e["median_ns"]
            e["ns_per_element"] = t / case["elements"]
            e["gbps"] = BYTES_PER_ELEMENT * case["elements"] / t
            bounded = case["out_of_cache"]
            e["pct_bound"] = 100.0 * bounds[isa] / t if bounded and isa in bounds else None
            e["pct_bound_nt"] = (100.0 * bounds_nt[isa] / t if bounded and isa in bounds_nt
                                 else None)
            e["vs_best_three_pass"] = (three_pass[isa] / t if isa in three_pass
                                       and e["family"] != "probe" else None)
            floor = e.get("floor_ns_per_element")
            e["x_floor"] = e["ns_per_element"] / floor if floor else None
    return document


# ------------------------------------------------------------------------------------ table
def _number(value, digits: int, width: int, suffix: str = "") -> str:
    if value is None:
        return "-".rjust(width)
    return f"{value:.{digits}f}{suffix}".rjust(width)


def _note(e: dict) -> str:
    if e["status"] != "ok":
        return e["status"]
    notes = []
    if e["check"] == "wrong":
        notes.append(f"WRONG OUTPUT (max abs error {e['max_abs_error']:.2e})")
    if e.get("number") and e["number"] > 1:
        notes.append(f"{e['number']} runs/sample")
    if e.get("preempted_samples"):
        notes.append(f"preempted in {e['preempted_samples']}/{len(e['samples_ns'])} samples")
    return ", ".join(notes)


LABEL_WIDTH = 36


def format_case(case: dict) -> str:
    where = "out of cache (flushed before each run)" if case["out_of_cache"] else "in cache"
    shape = f"{case['rows']} rows x {case['n']:,}" if case["rows"] > 1 else f"n = {case['n']:,}"
    lines = [f"== {case['label']}: {shape}, {where}, {case.get('rounds', 0)} rounds =="]
    header = (f"{'candidate':<{LABEL_WIDTH}} {'ns/elem':>9} {'GB/s':>7} {'%bound':>7} "
              f"{'%bnd-nt':>7} {'vs 3-pass':>9} {'floor':>7} {'x floor':>7}  notes")
    lines += [header, "-" * len(header)]
    for e in case["candidates"]:
        lines.append(
            f"{e['label']:<{LABEL_WIDTH}} {_number(e.get('ns_per_element'), 4, 9)} "
            f"{_number(e.get('gbps'), 2, 7)} {_number(e.get('pct_bound'), 1, 7)} "
            f"{_number(e.get('pct_bound_nt'), 1, 7)} "
            f"{_number(e.get('vs_best_three_pass'), 3, 8, 'x') if e.get('vs_best_three_pass') else '-'.rjust(9)} "
            f"{_number(e.get('floor_ns_per_element'), 3, 7)} {_number(e.get('x_floor'), 2, 6, 'x')}"
            f"  {_note(e)}".rstrip())
    for name, bounds in (("bound 2R+1W", case.get("bound_ns", {})),
                         ("bound 2R+1W nt", case.get("bound_nt_ns", {}))):
        for isa, t in bounds.items() if case["out_of_cache"] else ():
            label = f"{name} {isa} (read + copy{' nt' if 'nt' in name else ''})"
            lines.append(f"{label:<{LABEL_WIDTH}} {t / case['elements']:>9.4f} "
                         f"{BYTES_PER_ELEMENT * case['elements'] / t:>7.2f}")
    return "\n".join(lines)


def format_summary(document: dict) -> str:
    """GB/s (8 bytes/element) of every runnable candidate at every case, one line each."""
    cases = document["cases"]
    if not cases:
        return ""
    keys, labels = [], {}
    for case in cases:
        for e in case["candidates"]:
            if e["key"] not in labels:
                keys.append(e["key"])
                labels[e["key"]] = e["label"]
    width = max(8, max(len(c["label"]) for c in cases) + 1)
    head = f"{'GB/s (8 B/element)':<{LABEL_WIDTH}}" + "".join(f"{c['label']:>{width}}" for c in cases)
    lines = [head, "-" * len(head)]
    for key in keys:
        cells = []
        for case in cases:
            e = next((e for e in case["candidates"] if e["key"] == key), None)
            if e is None:
                cells.append("".rjust(width))
            elif e.get("gbps") is not None:
                cells.append(f"{e['gbps']:.2f}".rjust(width))
            elif e["status"] != "ok":
                cells.append(("n/r" if e["status"].startswith("not runnable") else
                              "n/i" if e["status"] == "not installed" else "fail").rjust(width))
            else:
                cells.append("?".rjust(width))
        lines.append(f"{labels[key]:<{LABEL_WIDTH}}" + "".join(cells))
    for name, field in (("bound 2R+1W", "bound_ns"), ("bound 2R+1W nt", "bound_nt_ns")):
        isas = sorted({isa for c in cases for isa in c.get(field, {})})
        for isa in isas:
            cells = []
            for case in cases:
                t = case.get(field, {}).get(isa) if case["out_of_cache"] else None
                cells.append((f"{BYTES_PER_ELEMENT * case['elements'] / t:.2f}" if t else "")
                             .rjust(width))
            lines.append(f"{name + ' ' + isa:<{LABEL_WIDTH}}" + "".join(cells))
    lines.append("n/r: not runnable on this host; n/i: not installed; fail: see the per-case "
                 "table; bounds are given out of cache only")
    return "\n".join(lines)


def format_meta(meta: dict) -> str:
    peers = "; ".join(f"{k}: {v}" for k, v in meta.get("peers", {}).items()) or "none"
    load = meta.get("load_average_start")
    return "\n".join([
        f"softjit {meta.get('softjit')} bench, {meta.get('date')}",
        f"cpu: {meta.get('cpu_model')}; host isas: {', '.join(meta.get('host_isas') or []) or 'none'}; "
        f"LLC {meta.get('llc_bytes', 0) >> 20} MiB; pinned to cpu {meta.get('pinned_cpu')} "
        f"of {meta.get('logical_cpus')}",
        f"python {meta.get('python')}, numpy {meta.get('numpy')}; peers: {peers}",
        f"medians of {meta.get('clock', 'wall')}-clock time per run; GB/s at 8 bytes/element; "
        "%bound = (read + copy probe time) / time, out of cache only; vs 3-pass = best "
        "three-pass time / time; floor = port floor, ns/element; x floor = time / floor",
        meta.get("port_floor") or "port floor: not computed",
        f"load average at start: {', '.join(f'{v:.2f}' for v in load) if load else 'n/a'}"
        + (f"; at end: {', '.join(f'{v:.2f}' for v in meta['load_average_end'])}"
           if meta.get("load_average_end") else "")
        + (f"; wall time {meta['wall_time_s']} s" if meta.get("wall_time_s") else ""),
    ])


def format_report(document: dict) -> str:
    parts = [format_meta(document["meta"]), ""]
    for case in document["cases"]:
        parts += [format_case(case), ""]
    parts.append(format_summary(document))
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------- files
CSV_FIELDS = ("case", "n", "rows", "elements", "out_of_cache", "rounds", "key", "label", "family",
              "algorithm", "isa", "nontemporal", "kernel", "status", "check", "max_abs_error",
              "number", "median_ns", "min_ns", "max_ns", "median_wall_ns", "median_cpu_ns",
              "preempted_samples", "ns_per_element", "gbps", "pct_bound", "pct_bound_nt",
              "vs_best_three_pass", "floor_ns_per_element", "x_floor")


def write_csv(document: dict, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, CSV_FIELDS)
        writer.writeheader()
        for case in document["cases"]:
            for e in case["candidates"]:
                samples = e.get("samples_ns") or []
                row = {field: e.get(field) for field in CSV_FIELDS}
                row.update(case=case["label"], n=case["n"], rows=case["rows"],
                           elements=case["elements"], out_of_cache=case["out_of_cache"],
                           rounds=case.get("rounds"),
                           min_ns=min(samples) if samples else None,
                           max_ns=max(samples) if samples else None)
                writer.writerow(row)


def write_json(document: dict, path: Path) -> None:
    path.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")


def _iqr_gbps(entry: dict, elements: int, clock: str) -> tuple:
    """(low, high) GB/s of the interquartile range of an entry's samples (None: no samples)."""
    samples = entry.get("samples_cpu_ns" if clock == "cpu" else "samples_ns") or []
    if len(samples) < 2:
        return None
    ordered = sorted(samples)

    def quantile(q):
        position = q * (len(ordered) - 1)
        below = int(math.floor(position))
        above = min(below + 1, len(ordered) - 1)
        return ordered[below] + (ordered[above] - ordered[below]) * (position - below)

    q1, q3 = quantile(0.25), quantile(0.75)
    return BYTES_PER_ELEMENT * elements / q3, BYTES_PER_ELEMENT * elements / q1


def plot(document: dict, path: Path) -> bool:
    """Throughput (GB/s at 8 B/element) against row length, like the paper's figures: medians
    with interquartile bars, the bandwidth bounds where they are bounds (out of cache), batches
    of rows as stars at their row length, the last-level cache size marked. Returns False (and
    writes nothing) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    meta = document["meta"]
    clock = meta.get("clock", "wall")
    singles = sorted((c for c in document["cases"] if c["rows"] == 1), key=lambda c: c["n"])
    batches = [c for c in document["cases"] if c["rows"] > 1]
    series: dict = {}
    for case in singles:
        for e in case["candidates"]:
            if e.get("gbps") is not None and e["family"] != "probe":
                series.setdefault(e["key"], (e, []))[1].append(
                    (case["n"], e["gbps"], _iqr_gbps(e, case["elements"], clock)))
        if not case["out_of_cache"]:
            continue
        for name, field in (("bound 2R+1W", "bound_ns"), ("bound 2R+1W nt", "bound_nt_ns")):
            for isa, t in case.get(field, {}).items():
                key = f"{name} {isa}"
                entry = {"label": f"{key} (read + copy{' nt' if 'nt' in name else ''})",
                         "family": "bound", "key": key}
                series.setdefault(key, (entry, []))[1].append(
                    (case["n"], BYTES_PER_ELEMENT * case["n"] / t, None))
    fig, ax = plt.subplots(figsize=(13, 6.5))
    colours = {"two-pass": "tab:red", "three-pass-reload": "tab:blue",
               "three-pass-recompute": "tab:green"}
    peer_colours = iter(["tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan",
                         "tab:gray", "gold", "navy"])
    styles, highest = {}, 0.0
    for key, (e, points) in series.items():
        xs, ys, bars = zip(*points)
        if e["family"] == "softjit":
            style = dict(color=colours.get(e["algorithm"], "black"), linewidth=2,
                         linestyle="--" if e.get("nontemporal") else "-",
                         marker="o" if e.get("isa") == "avx512f" else "s", markersize=4)
        elif e["family"] == "bound":
            style = dict(color="black", linewidth=1.5, linestyle=":" if "nt" in key else "-.",
                         marker="x" if "nt" in key else "+", markersize=7)
        elif e["family"] == "auto":
            style = dict(color="tab:orange", linewidth=1, linestyle="-" if key.endswith("auto")
                         else "--", marker=".")
        else:
            style = dict(color=next(peer_colours, "gray"), linewidth=1, marker="^", markersize=4)
        styles[key] = style
        ax.plot(xs, ys, label=e["label"], **style)
        highest = max(highest, *ys)
        spans = [(x, y, b) for x, y, b in zip(xs, ys, bars) if b is not None]
        if spans:
            ax.errorbar([x for x, _, _ in spans], [y for _, y, _ in spans],
                        yerr=[[y - b[0] for _, y, b in spans], [b[1] - y for _, y, b in spans]],
                        fmt="none", ecolor=style["color"], elinewidth=1, capsize=2, alpha=0.6)
            highest = max(highest, *(b[1] for _, _, b in spans))
    for case in batches:
        for e in case["candidates"]:
            if e.get("gbps") is None or e["family"] == "probe" or e["key"] not in styles:
                continue
            # a little right of the single rows of the same length, so that both stay visible
            ax.plot([case["n"] * 1.25], [e["gbps"]], marker="*", markersize=11, linestyle="none",
                    color=styles[e["key"]]["color"], markeredgecolor="black",
                    markeredgewidth=0.4)
            highest = max(highest, e["gbps"])
    if batches:
        ax.plot([], [], marker="*", markersize=11, linestyle="none", color="white",
                markeredgecolor="black", label=", ".join(
                    f"{c['rows']} rows x {c['n']:,} (one call)" for c in batches)
                + ": stars in each candidate's colour")
    llc = meta.get("llc_bytes")
    if llc:
        ax.axvline(llc / BYTES_PER_ELEMENT, color="gray", linewidth=1, linestyle="--")
        ax.text(llc / BYTES_PER_ELEMENT, 0.02, f" x + y = last-level cache ({llc >> 20} MiB)",
                rotation=90, va="bottom", ha="right", fontsize=7, color="gray",
                transform=ax.get_xaxis_transform())
    ax.set_ylim(0, 1.08 * highest if highest else 1)
    ax.set_xscale("log")
    ax.set_xlabel("row length n (elements)")
    ax.set_ylabel("throughput, GB/s (8 bytes per element); bars: interquartile range")
    ax.set_title(f"softmax throughput, one core: {meta.get('cpu_model')} "
                 f"({', '.join(meta.get('host_isas') or [])})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_all(document: dict, out: Path | None, plot_path: Path | None) -> dict:
    """Write table.txt, results.csv, results.json (and the plot) into `out`; returns the paths."""
    written = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        written["table"] = out / "table.txt"
        written["table"].write_text(format_report(document), encoding="utf-8")
        written["csv"] = out / "results.csv"
        write_csv(document, written["csv"])
        written["json"] = out / "results.json"
        write_json(document, written["json"])
        if plot_path is None:
            plot_path = out / "throughput.png"
    if plot_path is not None:
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        if plot(document, plot_path):
            written["plot"] = plot_path
        else:
            written["plot"] = None  # matplotlib is not installed
    return written
