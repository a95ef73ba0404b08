"""`softjit bench --calls`: every call form and peer is timed (or said to be missing) per size."""
from __future__ import annotations

import pytest

from softjit.bench import calls
from softjit.bench.peers import NOT_INSTALLED


def test_a_short_run_times_every_call_form(monkeypatch):
    monkeypatch.setattr(calls, "SIZES", (("16", 1, 16), ("2 x 8", 2, 8)))
    document = calls.run(repeats=1, budget_s=0.5, sample_ms=0.2, with_startup=False)
    cells = document["cells"]
    for key in ("kernel", "out", "new", "named", "axis", "in-place", "exp", "np-exp", "numpy",
                "scale", "scale-one", "dtype", "dtype-float64", "log-softmax", "log-softmax-new",
                "logsumexp"):
        for size in document["sizes"]:
            assert isinstance(cells[key][size], float) and cells[key][size] > 0, (key, size)
    for key in ("scipy", "torch-out", "torch", "onnxruntime", "litert"):
        for size in document["sizes"]:
            value = cells[key][size]
            assert isinstance(value, float) or value == NOT_INSTALLED, (key, value)
    text = calls.format_results(document)
    assert "| softjit.softmax(x, out=y) |" in text and "n = 2 x 8" in text
    assert "torch.softmax(out=) / softjit out=" in text
    assert "pinned to CPU" in text


def test_missing_peers_and_failures_are_reported():
    document = {"host": "test host", "sizes": ["16"], "repeats": 3, "clock": "cpu",
                "rows": {"out": "softjit.softmax(x, out=y)", "torch": "torch.softmax(xt, 0)",
                         "litert": "LiteRT"},
                "cells": {"out": {"16": 0.5}, "torch": {"16": NOT_INSTALLED},
                          "litert": {"16": "failed: RuntimeError: no delegate"}}}
    text = calls.format_results(document)
    assert "| torch.softmax(xt, 0) | not installed |" in text
    assert "| LiteRT | failed |" in text and "no delegate" in text
    assert "thread CPU time over 3 interleaved rounds" in text


@pytest.mark.parametrize("argv", [["bench", "--calls", "--help"]])
def test_the_command_line_offers_calls(argv, capsys):
    from softjit.__main__ import main

    with pytest.raises(SystemExit):
        main(argv)
    assert "--calls" in capsys.readouterr().out


def test_startup_is_measured_in_fresh_processes():
    figures = calls.startup(runs=1)
    assert figures["runs"] == 1
    for key in ("import numpy ms", "import softjit after numpy ms", "first call ms"):
        assert 0 < figures[key] < 60_000, key
    text = calls.format_results({"host": "h", "sizes": [], "repeats": 1, "rows": {}, "cells": {},
                                 "startup": figures})
    assert "the first softjit.softmax(x) with a warm cache" in text
