"""Video encoders: MViT-B (pytorchvideo, the paper's) and a small 3-D CNN for CPUs.

Both take ``[B, C, T, H, W]`` and return ``(tokens [B, N, dim], pooled [B, dim])``.
"""

from __future__ import annotations

import torch
from torch import nn


class MViTVideoEncoder(nn.Module):
    """pytorchvideo's MViT-B 16x4 (built untrained), without its classification head."""

    def __init__(self, channels: int = 3, frames: int = 16, size: int = 224) -> None:
        super().__init__()
        from pytorchvideo.models.hub.vision_transformers import mvit_base_16x4

        self.mvit = mvit_base_16x4(
            pretrained=False, input_channels=channels, temporal_size=frames,
            spatial_size=size, head=None,
        )
        self.dim = 768

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.mvit(x)  # [B, 1 + N, 768], already layer-normed
        return tokens[:, 1:], tokens[:, 0]


def _conv_norm(c_in: int, c_out: int, kernel: tuple[int, int, int], stride: tuple[int, int, int],
               norm: str) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    # GroupNorm behaves the same in training and inference and at batch 1 (live); BatchNorm
    # is kept as an option for large-batch training.
    layer = nn.BatchNorm3d(c_out) if norm == "batch" else nn.GroupNorm(min(8, c_out // 4), c_out)
    return nn.Sequential(nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False), layer,
                         nn.ReLU(inplace=True))


class Small3DCNN(nn.Module):
    """A compact 3-D CNN (the ``lite`` video encoder, chosen by measurement on depth clips).

    Four stages, each a strided conv followed by a stride-1 conv; the last feature map's
    positions are the tokens. With ``motion=True`` the network also sees the temporal
    difference of consecutive frames as extra channels: on UTD-MHAD depth this is what lets it
    generalise across people (motion) rather than memorise their silhouettes.
    """

    def __init__(self, channels: int = 1, widths: tuple[int, ...] = (24, 48, 96, 160),
                 dropout: float = 0.0, norm: str = "batch", motion: bool = False) -> None:
        super().__init__()
        self.motion = motion
        channels = channels * 2 if motion else channels
        if norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")
        strides = [(1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2)]
        layers: list[nn.Module] = []
        c_in = channels
        for i, (width, stride) in enumerate(zip(widths, strides)):
            kernel = (3, 5, 5) if i == 0 else (3, 3, 3)
            layers.append(_conv_norm(c_in, width, kernel, stride, norm))
            if i > 0:
                layers.append(_conv_norm(width, width, (3, 3, 3), (1, 1, 1), norm))
            c_in = width
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(c_in)
        self.dropout = nn.Dropout(dropout)
        self.dim = c_in

    def with_motion(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input channels: the clip, plus its temporal difference with ``motion``."""
        if not self.motion:
            return x
        diff = torch.diff(x, dim=2, prepend=x[:, :, :1])
        return torch.cat([x, 3.0 * diff], dim=1)

    def read_out(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, pooled)`` from the last feature map ``[B, D, T', H', W']``."""
        tokens = self.norm(fmap.flatten(2).transpose(1, 2))
        return tokens, self.dropout(tokens.mean(dim=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.read_out(self.features(self.with_motion(x)))


class OneDnnSmall3DCNN(nn.Module):
    """A trained :class:`Small3DCNN` prepared for CPU inference: each BatchNorm folded into the
    conv before it and the conv stack converted to oneDNN's blocked layout
    (``torch.utils.mkldnn``). Same outputs to ~1e-6, about half the time at batch 1 on 2 cores
    (``benchmarks/encoders.py``). Inference only (no autograd through oneDNN modules).
    """

    def __init__(self, trained: Small3DCNN) -> None:
        super().__init__()
        if not self.supports(trained):
            raise ValueError("OneDnnSmall3DCNN: needs a Small3DCNN with BatchNorm in eval mode and oneDNN")
        import warnings

        from torch.nn.utils.fusion import fuse_conv_bn_eval

        from torch.utils import mkldnn

        folded = [nn.Sequential(fuse_conv_bn_eval(conv, norm), relu) for conv, norm, relu in trained.features]
        with warnings.catch_warnings():  # torch's oneDNN modules are still built with torch.jit.script_method
            warnings.simplefilter("ignore", FutureWarning)
            self.features = mkldnn.to_mkldnn(nn.Sequential(*folded))
        self.trained = trained
        self.dim = trained.dim

    @staticmethod
    def supports(encoder: nn.Module) -> bool:
        """Whether ``encoder`` can be converted: a Small3DCNN with BatchNorm, in eval mode, on a
        CPU whose torch build has oneDNN."""
        return (isinstance(encoder, Small3DCNN) and not encoder.training and torch.backends.mkldnn.is_available()
                and all(isinstance(block[1], nn.BatchNorm3d) for block in encoder.features)
                and all(p.device.type == "cpu" for p in encoder.parameters()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.features(self.trained.with_motion(x).contiguous().to_mkldnn()).to_dense()
        return self.trained.read_out(fmap)
