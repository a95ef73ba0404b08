"""How long a kernel takes to become callable: cold (generate, assemble, link, verify, dlopen
into an empty cache) and warm (generate, find the verified cache entry, dlopen), per registered
variant.

Each phase runs in a fresh Python process (so nothing is memoised in memory) against one
temporary cache directory: the cold process fills it, the warm process finds every entry. Times
are wall clock of `softjit.runtime.bindings.library(variant)` in that process (generation
included), with the generation step (build + render, part of both) also timed alone first.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, sys, time
from softjit.codegen import variants
from softjit.codegen.pipeline import render_module
from softjit.runtime import bindings, cache
out = {}
for v in variants.VARIANTS:
    t0 = time.perf_counter()
    text = render_module(v.build())
    t1 = time.perf_counter()
    bindings.library(v)
    t2 = time.perf_counter()
    out[v.name] = {"generate_s": t1 - t0, "load_s": t2 - t1,
                   "source": cache.last_shared_object(v.name).source}
print(json.dumps(out))
"""


def measure() -> dict:
    """{variant: {"generate_s", "cold_s", "warm_s", "cold_source", "warm_source"}}."""
    with tempfile.TemporaryDirectory(prefix="softjit-load-times-") as cache_dir:
        env = dict(os.environ, SOFTJIT_CACHE_DIR=cache_dir)
        env.pop("SOFTJIT_PREBUILT_DIR", None)
        phases = []
        for _ in ("cold", "warm"):
            done = subprocess.run([sys.executable, "-c", _CHILD], env=env, check=True,
                                  capture_output=True, text=True)
            phases.append(json.loads(done.stdout))
    cold, warm = phases
    return {name: {"generate_s": warm[name]["generate_s"],
                   "cold_s": cold[name]["load_s"], "warm_s": warm[name]["load_s"],
                   "cold_source": cold[name]["source"], "warm_source": warm[name]["source"]}
            for name in cold}


def format_table(results: dict) -> str:
    lines = [f"{'kernel module':<100} {'generate':>9} {'cold':>9} {'warm':>9}  from (cold/warm)"]
    for name, r in results.items():
        lines.append(f"{name:<100} {r['generate_s'] * 1e3:7.1f}ms {r['cold_s'] * 1e3:7.1f}ms "
                     f"{r['warm_s'] * 1e3:7.1f}ms  {r['cold_source']}/{r['warm_source']}")
    cold = sorted(r["cold_s"] for r in results.values())
    warm = sorted(r["warm_s"] for r in results.values())
    lines.append(f"median over {len(results)} modules: cold {cold[len(cold) // 2] * 1e3:.1f} ms, "
                 f"warm {warm[len(warm) // 2] * 1e3:.1f} ms")
    return "\n".join(lines) + "\n"
