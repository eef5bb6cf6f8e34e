"""FSC, DSC and QGAM: shapes, parameter counts from hand formulas, gates, linear cost."""

from __future__ import annotations

import pytest
import torch

from slimdiffsr.models.dsc import DirectionSeparableConv
from slimdiffsr.models.fsc import FrequencySeparableConv
from slimdiffsr.models.qgam import QueryGlobalAggregation


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("cin,cout", [(320, 320), (1920, 640), (64, 128)])
def test_fsc_shape_and_params(cin: int, cout: int) -> None:
    m = int(cin / 4)
    fsc = FrequencySeparableConv(cin, cout)
    # two depthwise 3x3, gate C->8 (no bias) + 8->2 (bias), 1x1 C->m and m->Cout (no bias)
    assert n_params(fsc) == 2 * 9 * cin + 8 * cin + 2 * 8 + 2 + cin * m + m * cout
    y = fsc(torch.randn(2, cin, 8, 8))
    assert y.shape == (2, cout, 8, 8)


@pytest.mark.parametrize("c", [320, 640, 1280, 64])
def test_dsc_shape_and_params(c: int) -> None:
    m, h = int(c / 4), c // 8
    dsc = DirectionSeparableConv(c)
    assert n_params(dsc) == 3 * c + 3 * c + c * m + m * c + c * h + h * 3 + 3
    assert dsc(torch.randn(1, c, 6, 10)).shape == (1, c, 6, 10)


def test_fsc_gate_selects_bands() -> None:
    torch.manual_seed(0)
    fsc = FrequencySeparableConv(8, 8)
    x = torch.randn(1, 8, 16, 16)
    low = fsc.low_branch(x)
    high = fsc.high_branch(x - low)
    with torch.no_grad():  # force the gate to (1, 0): only the low band passes
        fsc.mlp[2].weight.zero_()
        fsc.mlp[2].bias.copy_(torch.tensor([50.0, -50.0]))
    assert torch.allclose(fsc.gate(x), torch.tensor([[1.0, 0.0]]), atol=1e-6)
    assert torch.allclose(fsc(x), fsc.bottleneck(low), atol=1e-5)
    with torch.no_grad():
        fsc.mlp[2].bias.copy_(torch.tensor([-50.0, 50.0]))
    assert torch.allclose(fsc(x), fsc.bottleneck(high), atol=1e-5)


def test_dsc_shares_horizontal_kernel_and_gates_directions() -> None:
    torch.manual_seed(0)
    dsc = DirectionSeparableConv(16)
    x = torch.randn(1, 16, 9, 9)
    with torch.no_grad():
        dsc.mlp[2].weight.zero_()
        dsc.mlp[2].bias.copy_(torch.tensor([-50.0, -50.0, 50.0]))  # only Kh(F)
    expected = dsc.conv_expand(dsc.conv_reduce(dsc.v_conv(x)))
    assert torch.allclose(dsc(x), expected, atol=1e-5)
    assert dsc.h_conv[0].kernel_size == (3, 1) and dsc.v_conv[0].kernel_size == (1, 3)


def test_qgam_params_and_shape() -> None:
    c = 320
    q = QueryGlobalAggregation(c)
    assert n_params(q) == 32 * c + 4 * c * 64 + 2 * 64 * 64 + 64 * c + c
    assert q(torch.randn(2, 50, c)).shape == (2, 50, c)
    assert q.scale == pytest.approx(c**-0.5)


def test_qgam_cost_is_linear_in_tokens() -> None:
    """Count attention-matrix elements and FLOPs: doubling tokens doubles both."""
    from torch.utils.flop_counter import FlopCounterMode

    q = QueryGlobalAggregation(64)
    sizes = []
    flops = []
    for tokens in (256, 512, 1024, 2048):
        (a1, a2) = q.attention_sizes(tokens)
        sizes.append(a1[0] * a1[1] + a2[0] * a2[1])
        with FlopCounterMode(display=False) as fc:
            q(torch.randn(1, tokens, 64))
        flops.append(fc.get_total_flops() - 0)
    for i in range(1, len(sizes)):
        assert sizes[i] == 2 * sizes[i - 1]
    # all matmuls scale with L except the constant query projection, so ratio -> 2
    ratios = [flops[i] / flops[i - 1] for i in range(1, len(flops))]
    assert all(1.9 < r <= 2.0 for r in ratios), ratios


def test_qgam_permutation_equivariant() -> None:
    torch.manual_seed(1)
    q = QueryGlobalAggregation(32)
    x = torch.randn(1, 20, 32)
    perm = torch.randperm(20)
    assert torch.allclose(q(x)[:, perm], q(x[:, perm]), atol=1e-5)
