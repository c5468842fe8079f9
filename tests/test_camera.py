"""Camera source on lossless video files, an image sequence and a live MJPEG-over-HTTP
stream; errors for a missing camera or file."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from devices.base import DeviceError, Source
from devices.camera import CameraSource
from emulation_devices import MjpegServer, frame_pattern, mjpeg_level, wait_for, write_ffv1_avi


def _collect(src: CameraSource) -> tuple[list, threading.Lock]:
    chunks, lock = [], threading.Lock()

    def on_chunk(c):
        with lock:
            chunks.append(c)

    src.subscribe(on_chunk)
    return chunks, lock


def test_file_plays_exact_frames_at_its_fps_then_stops(tmp_path):
    fps, n = 30.0, 30
    path = write_ffv1_avi(tmp_path / "clip.avi", n, fps)
    src = CameraSource(path, name="front")
    assert isinstance(src, Source)
    assert src.latest_frame() is None
    chunks, lock = _collect(src)
    src.start()
    try:
        wait_for(lambda: src.health().extra["eof"], 5.0, "the end of the file")
        wait_for(lambda: not src.running, 2.0, "the source to stop itself")
    finally:
        src.stop()
    assert len(chunks) == n
    for i, c in enumerate(chunks):
        assert c.modality == "video" and c.stream == "front"
        assert c.data.shape == (1, 48, 64, 3) and c.data.dtype == np.uint8
        np.testing.assert_array_equal(c.data[0], frame_pattern(i))  # exact pixels, in order, RGB
    ts = np.array([c.timestamps[0] for c in chunks])
    d = np.diff(ts)
    assert np.all(d > 0)
    assert np.median(d) == pytest.approx(1 / fps, abs=0.005)
    assert ts[-1] - ts[0] == pytest.approx((n - 1) / fps, abs=0.05)
    h = src.health()
    assert h.extra["eof"] and not h.connected and h.error is None
    assert h.samples == n and h.nominal_rate == fps and h.dropped == 0
    assert h.measured_rate == pytest.approx(fps, rel=0.1)
    t_last, frame = src.latest_frame()
    assert t_last == ts[-1]
    np.testing.assert_array_equal(frame, frame_pattern(n - 1))


def test_loop_and_grayscale(tmp_path):
    path = write_ffv1_avi(tmp_path / "short.avi", 10, 50.0)
    src = CameraSource(str(path), loop=True, grayscale=True)
    chunks, lock = _collect(src)
    src.start()
    try:
        wait_for(lambda: len(chunks) >= 25, 3.0, "25 frames from a 10-frame loop")
    finally:
        src.stop()
    with lock:
        frames = [c.data for c in chunks[:25]]
    health = src.health()
    assert health.extra["loops"] >= 2 and not health.extra["eof"]
    patterns = [cv2.cvtColor(frame_pattern(i), cv2.COLOR_RGB2GRAY) for i in range(10)]
    indices = []
    for data in frames:
        assert data.shape == (1, 48, 64, 1)
        matches = [i for i, p in enumerate(patterns) if np.array_equal(data[0, :, :, 0], p)]
        assert len(matches) == 1, "every frame is one of the file's frames, pixel for pixel"
        indices.append(matches[0])
    assert indices[0] == 0
    # Frames come in file order, wrapping at the end; a loaded machine may make the paced
    # source skip frames like a real camera, and then it must count every skipped one.
    steps = [(b - a) % 10 for a, b in zip(indices, indices[1:])]
    assert all(step >= 1 for step in steps)
    assert sum(step - 1 for step in steps) <= health.dropped


def test_png_sequence_paced_at_requested_fps(tmp_path):
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"{i:04d}.png"), cv2.cvtColor(frame_pattern(i), cv2.COLOR_RGB2BGR))
    src = CameraSource(str(tmp_path / "%04d.png"), fps=40.0)
    chunks, lock = _collect(src)
    src.start()
    try:
        wait_for(lambda: not src.running, 3.0, "the end of the sequence")
    finally:
        src.stop()
    # A loaded machine may make the paced source skip a frame, as a real camera would; then the
    # frames that did come are still the file's, in order, and every skipped one is counted.
    indices = []
    for c in chunks:
        matches = [i for i in range(12) if np.array_equal(c.data[0], frame_pattern(i))]
        assert len(matches) == 1, "every frame is one of the files, pixel for pixel"
        indices.append(matches[0])
    assert indices[0] == 0 and indices == sorted(set(indices))
    assert len(chunks) >= 10 and len(chunks) + src.health().dropped >= 12
    d = np.diff([c.timestamps[0] for c in chunks])
    assert np.median(d) == pytest.approx(1 / 40, abs=0.005)


def test_live_mjpeg_stream_over_http():
    fps = 20.0
    with MjpegServer(fps) as server:
        src = CameraSource(server.url, fps=fps)
        chunks, lock = _collect(src)
        src.start()
        try:
            wait_for(lambda: len(chunks) >= 30, 5.0, "30 frames from the MJPEG server")
        finally:
            src.stop()
    with lock:
        chunks = list(chunks)
    levels = np.array([int(round(c.data[0].mean())) for c in chunks])
    index = np.round(levels / 5).astype(int)
    assert np.all(np.abs(levels - [mjpeg_level(i) for i in index]) <= 2)
    assert np.all(np.diff(index) >= 1)  # in order, none repeated
    ts = np.array([c.timestamps[0] for c in chunks])
    # Stamped on arrival at the server's pace (the first few come in a burst while OpenCV probes).
    assert np.median(np.diff(ts[5:])) == pytest.approx(1 / fps, abs=0.005)
    h = src.health()
    assert h.extra["kind"] == "url" and h.nominal_rate == fps
    assert h.measured_rate == pytest.approx(fps, rel=0.15)


@pytest.mark.parametrize("spec", [7, "7"])
def test_missing_camera_index_raises(spec):
    with pytest.raises(DeviceError, match=r"^camera 7: cannot open \(no camera at this index"):
        CameraSource(spec).start()


def test_missing_file_raises(tmp_path):
    with pytest.raises(DeviceError, match=r"camera .*nope\.avi: cannot open: no such file"):
        CameraSource(tmp_path / "nope.avi").start()
    (tmp_path / "junk.avi").write_bytes(b"not a video at all" * 10)
    with pytest.raises(DeviceError, match=r"junk\.avi: cannot open \(OpenCV cannot read it\)"):
        CameraSource(tmp_path / "junk.avi").start()
