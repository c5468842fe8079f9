"""An imported UTD-MHAD trial replays through the live Source path with its samples and timing."""

from __future__ import annotations

import numpy as np

from devices.replay import open_replay
from trainer.data.importer import import_utd_mhad
from trainer.data.utd_mhad import list_trials, load_trial


def test_imported_trial_replays_exactly(utd_mhad_dir, tmp_path):
    report = import_utd_mhad(utd_mhad_dir, tmp_path / "sessions", subjects=[4], actions=[9])
    ref = list_trials(utd_mhad_dir, subjects=[4], actions=[9])[0]
    clip = load_trial(ref)
    folder = tmp_path / "sessions" / ref.clip_id
    assert folder.is_dir(), report
    speed = 8.0
    sources = {s.modality: s for s in open_replay(folder, speed=speed)}
    assert set(sources) == {"video", "imu"}
    got: dict[str, list] = {m: [] for m in sources}
    for m, src in sources.items():
        src.subscribe(got[m].append)
    for src in sources.values():
        src.start()
    try:
        for src in sources.values():
            assert src.finished.wait(timeout=10.0), f"{src.name} did not finish"
    finally:
        for src in sources.values():
            src.stop()
    for m in ("video", "imu"):
        ts = np.concatenate([c.timestamps for c in got[m]])
        data = np.concatenate([c.data for c in got[m]])
        original = clip.streams[m]
        np.testing.assert_array_equal(data, original.data)  # depth rendered once, losslessly
        # Relative timing is the trial's, compressed by the replay speed.
        np.testing.assert_allclose(np.diff(ts) * speed, np.diff(original.timestamps), atol=1e-6)
    # Both streams share one replay clock: their first samples keep the trial's alignment.
    first_v = np.concatenate([c.timestamps for c in got["video"]])[0]
    first_i = np.concatenate([c.timestamps for c in got["imu"]])[0]
    recorded_gap = clip.streams["imu"].timestamps[0] - clip.streams["video"].timestamps[0]
    assert abs((first_i - first_v) * speed - recorded_gap) < 1e-6
