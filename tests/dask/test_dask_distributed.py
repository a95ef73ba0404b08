"""softjit.dask.softmax on a distributed LocalCluster: two worker processes on this machine
(loopback only), including a worker killed while the graph runs."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from softmax_checks import check_softmax

da = pytest.importorskip("dask.array", reason="softjit.dask needs dask[array]: "
                                              "pip install 'softjit[dask]'")
distributed = pytest.importorskip("distributed", reason="the cluster tests need distributed: "
                                                        "pip install 'softjit[dask]'")
sd = pytest.importorskip("softjit.dask")

ROWS, N, ROW_CHUNK, COLUMN_CHUNK = 8, 6000, 2, 1000
SEED = 20261201


def _block(block_info=None):
    """A seeded block of the test array, made inside the worker; slow enough (50 ms) that the
    graph is still running when a worker is killed."""
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    time.sleep(0.05)
    rng = np.random.default_rng([SEED, r0, c0])
    return (rng.standard_normal((r1 - r0, c1 - c0)) * 20).astype(np.float32)


def _lazy_input():
    return da.map_blocks(_block, dtype=np.float32, chunks=((ROW_CHUNK,) * (ROWS // ROW_CHUNK),
                                                          (COLUMN_CHUNK,) * (N // COLUMN_CHUNK)),
                         meta=np.empty((0, 0), np.float32))


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                       worker_dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        yield c


def test_cluster_result(client):
    x = _lazy_input()
    y = client.compute(sd.softmax(x)).result(timeout=120)
    check_softmax(y, x.compute(scheduler="threads"))


def test_cluster_middle_axis(client):
    x = da.from_array((np.random.default_rng(2).standard_normal((3, 400, 5)) * 9)
                      .astype(np.float32), chunks=(2, 90, 3))
    y = client.compute(sd.softmax(x, axis=1)).result(timeout=120)
    check_softmax(y, x.compute(), axis=1)


def test_cluster_several_axes_and_log_functions(client):
    """Rows over two axes, split along both, in worker processes: softmax, logsumexp and
    log_softmax agree with softjit's single-machine functions."""
    import softjit

    values = (np.random.default_rng(3).standard_normal((4, 60, 7)) * 9).astype(np.float32)
    x = da.from_array(values, chunks=(3, 25, 4))
    y, c, ly = client.compute([sd.softmax(x, axis=(1, 2)), sd.logsumexp(x, axis=(1, 2)),
                               sd.log_softmax(x, axis=None)], sync=True)
    np.testing.assert_allclose(y, softjit.softmax(values, axis=(1, 2)), rtol=2e-5, atol=1e-38)
    np.testing.assert_allclose(c, softjit.logsumexp(values, axis=(1, 2)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ly, softjit.log_softmax(values, axis=None), rtol=2e-6, atol=2e-6)


def test_worker_killed_mid_computation(client):
    """SIGKILL one worker process once the first tasks finished: the nanny restarts it, the
    scheduler reruns its lost tasks elsewhere, and the result is still right."""
    x = _lazy_input()
    future = client.compute(sd.softmax(x))
    deadline = time.monotonic() + 60
    while not client.processing() or not any(client.processing().values()):
        assert time.monotonic() < deadline, "the graph never started"
        time.sleep(0.01)
    time.sleep(0.15)  # a few blocks done, most still to run
    assert not future.done(), "the graph finished before the worker could be killed"
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    os.kill(pids[victim], signal.SIGKILL)
    y = future.result(timeout=120)
    check_softmax(y, x.compute(scheduler="threads"))
    assert pids[victim] not in client.run(os.getpid).values()
