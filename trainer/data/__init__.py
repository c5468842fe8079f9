"""Trainer data layer: one clip format, dataset readers, on-disk cache, splits and episodes.

Readers (import the module you need; they pull in scipy / OpenCV / PyAV / the recorder):
``utd_mhad`` (UTD-MHAD depth + IMU), ``fsdd`` (spoken digits), ``manifest`` (MMG-Ego4D-style
CSV/JSONL manifests), ``sessions`` (recorded mmg-live session folders), ``importer``
(UTD-MHAD → session folders), ``download`` and ``cli`` (``mmg-data``).
"""

from trainer.data.cache import Cache, config_hash, default_cache_dir, file_key
from trainer.data.clip import MODALITIES, Clip, DataError, Stream, validate_stream
from trainer.data.episodes import EpisodeSampler

__all__ = [
    "MODALITIES", "Cache", "Clip", "DataError", "EpisodeSampler", "Stream",
    "config_hash", "default_cache_dir", "file_key", "validate_stream",
]
