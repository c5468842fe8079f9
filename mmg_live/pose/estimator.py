"""BlazePose landmarks from camera frames, through MediaPipe's bundled pose model.

:class:`PoseEstimator` is the one extractor of the project: the trainer runs it over the frames
of a recorded clip (UTD-MHAD depth renders) and the live pose stream runs it over camera frames,
so a model sees landmarks from the same network in training and live. The model is the
``pose_landmark_full.tflite`` that ships inside the ``mediapipe==0.10.21`` wheel (Apache-2.0);
nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mmg_live.pose.landmarks import NUM_LANDMARKS, POSE_CHANNELS

#: Version of the extraction (bump when frames are prepared differently); part of every pose cache key.
ESTIMATOR_VERSION = 2


class PoseUnavailable(RuntimeError):
    """MediaPipe (with its bundled pose model) cannot be imported; the message says how to install it."""


@dataclass(frozen=True)
class PoseSettings:
    """How frames become landmarks.

    Attributes:
        model_complexity: BlazePose variant, 0 (lite), 1 (full) or 2 (heavy).
        max_side: frames whose longer side exceeds this are downscaled first (pixels).
        min_detection_confidence: person detector threshold.
        min_tracking_confidence: below this the next frame runs the detector again.

    The thresholds default to 0.3: on the close-up colour clip (two people at a table, upper
    bodies only) MediaPipe's 0.5 found a person in 35 % of the frames (tracking every other
    frame), 0.3 in 85 %; on whole bodies both find ~98 %.
    """

    model_complexity: int = 1
    max_side: int = 640
    min_detection_confidence: float = 0.3
    min_tracking_confidence: float = 0.3

    def as_key(self) -> dict[str, Any]:
        """The settings as a cache-key dict."""
        return {
            "complexity": self.model_complexity,
            "max_side": self.max_side,
            "det": self.min_detection_confidence,
            "track": self.min_tracking_confidence,
        }


def import_mediapipe_pose() -> Any:
    """``mediapipe.solutions.pose``, or :class:`PoseUnavailable` with the install command."""
    try:
        from mediapipe.python.solutions import pose as mp_pose
    except Exception as exc:  # ImportError, or a protobuf mismatch raised at import time
        raise PoseUnavailable(
            f"pose needs mediapipe==0.10.21 ({type(exc).__name__}: {exc}); "
            "install with `pip install --no-deps mediapipe==0.10.21 attrs flatbuffers` (make venv does)"
        ) from exc
    return mp_pose


#: A rendered depth frame's foreground is stretched to [DEPTH_POSE_FLOOR, 255] before pose.
DEPTH_POSE_FLOOR = 60


def stretch_depth_render(gray: np.ndarray) -> np.ndarray:
    """Contrast-stretch one rendered depth frame (``[H, W]`` uint8, 0 = no reading, near = bright).

    The fixed depth rendering leaves a person at 2–3 m as a dim silhouette (gray 40–140) that
    the pose network does not recognise as a person; stretching the foreground's 1st–99th
    percentile to [``DEPTH_POSE_FLOOR``, 255] makes it one. It reads one frame only, so a live
    window and a recorded trial are rendered alike.
    """
    out = np.zeros_like(gray)
    foreground = gray > 0
    if not foreground.any():
        return out
    values = gray[foreground].astype(np.float32)
    lo, hi = np.percentile(values, (1.0, 99.0))
    scaled = np.clip((values - lo) / max(hi - lo, 1.0), 0.0, 1.0)
    out[foreground] = np.rint(DEPTH_POSE_FLOOR + scaled * (255 - DEPTH_POSE_FLOOR)).astype(np.uint8)
    return out


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` contiguous uint8 RGB for the pose network.

    A 3-channel frame is taken as RGB. A 1-channel frame is a rendered depth frame (the project's
    only gray video) and is contrast-stretched by :func:`stretch_depth_render` first.
    """
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3) or frame.dtype != np.uint8:
        raise ValueError(f"pose: expected an [H, W, 1|3] uint8 frame, got {frame.shape} {frame.dtype}")
    if frame.shape[2] == 1:
        frame = np.repeat(stretch_depth_render(frame[..., 0])[..., None], 3, axis=2)
    return np.ascontiguousarray(frame)


class PoseEstimator:
    """Landmarks of the most prominent person, frame by frame (tracking across calls).

    Not thread-safe: one estimator per thread. Call :meth:`reset` between unrelated clips so
    tracking does not carry over. :meth:`close` frees the graph.
    """

    def __init__(self, settings: PoseSettings | None = None) -> None:
        self.settings = settings or PoseSettings()
        self._mp_pose = import_mediapipe_pose()
        self._graph: Any = None
        self.reset()

    def reset(self) -> None:
        """Forget tracking state: the next frame runs the person detector."""
        self.close()
        s = self.settings
        self._graph = self._mp_pose.Pose(
            static_image_mode=False,
            model_complexity=s.model_complexity,
            smooth_landmarks=True,
            enable_segmentation=False,
            min_detection_confidence=s.min_detection_confidence,
            min_tracking_confidence=s.min_tracking_confidence,
        )

    def close(self) -> None:
        """Release the MediaPipe graph (idempotent)."""
        if self._graph is not None:
            self._graph.close()
            self._graph = None

    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def process(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks of one frame.

        Args:
            frame: ``[H, W, 3]`` RGB or ``[H, W, 1]`` rendered depth, uint8 (see :func:`to_rgb`).

        Returns:
            ``(world, image)``: ``world`` is ``[33, 4]`` float32 — x, y, z in metres around the
            hips, then visibility in [0, 1]; ``image`` is ``[33, 3]`` float32 — x, y normalised
            to the frame, z relative depth. Both are NaN when no person was found.
        """
        import cv2

        rgb = to_rgb(frame)
        h, w = rgb.shape[:2]
        scale = self.settings.max_side / max(h, w)
        if scale < 1.0:
            rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        result = self._graph.process(rgb)
        world = np.full((NUM_LANDMARKS, POSE_CHANNELS), np.nan, np.float32)
        image = np.full((NUM_LANDMARKS, 3), np.nan, np.float32)
        if result.pose_world_landmarks is not None:
            world[:] = [(p.x, p.y, p.z, p.visibility) for p in result.pose_world_landmarks.landmark]
        if result.pose_landmarks is not None:
            image[:] = [(p.x, p.y, p.z) for p in result.pose_landmarks.landmark]
        return world, image

    def process_frames(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`process` over ``[T, H, W, C]`` frames of one clip, from a fresh tracking state.

        Returns ``([T, 33, 4] world, [T, 33, 3] image)``.
        """
        self.reset()
        world = np.empty((len(frames), NUM_LANDMARKS, POSE_CHANNELS), np.float32)
        image = np.empty((len(frames), NUM_LANDMARKS, 3), np.float32)
        for i, frame in enumerate(frames):
            world[i], image[i] = self.process(frame)
        return world, image
