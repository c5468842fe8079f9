"""The Qt GUI (offscreen): main window on a replayed session, custom-action recording, device
picker, calibration dialog."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")

from devices.base import Chunk, SourceBase, host_now  # noqa: E402
from synthetic_session import CLASSES, write_checkpoint, write_session  # noqa: E402
from mmg_live.cli import build_parser, live_options  # noqa: E402
from mmg_live.gui.app import load_bank, load_model  # noqa: E402
from mmg_live.gui.live_session import LiveSession  # noqa: E402
from mmg_live.gui.main_window import MainWindow  # noqa: E402
from mmg_live.prototypes import PrototypeBank  # noqa: E402


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("gui")
    return write_session(root / "session"), write_checkpoint(root / "model.safetensors")


class Collector:
    """Predictions straight from the engine's worker thread."""

    def __init__(self) -> None:
        self.items = []
        self.lock = threading.Lock()

    def __call__(self, pred) -> None:
        with self.lock:
            self.items.append(pred)

    def by_seq(self, seq: int):
        with self.lock:
            return next((p for p in self.items if p.seq == seq), None)


def open_window(qtbot, assets, tmp_path, *extra: str) -> MainWindow:
    session_dir, ckpt = assets
    options = live_options(build_parser().parse_args([
        "--replay", str(session_dir), "--checkpoint", str(ckpt), "--device", "cpu",
        "--prototypes", str(tmp_path / "custom.safetensors"), *extra]))
    model, note = load_model(options)
    assert model is not None, note
    bank, note = load_bank(options, model)
    assert note is None
    window = MainWindow(LiveSession(options, model, bank), source_label="TEST — replay of a synthetic session")
    qtbot.addWidget(window)  # closed (and the session shut down) at teardown
    window.show()
    window.start()
    qtbot.waitUntil(window.sources_ready.is_set, timeout=15000)
    return window


def wait_prediction(qtbot, window, after_seq: int, timeout: float = 15000):
    qtbot.waitUntil(lambda: window.last_prediction is not None and window.last_prediction.seq > after_seq,
                    timeout=timeout)
    return window.last_prediction


def test_main_window_predictions_preview_health_switches_and_stale(qtbot, assets, tmp_path):
    window = open_window(qtbot, assets, tmp_path)
    session = window.session
    got = Collector()
    session.engine.add_listener(got)
    assert window.source_banner.isVisible() and "replay" in window.source_banner.text()

    # preview: new frames shown at the replay's 30 fps, independent of inference
    qtbot.waitUntil(lambda: window.preview.frames_shown > 0, timeout=10000)
    f0, p0, t0 = window.preview.frames_shown, window.preview.paints, time.monotonic()
    qtbot.wait(2000)
    elapsed = time.monotonic() - t0
    fps = (window.preview.frames_shown - f0) / elapsed
    painted = (window.preview.paints - p0) / elapsed
    print(f"preview: {fps:.1f} new frames/s, {painted:.1f} paints/s")
    assert fps >= 25, fps
    assert painted >= 25, painted

    # bars show exactly the engine's prediction of the same sequence number (once both modalities
    # are live: video's 2 s window fills before the IMU's 3 s one)
    qtbot.waitUntil(lambda: window.last_prediction is not None
                    and window.last_prediction.modalities == ["video", "imu"], timeout=15000)
    qtbot.wait(50)
    seq = window.bars.seq
    engine_pred = got.by_seq(seq)
    assert engine_pred is not None
    assert [e[0] for e in window.bars.entries] == [e["label"] for e in engine_pred.top]
    assert [e[1] for e in window.bars.entries] == pytest.approx([e["p"] for e in engine_pred.top])
    assert {e[2] for e in window.bars.entries} == {"base"}
    assert sorted(e[0] for e in window.bars.entries) == sorted(CLASSES)
    assert engine_pred.modalities == ["video", "imu"]
    assert "video + imu" in window.used_label.text()

    # health rows near the replay's rates, nothing stale
    window._refresh_health()
    rates = window.health.rates
    assert rates["video"] == pytest.approx(30, abs=4)
    assert rates["imu"] == pytest.approx(50, abs=7)
    assert rates["audio"] == pytest.approx(16000, rel=0.12)
    assert window.health.stale == {"video": None, "audio": None, "imu": None}
    assert "latency p50" in window.latency_label.text() and "predictions/s" in window.latency_label.text()
    assert window.latency_label.text() != "latency p50 — / p95 — ms · 0.0 predictions/s"

    # untrained audio: switch disabled, with why
    assert not window.switches["audio"].isEnabled()
    assert "not trained" in window.switches["audio"].toolTip()
    assert window.switches["video"].isEnabled() and window.switches["imu"].isEnabled()

    # privacy: video off → predictions from the IMU alone; on again → both
    window.switches["video"].setChecked(False)
    assert session.engine.enabled("video") is False
    s0 = window.last_prediction.seq + 1  # one may be in flight
    preds = [wait_prediction(qtbot, window, s0)]
    preds.append(wait_prediction(qtbot, window, preds[-1].seq))
    assert all(p.modalities == ["imu"] for p in preds), [p.modalities for p in preds]
    assert "modalities used: imu ·" in window.used_label.text()
    window.switches["video"].setChecked(True)
    s1 = window.last_prediction.seq + 1
    assert wait_prediction(qtbot, window, s1).modalities == ["video", "imu"]

    # a source that stops is marked stale (red, with the reason) while the others keep going
    imu = next(o.source for o in session.opened if o.source.name == "imu")
    imu.stop()
    qtbot.waitUntil(lambda: bool(window.health.stale.get("imu")), timeout=4000)
    assert "no sample for" in window.health.stale["imu"]
    assert window.health.stale["video"] is None
    row = [window.health.item(r, 0).text() for r in range(window.health.rowCount())].index("imu")
    assert window.health.item(row, 6).background().color().name() == "#ffd0d0"
    assert "imu" in window.device_banner.text() and window.device_banner.isVisible()


