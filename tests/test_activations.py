"""trunc_exp and biased_softplus: values and the clamped gradient."""

import math

import torch

from dreamfusion.activations import biased_softplus, trunc_exp


def test_trunc_exp_forward_is_exp_in_fp32():
    x = torch.tensor([-3.0, 0.0, 2.5, 20.0], dtype=torch.float16)
    y = trunc_exp(x)
    assert y.dtype == torch.float32  # fp16 would overflow at exp(20)
    assert torch.allclose(y, torch.exp(x.float()), rtol=1e-6)


def test_trunc_exp_gradient_is_clamped_at_15():
    x = torch.tensor([-2.0, 0.0, 3.0, 15.0, 30.0], requires_grad=True)
    trunc_exp(x).backward(torch.tensor([1.0, 2.0, 1.0, 1.0, 0.5]))
    expected = torch.tensor([math.exp(-2.0), 2.0, math.exp(3.0), math.exp(15.0), 0.5 * math.exp(15.0)])
    assert torch.allclose(x.grad, expected, rtol=1e-5)
    assert torch.isfinite(x.grad).all()


def test_biased_softplus():
    x = torch.tensor([-1.0, 0.0, 4.0])
    assert torch.allclose(biased_softplus(x), torch.log1p(torch.exp(x)))
    assert torch.allclose(biased_softplus(x, bias=1.0), torch.log1p(torch.exp(x - 1.0)))
