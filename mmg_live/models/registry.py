"""Named model configs (``paper``, ``lite``, ...) and the encoder builders they refer to.

A config is plain data (JSON round-trippable) so a checkpoint can rebuild its model exactly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Literal, get_args

from torch import nn

from mmg_common import MODALITIES
from mmg_live.modalities import AudioSpec, ImuSpec, ModalitySpecs, PoseSpec, VideoSpec

# ------------------------------------------------------------------------------ encoder builders

EncoderBuilder = Callable[..., nn.Module]
ENCODERS: dict[str, EncoderBuilder] = {}


def register_encoder(name: str) -> Callable[[EncoderBuilder], EncoderBuilder]:
    """Decorator: make an encoder builder available to configs under ``name``."""
    def wrap(fn: EncoderBuilder) -> EncoderBuilder:
        ENCODERS[name] = fn
        return fn
    return wrap


@register_encoder("mvit_b_16x4")
def _mvit(spec: VideoSpec, **kwargs: Any) -> nn.Module:
    from mmg_live.models.video import MViTVideoEncoder
    return MViTVideoEncoder(channels=spec.channels, frames=spec.frames, size=spec.size, **kwargs)


@register_encoder("small_3dcnn")
def _small_cnn(spec: VideoSpec, **kwargs: Any) -> nn.Module:
    from mmg_live.models.video import Small3DCNN
    if "widths" in kwargs:
        kwargs["widths"] = tuple(kwargs["widths"])
    return Small3DCNN(channels=spec.channels, **kwargs)


@register_encoder("ast")
def _ast(spec: AudioSpec, **kwargs: Any) -> nn.Module:
    from mmg_live.models.audio import ASTEncoder
    if "stride" in kwargs:
        kwargs["stride"] = tuple(kwargs["stride"])
    if spec.frontend != "kaldi_fbank":
        raise ValueError(f"encoder 'ast' reads a log-mel fbank; the audio spec's frontend is {spec.frontend!r}")
    return ASTEncoder(num_frames=spec.num_frames, n_mels=spec.n_mels, **kwargs)


@register_encoder("imu_transformer")
def _imu(spec: ImuSpec, **kwargs: Any) -> nn.Module:
    from mmg_live.models.imu import IMUTransformer
    return IMUTransformer(num_samples=spec.num_samples, channels=spec.channels, **kwargs)


@register_encoder("pose_transformer")
def _pose(spec: PoseSpec, **kwargs: Any) -> nn.Module:
    """The IMU transformer's architecture over the pose features (joints × features channels)."""
    from mmg_live.models.imu import IMUTransformer
    return IMUTransformer(num_samples=spec.num_samples, channels=spec.channels, **kwargs)


@register_encoder("speech_projection")
def _speech_projection(spec: AudioSpec, **kwargs: Any) -> nn.Module:
    """A LayerNorm + MLP (or linear) head over the frozen speech embedding (``frontend="speech_embedding"``)."""
    from mmg_live.models.speech import SpeechProjection
    if spec.frontend != "speech_embedding":
        raise ValueError(f"encoder 'speech_projection' reads the speech embedding; the audio spec's frontend "
                         f"is {spec.frontend!r} (set frontend='speech_embedding')")
    return SpeechProjection(in_dim=spec.output_shape()[0], **kwargs)


def build_encoder(kind: str, spec: Any, **kwargs: Any) -> nn.Module:
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder {kind!r}; expected one of {sorted(ENCODERS)}")
    return ENCODERS[kind](spec, **kwargs)


# ------------------------------------------------------------------------------------- configs

#: How the base classes are scored: ``fused`` is the classifier on the fused embedding;
#: ``ensemble`` the normalised geometric mean of it and the live modalities' unimodal heads.
ClassifierKind = Literal["fused", "ensemble"]
CLASSIFIER_KINDS: tuple[str, ...] = get_args(ClassifierKind)


