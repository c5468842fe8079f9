"""Still clips for the "no action" class, made from the training clips themselves.

A person standing still before and after an action is what a live window holds most of the
time. Each training clip gives two still clips: its first and its last sample of every
modality held for ``duration_s`` (the video frame, the IMU sample, the pose landmarks), which is
what a camera, a resting sensor and the pose extractor deliver while nothing happens; the
trainer's IMU noise augmentation adds the sensor's jitter. Audio is left out (silence is not
an action's absence in a spoken-digit set).
"""

from __future__ import annotations

import numpy as np

from mmg_live.no_action import NO_ACTION
from trainer.data.clip import Clip, Stream

__all__ = ["NO_ACTION", "still_clips"]


def _held(stream: Stream, first: bool, duration_s: float) -> Stream | None:
    data = stream.data
    if np.issubdtype(data.dtype, np.floating):  # pose: the nearest frame with a person
        finite = np.flatnonzero(np.isfinite(data.reshape(len(data), -1)).all(axis=1))
        if not len(finite):
            return None
        index = int(finite[0] if first else finite[-1])
    else:
        index = 0 if first else len(data) - 1
    rate = stream.rate if stream.rate > 0 else 30.0
    n = max(2, int(round(duration_s * rate)))
    return Stream(np.repeat(data[index:index + 1], n, axis=0), np.arange(n) / rate, rate)


def still_clips(clips: list[Clip], label: int, duration_s: float) -> list[Clip]:
    """Two still clips (start and end held) per clip with a video, IMU or pose stream, labelled ``label``."""
    out = []
    for clip in clips:
        for first in (True, False):
            streams = {}
            for m, s in clip.streams.items():
                if m == "audio" or not len(s):
                    continue
                held = _held(s, first, duration_s)
                if held is not None:
                    streams[m] = held
            if streams:
                out.append(Clip(clip_id=f"{clip.clip_id}-still-{'start' if first else 'end'}", streams=streams,
                                label=label, label_name=NO_ACTION, subject=clip.subject, session=clip.session,
                                split=clip.split, source=clip.source))
    return out
