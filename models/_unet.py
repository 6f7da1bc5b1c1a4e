"""UNet in plain torch: the classic encoder, or a ResNet-34/50 style encoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

RESNET_LAYERS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
                 "resnet50": ("bottleneck", (3, 4, 6, 3))}


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    """The residual branch: a strided 1x1 projection where the shape changes."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class _Residual(nn.Module):
    body: nn.Module
    skip: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class _Basic(_Residual):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True), nn.Conv2d(width, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout))
        self.skip = _shortcut(cin, cout, stride)


class _Bottleneck(_Residual):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True), nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = _shortcut(cin, cout, stride)


class _Up(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv_bn(cin + cskip, cout), _conv_bn(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else [2 * s for s in x.shape[-2:]]
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class UNet(nn.Module):
    """UNet returning logits at the input size.

    ``encoder='plain'``: ``depth`` levels of double 3x3 convs, ``width`` channels
    at the top, doubling per level. ``encoder='resnet18|34|50'``: a ResNet stem
    and four residual stages (``width`` = stem channels, 64 in the paper).
    """

    def __init__(self, in_channels: int, num_classes: int, encoder: str = "plain",
                 depth: int = 4, width: int = 32) -> None:
        super().__init__()
        self.encoder_name = encoder
        if encoder == "plain":
            chans = [width * 2**i for i in range(depth + 1)]
            self.stem = nn.Sequential(_conv_bn(in_channels, chans[0]), _conv_bn(chans[0], chans[0]))
            self.down = nn.ModuleList(
                nn.Sequential(nn.MaxPool2d(2), _conv_bn(chans[i], chans[i + 1]),
                              _conv_bn(chans[i + 1], chans[i + 1])) for i in range(depth))
            self.up = nn.ModuleList(_Up(chans[i + 1], chans[i], chans[i])
                                    for i in reversed(range(depth)))
            self.head = nn.Conv2d(chans[0], num_classes, 1)
        elif encoder in RESNET_LAYERS:
            kind, layers = RESNET_LAYERS[encoder]
            block = _Basic if kind == "basic" else _Bottleneck
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
                                      nn.BatchNorm2d(width), nn.ReLU(inplace=True))
            stages, cin, skips = [], width, [width]
            for i, n in enumerate(layers):
                blocks = []
                for j in range(n):
                    stride = 2 if j == 0 else 1
                    blocks.append(block(cin, width * 2**i, stride))
                    cin = width * 2**i * block.expansion
                stages.append(nn.Sequential(*blocks))
                skips.append(cin)
            self.down = nn.ModuleList(stages)
            dec = [width * 2**i for i in range(4)]  # decoder widths, shallow to deep
            ups, c = [], skips[-1]
            for i in reversed(range(4)):
                ups.append(_Up(c, skips[i], dec[i]))
                c = dec[i]
            ups.append(_Up(c, 0, max(width // 2, 8)))  # back to full resolution
            self.up = nn.ModuleList(ups)
            self.head = nn.Conv2d(max(width // 2, 8), num_classes, 3, padding=1)
        else:
            raise ValueError(f"unknown UNet encoder {encoder!r}: plain, "
                             f"{', '.join(RESNET_LAYERS)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.stem(x)]
        for stage in self.down:
            feats.append(stage(feats[-1]))
        y = feats.pop()
        for up in self.up:
            y = up(y, feats.pop() if feats else None)
        return self.head(y)


def build_unet(in_channels: int, num_classes: int, arch: dict[str, Any]) -> UNet:
    return UNet(in_channels, num_classes, encoder=arch.get("encoder", "plain"),
                depth=int(arch.get("depth", 4)), width=int(arch.get("width", 32)))
