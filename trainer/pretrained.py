"""The seed's pretrained starting points for the ``paper`` encoders (a recipe's ``pretrained``).

* ``mvit_b_16x4_k400``: pytorchvideo's MViT-B 16×4 trained on Kinetics-400 (``MVIT_B_16x4.pyth``,
  ``{"model_state": ...}`` in the layout of ``pytorchvideo.models.hub.mvit_base_16x4``) → the video
  encoder (:class:`~mmg_live.models.video.MViTVideoEncoder`); the Kinetics head is left out.
* ``ast_audioset``: the Audio Spectrogram Transformer trained on AudioSet
  (``audioset_10_10_0.4593.pth``, the state of ``DataParallel(ASTModel)``: ``module.v.*`` a DeiT-B
  with class and distillation tokens, ``module.mlp_head.*``) → the audio encoder
  (:class:`~mmg_live.models.audio.ASTEncoder`, ``stem="patch"``): the class token, the patch
  embedding, the 12 blocks (``qkv`` is ``in_proj``) and the final norm; the positions of the
  publisher's 12 × 101 patch grid are resampled (bilinear) to the encoder's grid, as AST does for
  other strides; the distillation token and the AudioSet head are left out.

A file is looked for in the weights folder (``$MMG_WEIGHTS``, default
``~/.cache/mmg-live/weights``), downloaded there when it is missing and the network allows
(never with ``MMG_OFFLINE=1``); otherwise loading fails at once with one line that names the URL
and the path to put the file at. Files are read with ``torch.load(weights_only=True)`` (or as
safetensors): nothing is unpickled but tensors and plain containers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from mmg_common import one_line
from mmg_live.models.mmg import MMGModel

StateDict = dict[str, torch.Tensor]


class PretrainedUnavailable(FileNotFoundError):
    """A pretrained file that is neither in the weights folder nor downloadable; says what to do."""


@dataclass(frozen=True)
class PretrainedSource:
    """Where a publisher's checkpoint comes from and which encoder it starts."""

    url: str
    filename: str
    modality: str
    encoder_kind: str  # the config's encoder kind it fits
    to_encoder: Callable[[StateDict, torch.nn.Module], StateDict]  # publisher's state → encoder's


def weights_folder() -> Path:
    """``$MMG_WEIGHTS``, else ``~/.cache/mmg-live/weights``."""
    env = os.environ.get("MMG_WEIGHTS")
    return Path(env) if env else Path.home() / ".cache" / "mmg-live" / "weights"


def mvit_from_pytorchvideo(checkpoint: StateDict, encoder: torch.nn.Module) -> StateDict:
    """pytorchvideo's ``model_state`` → :class:`MViTVideoEncoder` (``mvit.`` prefix, no head)."""
    state = checkpoint.get("model_state", checkpoint)
    return {f"mvit.{k}": v for k, v in state.items() if not k.startswith("head.")}


