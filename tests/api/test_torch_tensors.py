"""softmax, log_softmax, logsumexp and exp on torch CPU tensors (runtime/tensors.py): tensor in,
tensor out over the same memory, out= a tensor and in place, strided views as strided arrays;
clear TypeErrors for what softjit does not do (grad, other devices, sparse, integer dtypes,
float64 without dtype=), never torch's own."""
from __future__ import annotations

import numpy as np
import pytest

import softjit

torch = pytest.importorskip("torch", reason="torch is not installed (the README says how to "
                                           "install its CPU build); CI runs without it")

FUNCTIONS = {
    "softmax": (softjit.softmax, lambda t: torch.softmax(t, -1), 1e-6),
    "log_softmax": (softjit.log_softmax, lambda t: torch.log_softmax(t, -1), 1e-5),
    "logsumexp": (softjit.logsumexp, lambda t: torch.logsumexp(t, -1), 1e-5),
    "exp": (softjit.exp, torch.exp, 1e-6),
}
names = pytest.mark.parametrize("name", list(FUNCTIONS))


def _reduces(name: str) -> bool:
    return name == "logsumexp"


@names
def test_tensor_in_tensor_out(name):
    function, torch_function, tolerance = FUNCTIONS[name]
    t = torch.randn(4, 257)
    y = function(t)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    assert torch.allclose(y, torch_function(t), rtol=tolerance, atol=tolerance)
    # the result tensor is the result array's memory (no copy on the way back)
    assert torch.equal(y, torch.from_numpy(function(t.numpy())))


@names
def test_out_tensor_and_in_place(name):
    function, _, _ = FUNCTIONS[name]
    t = torch.randn(3, 100)
    want = function(t)
    out = torch.empty_like(want)
    pointer = out.data_ptr()
    assert function(t, out=out) is out and torch.equal(out, want)
    assert out.data_ptr() == pointer
    if not _reduces(name):
        x = t.clone()
        assert function(x, out=x) is x and torch.equal(x, want)


@names
def test_strided_views_work_as_strided_arrays(name):
    function, _, _ = FUNCTIONS[name]
    base = torch.randn(6, 80)
    for view in (base[::2], base[:, 1::3], base.t(), base[1:4, 5:70]):
        assert not view.is_contiguous() or view is base
        got = function(view)
        want = function(view.numpy())
        assert torch.equal(got, torch.from_numpy(np.ascontiguousarray(want)))
    if not _reduces(name):
        out_base = torch.zeros(6, 160)
        out = out_base[:, ::2]
        assert function(base, out=out) is out
        assert torch.equal(out, function(base))
        assert torch.all(out_base[:, 1::2] == 0)  # the gaps stay untouched


@names
def test_float64_and_dtype(name):
    function, _, _ = FUNCTIONS[name]
    t = torch.randn(2, 50, dtype=torch.float64)
    with pytest.raises(TypeError, match="dtype=numpy.float32"):
        function(t)
    for dtype in (np.float32, torch.float32):
        y = function(t, dtype=dtype)
        assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
        assert torch.equal(y, function(t.float()))


@names
def test_refused_tensors_say_why(name):
    function, _, _ = FUNCTIONS[name]
    with pytest.raises(TypeError, match="requires grad.*detach"):
        function(torch.randn(2, 5, requires_grad=True))
    with pytest.raises(TypeError, match="on meta.*cpu"):
        function(torch.empty(2, 5, device="meta"))
    with pytest.raises(TypeError, match="sparse.*to_dense"):
        function(torch.eye(3).to_sparse())
    for dtype in (torch.int64, torch.bool, torch.complex64):
        with pytest.raises(TypeError, match=rf"dtype {dtype}.*float\(\)"):
            function(torch.zeros(2, 5, dtype=dtype))
    x = torch.randn(2, 5)
    out_shape = (2,) if _reduces(name) else (2, 5)
    with pytest.raises(TypeError, match="out is a torch tensor but x is not"):
        function(x.numpy(), out=torch.empty(out_shape))
    with pytest.raises(TypeError, match="x is a torch tensor but out is a ndarray"):
        function(x, out=np.empty(out_shape, np.float32))
    with pytest.raises(TypeError, match="out is a torch tensor that requires grad"):
        function(x, out=torch.empty(out_shape, requires_grad=True))
    if not _reduces(name):
        with pytest.raises(ValueError, match="share memory.*expanded"):
            function(x, out=torch.empty(1, 5).expand(2, 5))


def test_half_tensors_of_log_softmax():
    for dtype in (torch.float16, torch.bfloat16):
        if dtype == torch.bfloat16:
            pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes")
        t = torch.randn(2, 100).to(dtype)
        y = softjit.log_softmax(t)
        assert y.dtype == dtype
        assert torch.equal(y, softjit.log_softmax(t.float()).to(dtype))


def test_logsumexp_float64_result_tensor():
    t = torch.randn(3, 40)
    c = softjit.logsumexp(t, dtype=torch.float64)
    assert c.dtype == torch.float64
    assert torch.equal(c.float(), softjit.logsumexp(t))


def test_import_softjit_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, softjit; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