@dataclass
class MMGConfig:
    """Everything needed to build an :class:`~mmg_live.models.mmg.MMGModel` (minus class names).

    ``classifier`` is how :meth:`~mmg_live.models.mmg.MMGModel.class_probabilities` scores the
    base classes (:data:`ClassifierKind`).
    """

    name: str
    specs: ModalitySpecs
    encoders: dict[str, dict[str, Any]]
    fusion: dict[str, Any]
    embed_dim: int = 128
    classifier: ClassifierKind = "fused"

    def __post_init__(self) -> None:
        if self.classifier not in CLASSIFIER_KINDS:
            raise ValueError(f"model config: classifier must be one of {CLASSIFIER_KINDS}, got {self.classifier!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "specs": self.specs.to_dict(), "encoders": copy.deepcopy(self.encoders),
            "fusion": dict(self.fusion), "embed_dim": self.embed_dim, "classifier": self.classifier,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "MMGConfig":
        """Rebuild a config from :meth:`to_dict` output, or from an older checkpoint's header,
        which kept the classifier kind in a free-form ``extra`` dict."""
        missing = {"name", "specs", "encoders", "fusion"} - set(values)
        if missing:
            raise ValueError(f"model config: missing keys {sorted(missing)}")
        encoders = values["encoders"]
        unknown = set(encoders) - set(MODALITIES)
        if unknown:
            raise ValueError(f"model config: unknown modalities {sorted(unknown)}")
        legacy = dict(values.get("extra") or {})
        classifier = values.get("classifier", legacy.pop("classifier", "fused"))
        if legacy:
            raise ValueError(f"model config: unknown extra keys {sorted(legacy)}")
        return cls(
            name=values["name"], specs=ModalitySpecs.from_dict(values["specs"]),
            encoders=copy.deepcopy(encoders), fusion=dict(values["fusion"]),
            embed_dim=int(values.get("embed_dim", 128)), classifier=classifier,
        )


CONFIGS: dict[str, Callable[[], MMGConfig]] = {}


def register_config(fn: Callable[[], MMGConfig]) -> Callable[[], MMGConfig]:
    """Decorator: register a config factory under the name of the config it returns."""
    CONFIGS[fn().name] = fn
    return fn


def get_config(name: str) -> MMGConfig:
    """A fresh copy of a named config."""
    if name not in CONFIGS:
        raise ValueError(f"unknown model config {name!r}; available: {sorted(CONFIGS)}")
    return CONFIGS[name]()


@register_config
def paper() -> MMGConfig:
    """The MMG-Ego4D encoders: MViT-B 16x4 (224²), AST-Base, a 15.5 M-param IMU transformer (and one for pose)."""
    specs = ModalitySpecs(
        video=VideoSpec(frames=16, size=224, color="rgb", window_s=16 * 4 / 30.0,
                        mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225)),
        audio=AudioSpec(window_s=10.24),
        imu=ImuSpec(rate=200.0, window_s=5.0),
        pose=PoseSpec(rate=30.0, window_s=5.0),
    )
    return MMGConfig(
        name="paper", specs=specs,
        encoders={
            "video": {"kind": "mvit_b_16x4"},
            "audio": {"kind": "ast", "patch": 16, "stride": [10, 16], "dim": 768, "depth": 12, "heads": 12},
            "imu": {"kind": "imu_transformer", "patch": 6, "dim": 512, "depth": 5, "heads": 8},
            "pose": {"kind": "pose_transformer", "patch": 6, "dim": 512, "depth": 5, "heads": 8},
        },
        fusion={"kind": "attention", "dim": 768, "depth": 2, "heads": 12},
        embed_dim=256,
    )


@register_config
def lite_fbank() -> MMGConfig:
    """Real time on 2 CPU cores, every encoder trained here: small 3-D CNN on 16×64² gray clips, a
    CNN-stem AST on the 1 s log-mel fbank, CNN-stem IMU/pose transformers (the audio ablation of
    ``lite``)."""
    specs = ModalitySpecs(
        video=VideoSpec(frames=16, size=64, color="gray", window_s=2.0, crop="foreground"),
        audio=AudioSpec(window_s=1.0),
        imu=ImuSpec(rate=50.0, window_s=3.0),
        pose=PoseSpec(rate=15.0, window_s=3.0),
    )
    return MMGConfig(
        name="lite_fbank", specs=specs,
        encoders={
            "video": {"kind": "small_3dcnn", "widths": [24, 48, 96, 160], "dropout": 0.2, "motion": True},
            "audio": {"kind": "ast", "stem": "cnn", "cnn_stages": 4, "cnn_width": 16, "cnn_strided_first": True,
                      "dim": 192, "depth": 2, "heads": 3, "pool": "mean", "dropout": 0.1},
            "imu": {"kind": "imu_transformer", "stem": "cnn", "cnn_stages": 3, "dim": 128, "depth": 2, "heads": 4,
                    "pool": "mean", "dropout": 0.1},
            "pose": {"kind": "pose_transformer", "stem": "cnn", "cnn_stages": 2, "dim": 128, "depth": 2, "heads": 4,
                     "pool": "mean", "dropout": 0.1},
        },
        fusion={"kind": "attention", "dim": 128, "depth": 2, "heads": 4, "dropout": 0.1},
        embed_dim=128,
    )


@register_config
def lite() -> MMGConfig:
    """Real time on 2 CPU cores: ``lite_fbank`` with the frozen pretrained speech embedding
    (EfficientWord-Net ResNet-50, 1.5 s at 16 kHz) and a small trainable projection as its audio
    encoder: it generalises to unseen voices where the fbank AST, trained on three, does not."""
    from dataclasses import replace

    config = lite_fbank()
    config.name = "lite"
    config.specs = replace(config.specs, audio=AudioSpec(window_s=1.5, sample_rate=16000, frontend="speech_embedding",
                                                         mean=0.0, std=0.5))
    config.encoders["audio"] = {"kind": "speech_projection", "dim": 192, "hidden": 512, "dropout": 0.1}
    return config
