"""bench --dask's pieces: the lazy seeded input, the in-worker error check, the report."""
from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="bench --dask needs dask[array]: "
                                              "pip install 'softjit[dask]'")
pytest.importorskip("softjit.dask")

from softjit.bench import dask_bench  # noqa: E402


def test_input_is_seeded_and_matches_row_values():
    x = dask_bench.make_input(3, 1 << 12, 1 << 10)
    assert x.chunks == ((1, 1, 1), (1 << 10,) * 4) and x.dtype == np.float32
    values = x.compute(scheduler="threads")
    assert np.array_equal(values, x.compute(scheduler="threads"))
    for r in range(3):
        assert np.array_equal(values[r], dask_bench.row_values(r, 1 << 12, 1 << 10))
    assert not np.array_equal(values[0], values[1])
    assert 3.0 < values.std() < 5.0  # SCALE x standard normal


def test_bad_chunking():
    with pytest.raises(ValueError, match="multiple of the chunk"):
        dask_bench.make_input(2, 1000, 300)


@pytest.mark.parametrize("name", list(dask_bench.CONTENDERS))
def test_block_errors_in_the_graph(name):
    n, chunk = 1 << 12, 1 << 10
    x = dask_bench.make_input(4, n, chunk)
    y = dask_bench.CONTENDERS[name](x)
    samples = np.array([1, 3])
    references = [dask_bench._row_reference(int(r), n, chunk) for r in samples]
    errors = y[samples].map_blocks(dask_bench._BlockError(samples, references),
                                   dtype=np.float64, chunks=((1, 1), (1,) * 4),
                                   meta=np.empty((0, 0), np.float64))
    worst = float(errors.max().compute(scheduler="threads"))
    assert 0 < worst < 1e-5
    da.store(y, dask_bench.NullTarget(), lock=False, scheduler="threads")


def test_report():
    runs = [{"name": name, "wall_s": w, "worker_cpu_s": w * 2, "peak_rss": [2 << 30, 3 << 30],
             "baseline_rss": [1 << 27, 1 << 27], "max_rel_error": e}
            for name, w, e in (("softjit.dask.softmax", 10.0, 2e-7),
                               ("plain dask composition", 25.0, 3e-6))]
    text = dask_bench.format_results({"shape": (128, 1 << 24), "chunk": (1, 1 << 22),
                                      "elements": 1 << 31, "scheduler": "here",
                                      "sampled_rows": [1, 2], "runs": runs})
    assert "8.0 GiB" in text and "wall time 2.50x, worker CPU time 2.50x" in text and "3072" in text
