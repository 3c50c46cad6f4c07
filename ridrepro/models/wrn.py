"""CIFAR WideResNet(depth, width) whose three group outputs are the distillation taps.

block="post": the authors' blocks (kd-rid systems/wrncifar.py): conv-BN-ReLU-conv-BN, plus a shortcut
(identity, or conv1x1+BN when the shape changes), then ReLU. Taps are post-ReLU group outputs.
block="pre": the pre-activation WRN of Zagoruyko & Komodakis (2016): BN-ReLU-conv-BN-ReLU-conv plus a
shortcut (identity, or conv1x1 on the pre-activated input), and BN-ReLU after the last group. Taps are
the group outputs, i.e. the residual stream before any BN-ReLU (the usual choice in KD benchmarks).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class PostBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class PreBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), conv3x3(cin, cout, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), conv3x3(cout, cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x):
        a = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(a))))
        # Zagoruyko & Komodakis project the pre-activated input when the shape changes.
        return out + (x if self.shortcut is None else self.shortcut(a))


BLOCKS = {"post": PostBlock, "pre": PreBlock}


class WideResNet(nn.Module):
    def __init__(self, depth, width, num_classes=10, block="post"):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1, got {depth}")
        if width < 1:
            raise ValueError(f"WideResNet width must be a positive integer, got {width}")
        if block not in BLOCKS:
            raise ValueError(f"unknown block style {block!r}; expected one of {sorted(BLOCKS)}")
        n, Block = (depth - 4) // 6, BLOCKS[block]
        self.depth, self.width, self.block = depth, width, block
        self.channels = (16 * width, 32 * width, 64 * width)  # tap channels, groups 1..3
        self.spatial = (32, 16, 8)  # tap heights = widths on 32x32 CIFAR images
        self.conv1 = conv3x3(3, 16)
        # The post style normalises the stem output; the pre style leaves it to the first block's BN.
        self.bn1 = nn.BatchNorm2d(16) if block == "post" else nn.Identity()
        groups, cin = [], 16
        for cout, stride in zip(self.channels, (1, 2, 2)):
            groups.append(nn.Sequential(*[Block(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                          for i in range(n)]))
            cin = cout
        self.group1, self.group2, self.group3 = groups
        self.bn_final = nn.BatchNorm2d(cin) if block == "pre" else nn.Identity()
        self.linear = nn.Linear(cin, num_classes)
        init_authors_(self)

    def forward(self, x, taps=False):
        out = self.conv1(x)
        if self.block == "post":
            out = F.relu(self.bn1(out))
        t1 = self.group1(out)
        t2 = self.group2(t1)
        t3 = self.group3(t2)
        out = t3 if self.block == "post" else F.relu(self.bn_final(t3))
        logits = self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
        return (logits, [t1, t2, t3]) if taps else logits


def init_authors_(module):
    """The authors' init_model_weights(method='kaiming'): kaiming_uniform fan_out/relu, zero bias, BN 1/0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


def count_parameters(module):
    return sum(p.numel() for p in module.parameters())
