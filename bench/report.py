"""From raw medians to what the paper reports: ns per element, GB/s, % of the bandwidth bound,
speed-up over the best three-pass kernel; as a text table, CSV, JSON and a throughput plot.

Conventions (the paper's):
- GB/s counts 8 bytes per element (4 read, 4 written), whatever the algorithm really moves.
- The bound of a row on an ISA is time(read probe) + time(copy probe): two reads of x and one
  write of y, the traffic of two-pass softmax; "bound nt" uses the copy with non-temporal
  stores. "% of bound" is bound time / candidate time (100% = as fast as the probes).
- "vs 3-pass" is (best three-pass softjit time on that ISA) / candidate time (> 1: faster).
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
                              "vs_best_three_pass"):
                    e[field] = None
                continue
            t = e["median_ns"]
            e["ns_per_element"] = t / case["elements"]
            e["gbps"] = BYTES_PER_ELEMENT * case["elements"] / t
            e["pct_bound"] = 100.0 * bounds[isa] / t if isa in bounds else None
            e["pct_bound_nt"] = 100.0 * bounds_nt[isa] / t if isa in bounds_nt else None
            e["vs_best_three_pass"] = three_pass[isa] / t if isa in three_pass else None
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
              f"{'%bnd-nt':>7} {'vs 3-pass':>9}  notes")
    lines += [header, "-" * len(header)]
    for e in case["candidates"]:
        lines.append(
            f"{e['label']:<{LABEL_WIDTH}} {_number(e.get('ns_per_element'), 4, 9)} "
            f"{_number(e.get('gbps'), 2, 7)} {_number(e.get('pct_bound'), 1, 7)} "
            f"{_number(e.get('pct_bound_nt'), 1, 7)} "
            f"{_number(e.get('vs_best_three_pass'), 3, 8, 'x') if e.get('vs_best_three_pass') else '-'.rjust(9)}"
            f"  {_note(e)}".rstrip())
    for name, bounds in (("bound 2R+1W", case.get("bound_ns", {})),
                         ("bound 2R+1W nt", case.get("bound_nt_ns", {}))):
        for isa, t in bounds.items():
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
                t = case.get(field, {}).get(isa)
                cells.append((f"{BYTES_PER_ELEMENT * case['elements'] / t:.2f}" if t else "")
                             .rjust(width))
            lines.append(f"{name + ' ' + isa:<{LABEL_WIDTH}}" + "".join(cells))
    lines.append("n/r: not runnable on this host; n/i: not installed; fail: see the per-case table")
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
        "%bound = (read + copy probe time) / time; vs 3-pass = best three-pass time / time",
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
              "vs_best_three_pass")


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


def plot(document: dict, path: Path) -> bool:
    """Throughput (GB/s at 8 B/element) against row length, like the paper's figures. Returns
    False (and writes nothing) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cases = sorted((c for c in document["cases"] if c["rows"] == 1), key=lambda c: c["n"])
    series: dict = {}
    for case in cases:
        for e in case["candidates"]:
            if e.get("gbps") is not None and e["family"] != "probe":
                series.setdefault(e["key"], (e, []))[1].append((case["n"], e["gbps"]))
        for name, field in (("bound 2R+1W", "bound_ns"), ("bound 2R+1W nt", "bound_nt_ns")):
            for isa, t in case.get(field, {}).items():
                key = f"{name} {isa}"
                entry = {"label": f"{key} (read + copy{' nt' if 'nt' in name else ''})",
                         "family": "bound", "key": key}
                series.setdefault(key, (entry, []))[1].append(
                    (case["n"], BYTES_PER_ELEMENT * case["n"] / t))
    fig, ax = plt.subplots(figsize=(11, 6.5))
    colours = {"two-pass": "tab:red", "three-pass-reload": "tab:blue",
               "three-pass-recompute": "tab:green"}
    peer_colours = iter(["tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan",
                         "tab:gray", "gold", "navy"])
    for key, (e, points) in series.items():
        xs, ys = zip(*points)
        if e["family"] == "softjit":
            style = dict(color=colours.get(e["algorithm"], "black"), linewidth=2,
                         linestyle="--" if e.get("nontemporal") else "-",
                         marker="o" if e.get("isa") == "avx512f" else "s", markersize=4)
        elif e["family"] == "bound":
            style = dict(color="black", linewidth=1.5,
                         linestyle=":" if "nt" in key else "-.")
        elif e["family"] == "auto":
            style = dict(color="tab:orange", linewidth=1, linestyle="-" if key.endswith("auto")
                         else "--", marker=".")
        else:
            style = dict(color=next(peer_colours, "gray"), linewidth=1, marker="^", markersize=4)
        ax.plot(xs, ys, label=e["label"], **style)
    # in cache the probes run far above any softmax; keep the softmax curves readable and let
    # the bound leave the top of the frame there
    others = [y for key, (e, points) in series.items() if e["family"] != "bound"
              for _, y in points]
    if others:
        ax.set_ylim(0, 1.35 * max(others))
    ax.set_xscale("log")
    ax.set_xlabel("row length n (elements)")
    ax.set_ylabel("throughput, GB/s (8 bytes per element)")
    meta = document["meta"]
    missing = sorted({e["isa"] for c in document["cases"] for e in c["candidates"]
                      if e["status"].startswith("not runnable") and e.get("isa")})
    note = f"; {', '.join(missing)}: not runnable on this host" if missing else ""
    ax.set_title(f"softmax throughput, one core: {meta.get('cpu_model')} "
                 f"({', '.join(meta.get('host_isas') or [])}{note})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2)
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
