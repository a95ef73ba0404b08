"""bench --functions: every candidate runs and is reported (small sizes, few rounds)."""
from __future__ import annotations

from softjit.bench import functions


def test_functions_bench_reports_every_candidate():
    results = functions.run(sizes=(1000,), repeats=1)
    assert [r["function"] for r in results] == ["log_softmax", "logsumexp", "softmax"]
    halves = results.pop()  # softmax in bfloat16 and float16 against float32 and torch
    assert halves["medians_ns"]["softjit.softmax"] > 0
    for name in ("bfloat16", "float16"):
        for label in (f"softjit.softmax {name}", f"torch.softmax {name}"):
            assert label in halves["medians_ns"] or label in halves["skipped"], label
    assert "softjit.softmax float16" in halves["medians_ns"]
    assert "softjit.softmax two-pass" in halves["medians_ns"]
    assert "softjit.softmax float16 two-pass" in halves["medians_ns"]
    for r in results:
        assert r["medians_ns"][f"softjit.{r['function']}"] > 0
        assert "softjit.softmax two-pass" in r["medians_ns"]
        for label in (f"scipy.special.{r['function']}", f"torch.{r['function']}"):
            assert label in r["medians_ns"] or label in r["skipped"]
    text = functions.format_results(results)
    assert "softjit.log_softmax two-pass" in text and "n = 1,000" in text


def test_functions_bench_takes_batches():
    results = functions.run(sizes=((3, 100),), repeats=1)
    assert [(r["function"], r["rows"], r["n"]) for r in results] == [
        ("log_softmax", 3, 100), ("logsumexp", 3, 100), ("softmax", 3, 100)]
    assert "3 rows of n = 100" in functions.format_results(results)
