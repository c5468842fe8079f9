"""Pose for UTD-MHAD trials, extracted from the depth frames by the live pose estimator.

Each depth frame is rendered to gray by :func:`depth_to_gray8` (the same rendering the video
encoder reads) and passed through :class:`PoseEstimator`, the extractor the live pose stream
runs on camera frames; so training landmarks and live landmarks come from one code path.
Extraction costs about 22 ms a frame on one core (about 20 minutes for all 861 trials), so
the landmarks of each trial are cached, keyed by the depth file's content, the estimator's
version and its settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mmg_live.pose.estimator import ESTIMATOR_VERSION, PoseEstimator, PoseSettings
from trainer.data.cache import Cache, file_key
from trainer.data.clip import DataError, Stream
from trainer.data.utd_mhad import DEPTH_FPS, depth_to_gray8, load_depth

if TYPE_CHECKING:
    from trainer.data.utd_mhad import TrialRef

POSE_SOURCE = "utd-mhad-pose"
#: The estimator settings UTD-MHAD pose is extracted with (frames are 320×240 already). The
#: confidence thresholds are MediaPipe's defaults: the subject stands whole in every frame.
TRAINING_POSE_SETTINGS = PoseSettings(max_side=320, min_detection_confidence=0.5, min_tracking_confidence=0.5)


def extract_trial_pose(ref: "TrialRef", estimator: PoseEstimator) -> dict[str, np.ndarray]:
    """Landmarks of every depth frame of one trial: ``world`` ``[T, 33, 4]``, ``image`` ``[T, 33, 3]``."""
    frames = depth_to_gray8(load_depth(ref.depth_path))[..., None]
    world, image = estimator.process_frames(frames)
    return {"world": world, "image": image}


class TrialPoseReader:
    """Cached pose of UTD-MHAD trials; one estimator, created on first use.

    Args:
        cache: where extracted landmarks are kept (None: extract every time).
        settings: estimator settings (part of the cache key).
    """

    def __init__(self, cache: Cache | None, settings: PoseSettings | None = None) -> None:
        self.cache = cache
        self.settings = settings or TRAINING_POSE_SETTINGS
        self._estimator: PoseEstimator | None = None

    def key(self, ref: "TrialRef") -> dict:
        """The cache key of one trial's landmarks."""
        return {
            "reader": POSE_SOURCE,
            "estimator": ESTIMATOR_VERSION,
            "settings": self.settings.as_key(),
            "files": [file_key(ref.depth_path)],
        }

    def is_cached(self, ref: "TrialRef") -> bool:
        """Whether this trial's landmarks are already in the cache."""
        return self.cache is not None and self.cache.path_for(self.key(ref)).exists()

    def read(self, ref: "TrialRef") -> dict[str, np.ndarray]:
        """``world``, ``image`` and ``timestamps`` (frame i at i / 30 s) of one trial."""
        if not ref.depth_path.is_file():
            raise DataError(f"{ref.depth_path}: file is missing (pose is extracted from the depth frames)")

        def compute() -> dict[str, np.ndarray]:
            if self._estimator is None:
                self._estimator = PoseEstimator(self.settings)
            return extract_trial_pose(ref, self._estimator)

        arrays = compute() if self.cache is None else self.cache.cached(self.key(ref), compute)
        n = len(arrays["world"])
        return {**arrays, "timestamps": np.arange(n) / DEPTH_FPS}

    def stream(self, ref: "TrialRef") -> Stream:
        """One trial's pose as a clip stream: world landmarks + visibility ``[T, 33, 4]`` at 30 fps."""
        arrays = self.read(ref)
        return Stream(arrays["world"], arrays["timestamps"], DEPTH_FPS)

    def close(self) -> None:
        """Release the estimator."""
        if self._estimator is not None:
            self._estimator.close()
            self._estimator = None
