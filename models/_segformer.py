"""SegFormer built from a ``transformers`` config (MiT-b0 by default); no hub download."""

from __future__ import annotations

from typing import Any

from torch import nn


class SegFormer(nn.Module):
    """Returns logits at 1/4 of the input size; the adapter upsamples them."""

    def __init__(self, in_channels: int, num_classes: int, config: dict[str, Any]) -> None:
        super().__init__()
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        cfg = SegformerConfig(num_channels=in_channels, num_labels=num_classes, **config)
        self.net = SegformerForSemanticSegmentation(cfg)

    def forward(self, x: Any) -> Any:
        return self.net(pixel_values=x).logits


def build_segformer(in_channels: int, num_classes: int, arch: dict[str, Any]) -> SegFormer:
    config = {k: v for k, v in arch.items() if k != "kind"}
    return SegFormer(in_channels, num_classes, config)