def test_record_custom_action_redo_rename_delete_save_reload(qtbot, assets, tmp_path):
    from mmg_live.gui.record_dialog import RecordActionDialog

    window = open_window(qtbot, assets, tmp_path)
    session = window.session
    # buffers cover every window (video's 2 s is live before the IMU's 3 s)
    qtbot.waitUntil(lambda: window.last_prediction is not None
                    and window.last_prediction.modalities == ["video", "imu"], timeout=15000)

    # a base-class name and an empty name are refused with a message, nothing recorded
    clash = RecordActionDialog(session, window, countdown_s=0, length_s=0.3, examples=2)
    qtbot.addWidget(clash)
    clash.name_edit.setText("walk")
    clash.start_button.click()
    assert "clashes with a base class" in clash.message.text()
    clash.name_edit.setText("   ")
    clash.start_button.click()
    assert clash.message.text() == "Give the action a name."
    assert clash.examples == [] and not clash.keep_button.isEnabled() and len(session.bank) == 0

    dialog = RecordActionDialog(session, window, countdown_s=0, length_s=0.3, examples=5)
    qtbot.addWidget(dialog)
    assert dialog.count_spin.value() == 5
    assert RecordActionDialog(session, window).length_spin.value() == pytest.approx(3.0)  # longest window
    dialog.count_spin.setValue(3)
    dialog.name_edit.setText("drink")
    dialog.start_button.click()
    captured = 0
    for action in ("keep", "redo", "keep", "keep"):
        qtbot.waitUntil(dialog.keep_button.isEnabled, timeout=5000)
        captured += 1
        assert dialog.current is not None and set(dialog.current.tensors) == {"video", "imu"}
        assert dialog.thumbnail.pixmap() is not None and not dialog.thumbnail.pixmap().isNull()
        getattr(dialog, f"{action}_button").click()
    assert captured == 4 and len(dialog.examples) == 3
    assert dialog.finish_button.isEnabled()
    dialog.finish_button.click()
    qtbot.waitUntil(lambda: dialog.enrolled_name == "drink", timeout=10000)
    assert session.bank.counts() == {"drink": 3}
    assert session.engine.prototypes is session.bank

    # live at once: the next predictions rank the custom action with the base classes
    s0 = window.last_prediction.seq + 1
    pred = wait_prediction(qtbot, window, s0)
    assert ("drink", "custom") in {(e["label"], e["kind"]) for e in pred.top}
    assert any(e == ("drink", pytest.approx(next(t["p"] for t in pred.top if t["label"] == "drink")), "custom")
               for e in window.bars.entries) or window.bars.seq != pred.seq

    panel = window.custom_panel
    panel.refresh()
    assert [panel.list.item(i).text() for i in range(panel.list.count())] == ["drink (3 examples)"]
    assert panel.rename("drink", "sit") is False and "clashes with a base class" in panel.message.text()
    assert panel.rename("drink", "sip") is True
    assert session.bank.names() == ["sip"]
    saved = panel.save()
    assert saved == tmp_path / "custom.safetensors" and saved.is_file()
    reloaded = PrototypeBank.load(saved, session.model)
    assert reloaded.counts() == {"sip": 3}
    bank, note = load_bank(session.options, session.model)  # what the next start loads
    assert note is None and bank.counts() == {"sip": 3}
    assert panel.delete("sip") is True
    assert len(session.bank) == 0 and session.engine.prototypes is None
    assert panel.delete("sip") is False and "no custom action" in panel.message.text()


