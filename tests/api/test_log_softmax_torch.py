"""log_softmax and logsumexp on torch CPU tensors: tensor in, tensor out, sharing memory with the
input's (no copy); out= a tensor, in place; tensors that require grad are refused."""
from __future__ import annotations

import numpy as np
import pytest

import softjit

torch = pytest.importorskip("torch", reason="torch is not installed (the README says how to "
                                           "install its CPU build)")


def test_tensor_in_tensor_out():
    t = torch.randn(4, 300)
    y = softjit.log_softmax(t)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    assert torch.allclose(y, torch.log_softmax(t, -1), atol=2e-6)
    c = softjit.logsumexp(t)
    assert isinstance(c, torch.Tensor) and c.shape == (4,)
    assert torch.allclose(c, torch.logsumexp(t, -1), atol=1e-5)
    assert softjit.logsumexp(t, axis=None).shape == ()


def test_out_tensor_and_in_place():
    t = torch.randn(3, 50)
    want = softjit.log_softmax(t)
    out = torch.empty_like(t)
    assert softjit.log_softmax(t, out=out) is out and torch.equal(out, want)
    pointer = t.data_ptr()
    assert softjit.log_softmax(t, out=t) is t and torch.equal(t, want)
    assert t.data_ptr() == pointer
    c = torch.empty(3)
    x = torch.randn(3, 50)
    assert softjit.logsumexp(x, out=c) is c
    assert torch.allclose(c, torch.logsumexp(x, -1), atol=1e-5)


def test_half_tensors():
    for dtype in (torch.float16, torch.bfloat16):
        if dtype == torch.bfloat16:
            pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes")
        t = torch.randn(2, 100).to(dtype)
        y = softjit.log_softmax(t)
        assert y.dtype == dtype
        assert torch.equal(y, softjit.log_softmax(t.float()).to(dtype))


def test_requires_grad_is_refused():
    t = torch.randn(2, 5, requires_grad=True)
    with pytest.raises(TypeError, match="requires grad.*detach"):
        softjit.log_softmax(t)
    with pytest.raises(TypeError, match="requires grad"):
        softjit.logsumexp(t)
    with pytest.raises(TypeError, match="out is a torch tensor but x is not"):
        softjit.log_softmax(np.zeros((2, 5), np.float32), out=torch.empty(2, 5))
