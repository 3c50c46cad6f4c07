import math

import pytest
import torch

from ridrepro.models import WideResNet, count_parameters


@pytest.mark.parametrize("block", ["post", "pre"])
def test_parameter_counts_match_the_paper(block):
    # protocols.md section 1: WRN-40-2 about 2.24 M, WRN-16-1 about 0.175 M parameters.
    assert count_parameters(WideResNet(40, 2, block=block)) == pytest.approx(2.24e6, rel=0.005)
    assert count_parameters(WideResNet(16, 1, block=block)) == pytest.approx(0.175e6, rel=0.005)


def test_exact_counts_of_the_two_block_styles():
    # post: the authors' shortcut has a BN (extra 2C per projection) and the stem has a BN;
    # pre: Zagoruyko & Komodakis, whose WRN-40-2 is the well-known 2,243,546.
    assert count_parameters(WideResNet(40, 2, block="pre")) == 2_243_546
    assert count_parameters(WideResNet(40, 2, block="post")) == 2_243_994
    assert count_parameters(WideResNet(16, 1, block="post")) == 175_258


@pytest.mark.parametrize("block", ["post", "pre"])
def test_taps_are_the_three_group_outputs(block):
    x = torch.randn(2, 3, 32, 32)
    for (depth, width), chans in (((40, 2), (32, 64, 128)), ((16, 1), (16, 32, 64))):
        model = WideResNet(depth, width, block=block).eval()
        logits, taps = model(x, taps=True)
        assert logits.shape == (2, 10)
        assert [tuple(t.shape[1:]) for t in taps] == [(chans[0], 32, 32), (chans[1], 16, 16), (chans[2], 8, 8)]
        assert torch.equal(model(x), logits)
    post_taps = WideResNet(16, 1, block="post")(x, taps=True)[1]
    assert all((t >= 0).all() for t in post_taps)  # post-ReLU group outputs


def test_authors_initialisation():
    model = WideResNet(16, 1)
    conv = model.group2[0].conv1
    fan_out = conv.out_channels * 9
    bound = math.sqrt(2) * math.sqrt(3 / fan_out)  # kaiming_uniform, fan_out, relu gain
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert torch.equal(model.linear.bias, torch.zeros(10))
    bn = model.group1[0].bn1
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))


def test_bad_architectures_are_refused():
    with pytest.raises(ValueError, match="6n\\+4"):
        WideResNet(15, 1)
    with pytest.raises(ValueError, match="block style"):
        WideResNet(16, 1, block="mid")
    with pytest.raises(ValueError, match="width"):
        WideResNet(16, 0)