def resample_positions(grid: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Position embeddings ``[R, C, D]`` of a patch grid resampled (bilinear) to ``[rows·cols, D]``."""
    if grid.shape[:2] == (rows, cols):
        return grid.reshape(rows * cols, -1)
    image = grid.permute(2, 0, 1).unsqueeze(0)  # [1, D, R, C]
    resized = F.interpolate(image, size=(rows, cols), mode="bilinear", align_corners=False)
    return resized[0].permute(1, 2, 0).reshape(rows * cols, -1)


AST_GRID = (12, 101)  # the publisher's patch grid: 128 mels × 1024 frames at stride 10 × 10


def ast_from_audioset(checkpoint: StateDict, encoder: torch.nn.Module) -> StateDict:
    """The AudioSet AST (``module.v.*``) → :class:`ASTEncoder` with the patch stem."""
    v = {k.removeprefix("module.").removeprefix("v."): t for k, t in checkpoint.items()
         if k.startswith(("module.v.", "v."))}
    if not v:
        raise ValueError("not an AST checkpoint: no module.v.* keys")
    rows, cols = encoder.grid
    grid = v["pos_embed"][0, 2:].reshape(*AST_GRID, -1)
    out = {
        "patch_embed.weight": v["patch_embed.proj.weight"], "patch_embed.bias": v["patch_embed.proj.bias"],
        "backbone.cls_token": v["cls_token"],
        "backbone.pos_embed": torch.cat([v["pos_embed"][:, :1], resample_positions(grid, rows, cols)[None]], 1),
        "backbone.norm.weight": v["norm.weight"], "backbone.norm.bias": v["norm.bias"],
    }
    depth = 1 + max(int(k.split(".")[1]) for k in v if k.startswith("blocks."))
    names = {"norm1": "norm1.{}", "norm2": "norm2.{}", "attn.qkv": "self_attn.in_proj_{}",
             "attn.proj": "self_attn.out_proj.{}", "mlp.fc1": "linear1.{}", "mlp.fc2": "linear2.{}"}
    for i in range(depth):
        for theirs, ours in names.items():
            for p in ("weight", "bias"):
                out[f"backbone.encoder.layers.{i}.{ours.format(p)}"] = v[f"blocks.{i}.{theirs}.{p}"]
    return out


PRETRAINED: dict[str, PretrainedSource] = {
    "mvit_b_16x4_k400": PretrainedSource(
        "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/MVIT_B_16x4.pyth", "MVIT_B_16x4.pyth",
        "video", "mvit_b_16x4", mvit_from_pytorchvideo),
    "ast_audioset": PretrainedSource(
        "https://www.dropbox.com/s/ca0b1v2nlxzyeb4/audioset_10_10_0.4593.pth?dl=1", "audioset_10_10_0.4593.pth",
        "audio", "ast", ast_from_audioset),
}


def fetch(name: str, folder: Path | None = None) -> Path:
    """The local file of pretrained ``name``: in ``folder``, else downloaded into it."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained weights {name!r}; expected one of {sorted(PRETRAINED)}")
    source = PRETRAINED[name]
    folder = folder or weights_folder()
    path = folder / source.filename
    if path.is_file():
        return path
    if os.environ.get("MMG_OFFLINE") == "1":
        reason = "MMG_OFFLINE=1"
    else:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(source.url, str(path), progress=False)
            return path
        except Exception as exc:  # URLError, HTTPError, OSError, timeouts
            path.unlink(missing_ok=True)
            reason = one_line(exc, limit=120)
    raise PretrainedUnavailable(f"pretrained {name}: {path} is missing and the download failed ({reason}); "
                                f"download {source.url} and put it at {path} (or set MMG_WEIGHTS to its folder)")


def read_state(path: Path) -> StateDict:
    """Tensors of a publisher's file, unpickling nothing else (safetensors, or weights_only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything beyond tensors and plain containers
        raise ValueError(f"{path}: not loadable as weights only ({one_line(exc, limit=160)})") from None


def init_from_pretrained(model: MMGModel, names: list[str], folder: Path | None = None) -> None:
    """Load each of ``names`` (:data:`PRETRAINED`) into its encoder of ``model`` (every encoder
    weight must be covered: a mapping that misses one is an error, not a silent random start)."""
    for name in names:
        if name not in PRETRAINED:
            raise ValueError(f"unknown pretrained weights {name!r}; expected one of {sorted(PRETRAINED)}")
        source = PRETRAINED[name]
        kind = model.config.encoders.get(source.modality, {}).get("kind")
        if kind != source.encoder_kind:
            raise ValueError(f"pretrained {name} starts a {source.encoder_kind} {source.modality} encoder; "
                             f"this config's is {kind!r} (use the paper config)")
        path = fetch(name, folder)
        encoder = model.encoders[source.modality]
        try:
            mapped = source.to_encoder(read_state(path), encoder)
            own = encoder.state_dict()
            wrong = [k for k in mapped if k in own and mapped[k].shape != own[k].shape]
            if wrong:
                raise ValueError(f"{wrong[0]}: {tuple(mapped[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)}")
            encoder.load_state_dict(mapped, strict=True)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{path}: does not fit the {source.modality} encoder as {name} "
                             f"({one_line(exc, limit=200)})") from None
