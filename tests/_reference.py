"""Independent references for the tests and benchmarks, in one place.

- the notebook's classes (``Nb*``), rebuilt from the specification's text;
- the attention formulas and eval-mode BatchNorm written out by hand from a module's
  weights (CBAM eqs. 2-3), with no call into the library's forward code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from preattn import ChannelAttention, SpatialAttention

# --- the notebook's reference classes, as written in the specification ----------------


class NbChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.max = nn.AdaptiveMaxPool2d(1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.mlp(self.avg(x)) + self.mlp(self.max(x)))


class NbSpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7):
        super().__init__()
        padding = 3 if kernel_size == 7 else 1
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=padding, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        avg_map = torch.mean(x, dim=1, keepdim=True)
        max_map, _ = torch.max(x, dim=1, keepdim=True)
        return self.sigmoid(self.conv(torch.cat([avg_map, max_map], dim=1)))


class NbCBAM(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7):
        super().__init__()
        self.ca = NbChannelAttention(channels, reduction=reduction)
        self.sa = NbSpatialAttention(kernel_size=spatial_kernel)

    def forward(self, x):
        x = self.ca(x) * x
        x = self.sa(x) * x
        return x


class NbFxConv(nn.Module):
    def __init__(self, in_ch, out_ch, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)

    def forward(self, x):
        return self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


def nb_make_skip(in_ch, out_ch, stride):
    if stride != 1 or in_ch != out_ch:
        return nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
        )
    return nn.Identity()


class NbPattern3(nn.Module):
    def __init__(self, in_ch, out_ch, stride=1, reduction=16, spatial_kernel=7):
        super().__init__()
        self.attn = NbCBAM(in_ch, reduction=reduction, spatial_kernel=spatial_kernel)
        self.F = NbFxConv(in_ch, out_ch, stride=stride)
        self.skip = nb_make_skip(in_ch, out_ch, stride)
        self.out_act = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = self.skip(x)
        return self.out_act(identity + self.F(self.attn(x)))


class NbPattern3Controlled(nn.Module):
    def __init__(
        self,
        in_ch,
        out_ch,
        stride=1,
        lam_init=0.1,
        lam_learnable=True,
        reduction=16,
        spatial_kernel=7,
    ):
        super().__init__()
        self.attn = NbCBAM(in_ch, reduction=reduction, spatial_kernel=spatial_kernel)
        self.F = NbFxConv(in_ch, out_ch, stride=stride)
        self.skip = nb_make_skip(in_ch, out_ch, stride)
        self.out_act = nn.ReLU(inplace=True)
        lam_init = min(max(float(lam_init), 1e-4), 1 - 1e-4)
        lam_logit = torch.log(torch.tensor(lam_init) / (1 - torch.tensor(lam_init)))
        if lam_learnable:
            self.lam_logit = nn.Parameter(lam_logit)
        else:
            self.register_buffer("lam_logit", lam_logit)

    def forward(self, x):
        identity = self.skip(x)
        x_att = self.attn(x)
        lam = torch.sigmoid(self.lam_logit)
        x_tilde = (1.0 - lam) * x + lam * x_att
        return self.out_act(identity + self.F(x_tilde))


class NbSimpleCNN(nn.Module):
    def __init__(self, num_classes=10, lam_init=0.1):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True)
        )
        self.conv1 = nn.Sequential(
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        self.p3_1 = NbPattern3Controlled(64, 64, stride=1, lam_init=lam_init)
        self.p3_2 = NbPattern3Controlled(64, 128, stride=2, lam_init=lam_init)
        self.conv2 = nn.Sequential(
            nn.Conv2d(128, 128, 3, padding=1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes)
        )

    def forward(self, x):
        x = self.conv2(self.p3_2(self.p3_1(self.conv1(self.stem(x)))))
        return self.head(x)


# --- formulas written out by hand -----------------------------------------------------


def mlp_by_hand(v, w1, w2, b1=None, b2=None):
    """(B, C) -> (B, C) through the two 1x1 convs written as matrices."""
    h = v @ w1.flatten(1).T
    if b1 is not None:
        h = h + b1
    h = torch.relu(h)
    out = h @ w2.flatten(1).T
    return out + b2 if b2 is not None else out


def channel_by_hand(m: ChannelAttention, x):
    b1 = m.fc1.bias
    b2 = m.fc2.bias
    avg, mx = x.mean((2, 3)), x.flatten(2).max(-1).values
    logits = mlp_by_hand(avg, m.fc1.weight, m.fc2.weight, b1, b2) + mlp_by_hand(
        mx, m.fc1.weight, m.fc2.weight, b1, b2
    )
    return torch.sigmoid(logits)[:, :, None, None]


def spatial_by_hand(m: SpatialAttention, x, order):
    maps = {"mean": x.mean(1, keepdim=True), "max": x.max(1, keepdim=True).values}
    k = m.conv.kernel_size[0]
    z = F.conv2d(torch.cat([maps[o] for o in order], 1), m.conv.weight, padding=k // 2)
    return torch.sigmoid(m.bn(z))


def bn_eval(x, bn: nn.BatchNorm2d):
    """Eval-mode BatchNorm written out."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return x * scale[None, :, None, None] + (bn.bias - bn.running_mean * scale)[None, :, None, None]
