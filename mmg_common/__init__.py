"""What every package of mmg-live shares and nothing else: the modality names, one-line error
messages and crash-safe file writes. It imports nothing from the project, so every layer
(devices, calibration, the model, the trainer, the app) can use it without an import cycle."""

from mmg_common.files import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text
from mmg_common.messages import one_line
from mmg_common.modalities import MODALITIES

__all__ = ["MODALITIES", "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "one_line"]