def test_device_dialog_missing_devices_reported_others_keep_running(qtbot, assets, tmp_path):
    from mmg_live.gui.device_dialog import DeviceDialog, microphone_choices

    window = open_window(qtbot, assets, tmp_path)
    dialog = DeviceDialog(window.session.config, window)
    qtbot.addWidget(dialog)
    assert dialog.replay.text() == str(assets[0])
    choices, note = microphone_choices()
    assert (note is not None) == (len(choices) == 1)  # no input device: the dialog says why
    assert dialog.mic_note.isVisibleTo(dialog) == (note is not None)
    dialog.camera.setCurrentText(str(tmp_path / "no_such_camera.mp4"))
    dialog.port.setCurrentText("/dev/ttyNOPE_GUI")
    dialog.baud.setCurrentText("57600")
    config = dialog.config()
    assert config.imu == "/dev/ttyNOPE_GUI@57600" and config.replay == str(assets[0])

    seen = window.predictions_seen
    window.reopen(config)
    qtbot.waitUntil(window.sources_ready.is_set, timeout=15000)
    banner = window.device_banner.text()
    assert f"camera {tmp_path / 'no_such_camera.mp4'}: cannot open: no such file" in banner
    assert "serial IMU /dev/ttyNOPE_GUI: cannot open" in banner
    assert window.device_banner.isVisible()
    # the replay's streams opened (its IMU renamed past the failed serial IMU's name, as in the CLI)
    assert sorted(o.source.modality for o in window.session.opened) == ["audio", "imu", "video"]
    assert all(o.label.startswith("replay ") for o in window.session.opened)
    # the replay keeps running: fresh frames and predictions after the reopen
    frames = window.preview.frames_shown
    qtbot.waitUntil(lambda: window.preview.frames_shown > frames + 30, timeout=5000)
    qtbot.waitUntil(lambda: window.predictions_seen > seen + 1, timeout=15000)
    window._refresh_health()
    assert set(window.health.stale.values()) == {None}


class PoseImu(SourceBase):
    """A 100 Hz IMU reading ``scale * gravity(pose) + offset`` (g) and a gyro bias, with a little noise."""

    modality = "imu"
    OFFSET = np.array([0.02, -0.015, 0.03])
    SCALE = np.array([1.01, 0.98, 1.02])
    GYRO_BIAS = np.array([0.5, -0.3, 0.2])

    def __init__(self) -> None:
        super().__init__("wrist")
        self.pose = "+z"
        self.gravity: np.ndarray | None = None  # when set, read instead of the pose's axis
        self._stop = threading.Event()
        self._rng = np.random.default_rng(1)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            axis = "xyz".index(self.pose[1])
            g = np.zeros(3)
            g[axis] = 1.0 if self.pose[0] == "+" else -1.0
            if self.gravity is not None:
                g = self.gravity
            t = host_now() - np.arange(2)[::-1] * 0.01
            accel = self.SCALE * g + self.OFFSET + self._rng.normal(0, 0.002, (2, 3))
            gyro = self.GYRO_BIAS + self._rng.normal(0, 0.05, (2, 3))
            self._emit(Chunk("imu", t, np.hstack([accel, gyro]).astype(np.float32), self.name))


def test_calibration_dialog_six_poses_mounting_and_sync_without_taps(qtbot, assets, tmp_path):
    from calibration.imu import POSES
    from calibration.profile import CalibrationProfile
    from mmg_live.gui.calibration_dialog import CalibrationDialog

    imu = PoseImu()
    imu.start()
    dialog = CalibrationDialog(None, imu_source=imu, capture_s=1.0, still_s=1.5)
    qtbot.addWidget(dialog)
    assert dialog.save(tmp_path / "empty.json") is None and "Nothing to save" in dialog.save_message.text()
    order = ["+z"] + [p for p in POSES if p != "+z"]
    dialog.imu_flow.start_button.click()
    try:
        for n, pose in enumerate(order, 1):
            qtbot.waitUntil(dialog.imu_flow.next_button.isEnabled, timeout=10000)
            assert f"[{n}/6]" in dialog.imu_flow.prompt.text() and "press Next" in dialog.imu_flow.prompt.text()
            imu.pose = pose
            dialog.imu_flow.next_button.click()
        qtbot.waitUntil(lambda: "IMU calibrated" in dialog.imu_flow.prompt.text()
                        or "failed" in dialog.imu_flow.prompt.text(), timeout=15000)
    except BaseException:
        imu.stop()
        raise
    assert "IMU calibrated" in dialog.imu_flow.prompt.text(), dialog.imu_flow.prompt.text()
    path = dialog.save(tmp_path / "cal" / "profile.json")
    assert path == tmp_path / "cal" / "profile.json"
    assert f"--calibration {path}" in dialog.save_message.text()
    cal = CalibrationProfile.load(path).imu["wrist"]
    np.testing.assert_allclose(cal.accel_offset, PoseImu.OFFSET, atol=2e-3)
    np.testing.assert_allclose(cal.accel_scale, PoseImu.SCALE, atol=2e-3)
    np.testing.assert_allclose(cal.gyro_bias, PoseImu.GYRO_BIAS, atol=0.03)

    # mounting: the wrist turned 90° about the forearm; a forward pose too close to hanging first
    from calibration.mounting import CANONICAL_FORWARD, CANONICAL_HANG, rotation_angle_deg

    turn = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    hang = turn @ (CANONICAL_HANG / np.linalg.norm(CANONICAL_HANG))
    arm = {"hang": hang, "too close": (hang + 0.2 * turn @ CANONICAL_FORWARD) / np.linalg.norm(
        hang + 0.2 * turn @ CANONICAL_FORWARD), "forward": turn @ CANONICAL_FORWARD}
    dialog.tabs.setCurrentIndex(1)
    dialog.mounting_flow.start_button.click()
    try:
        for n, pose in enumerate(("hang", "too close", "forward")):
            qtbot.waitUntil(dialog.mounting_flow.next_button.isEnabled, timeout=10000)
            assert ("[1/2]" if n == 0 else "[2/2]") in dialog.mounting_flow.prompt.text()
            imu.gravity = arm[pose]
            dialog.mounting_flow.next_button.click()
        qtbot.waitUntil(lambda: "Mounting calibrated" in dialog.mounting_flow.prompt.text()
                        or "failed" in dialog.mounting_flow.prompt.text(), timeout=15000)
    finally:
        imu.stop()
    assert "Mounting calibrated" in dialog.mounting_flow.prompt.text(), dialog.mounting_flow.prompt.text()
    assert "apart" in dialog.mounting_flow.log.toPlainText()
    dialog.save(path)
    cal = CalibrationProfile.load(path).imu["wrist"]
    np.testing.assert_allclose(cal.accel_offset, PoseImu.OFFSET, atol=2e-3)  # the intrinsics stay
    assert rotation_angle_deg(cal.mounting @ turn) < 1.0, cal.mounting

    # time sync on a session without taps: the estimator's message, shown in the dialog
    dialog.tabs.setCurrentIndex(2)
    dialog.session_edit.setText(str(assets[0]))
    dialog.estimate_button.click()
    qtbot.waitUntil(lambda: "failed" in dialog.sync_message.text(), timeout=20000)
    assert "no tap events found" in dialog.sync_message.text()
    assert dialog.offsets.rowCount() == 0


def test_colour_camera_preview_shows_the_pose_skeleton_and_video_stays_idle(qtbot, tmp_path, mmg_data):
    """A colour video file as the camera and a model that reads pose and IMU: the pose stream has
    a health row and its skeleton is drawn over the preview."""
    pytest.importorskip("mediapipe")
    ckpt = write_checkpoint(tmp_path / "pose.safetensors", trained=("imu", "pose"))
    clip = mmg_data / "rgb-clips" / "basketball_two_people.mp4"
    options = live_options(build_parser().parse_args(["--camera", str(clip), "--checkpoint", str(ckpt),
                                                      "--device", "cpu"]))
    model, note = load_model(options)
    assert model is not None, note
    window = MainWindow(LiveSession(options, model, None), source_label="TEST — colour clip")
    qtbot.addWidget(window)
    window.show()
    window.start()
    qtbot.waitUntil(window.sources_ready.is_set, timeout=15000)
    assert sorted(o.source.modality for o in window.session.opened) == ["pose", "video"]
    qtbot.waitUntil(lambda: window.preview.skeleton is not None, timeout=15000)
    skeleton = window.preview.skeleton
    assert skeleton.shape == (33, 2) and np.isfinite(skeleton[11:17]).all()
    assert ((skeleton[11:17] >= 0) & (skeleton[11:17] <= 1)).all()  # shoulders to wrists inside the frame
    window.grab()  # paints the frame with the skeleton over it
