"""The main window: preview, audio level, IMU traces, predictions, privacy switches, device health."""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Sequence

from PyQt6.QtCore import QObject, Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (QCheckBox, QFileDialog, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QMainWindow,
                             QPushButton, QSplitter, QVBoxLayout, QWidget)

from devices.base import MODALITIES, host_now
from mmg_common import one_line
from mmg_live.gui.live_session import LiveSession, device_problem
from mmg_live.gui.widgets import HealthTable, LevelMeter, PredictionBars, TracePlot, VideoPreview
from mmg_live.sources import DeviceConfig
from mmg_live.placement import placement_note

PREVIEW_INTERVAL_MS = 15  # polled well above the camera rate so no frame waits long
SIGNALS_INTERVAL_MS = 50
HEALTH_INTERVAL_MS = 250
IDLE_GREY_AFTER_S = 1.0  # one idle window between predictions must not make the bars flicker

BANNER_DEMO = ("background:#fff1b8; color:#5a4000; font-weight:bold; font-size:15px; padding:6px; "
               "border:2px solid #e0b000;")
BANNER_ERROR = "background:#ffe0e0; color:#900000; padding:4px; border:1px solid #d08080;"
BANNER_INFO = "background:#e8f0ff; color:#203060; padding:4px; border:1px solid #a0b0d0;"


class _Bridge(QObject):
    """Carries worker-thread events onto the GUI thread."""

    prediction = pyqtSignal(object)
    state = pyqtSignal(str, object)
    opened = pyqtSignal(object)


class MainWindow(QMainWindow):
    """The live app's window around a :class:`LiveSession` (started with :meth:`start`).

    Args:
        session: sources, buffers, engine and custom actions.
        notes: one-line messages to show at start (no model, custom actions not loaded, ...).
        source_label: shown prominently at the top (e.g. that the input is a replay).
    """

    def __init__(self, session: LiveSession, notes: Sequence[str] = (), source_label: str | None = None) -> None:
        super().__init__()
        self.session = session
        self.setWindowTitle("mmg-live")
        self.resize(1280, 800)
        self.bridge = _Bridge()
        self.bridge.prediction.connect(self._on_prediction)
        self.bridge.state.connect(self._on_state)
        self.bridge.opened.connect(self._on_opened)
        session.prediction_listeners.append(self.bridge.prediction.emit)
        session.state_listeners.append(self.bridge.state.emit)
        self.last_prediction = None
        self.predictions_seen = 0
        self.sources_ready = threading.Event()
        self._arrivals: deque[float] = deque(maxlen=200)
        self._open_messages: list[str] = []
        self._opening = False
        self._idle_since: float | None = None
        self._build(notes, source_label)
        self._timers: list[QTimer] = []
        for slot in (self._refresh_preview, self._refresh_signals, self._refresh_health):
            timer = QTimer(self)
            timer.setTimerType(Qt.TimerType.PreciseTimer)
            timer.timeout.connect(slot)
            self._timers.append(timer)

    # ---- layout -------------------------------------------------------------------------------

    def _build(self, notes: Sequence[str], source_label: str | None) -> None:
        root = QWidget()
        outer = QVBoxLayout(root)
        self.source_banner = QLabel(source_label or "")
        self.source_banner.setStyleSheet(BANNER_DEMO)
        self.source_banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.source_banner.setVisible(bool(source_label))
        outer.addWidget(self.source_banner)
        self.notes_banner = QLabel("\n".join(n for n in notes if n))
        self.notes_banner.setStyleSheet(BANNER_INFO)
        self.notes_banner.setWordWrap(True)
        self.notes_banner.setVisible(any(notes))
        outer.addWidget(self.notes_banner)
        self.device_banner = QLabel("")
        self.device_banner.setStyleSheet(BANNER_ERROR)
        self.device_banner.setWordWrap(True)
        self.device_banner.setVisible(False)
        outer.addWidget(self.device_banner)

        buttons = QHBoxLayout()
        self.devices_button = QPushButton("Devices…")
        self.devices_button.clicked.connect(self.open_device_dialog)
        self.calibrate_button = QPushButton("Calibrate…")
        self.calibrate_button.clicked.connect(self.open_calibration_dialog)
        self.record_button = QPushButton("● Record session")
        self.record_button.setCheckable(True)
        self.record_button.clicked.connect(self._toggle_recording)
        for b in (self.devices_button, self.calibrate_button, self.record_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        outer.addLayout(buttons)

        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        self.preview = VideoPreview()
        lv.addWidget(self.preview, 3)
        lv.addWidget(QLabel("Audio level"))
        self.level = LevelMeter()
        lv.addWidget(self.level)
        self.accel_plot = TracePlot("accelerometer", "g")
        self.gyro_plot = TracePlot("gyroscope", "deg/s")
        lv.addWidget(self.accel_plot, 1)
        lv.addWidget(self.gyro_plot, 1)
        self.placement_label = QLabel("" if self.session.model is None
                                      else placement_note(self.session.model.class_names))
        self.placement_label.setWordWrap(True)
        lv.addWidget(self.placement_label)
        split.addWidget(left)

        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        box = QGroupBox("Predictions")
        bv = QVBoxLayout(box)
        self.used_label = QLabel("modalities used: —")
        bv.addWidget(self.used_label)
        self.bars = PredictionBars()
        bv.addWidget(self.bars)
        self.latency_label = QLabel("latency p50 — / p95 — ms · 0.0 predictions/s")
        bv.addWidget(self.latency_label)
        self.state_label = QLabel("engine: starting")
        self.state_label.setWordWrap(True)
        bv.addWidget(self.state_label)
        rv.addWidget(box)

        privacy = QGroupBox("Modalities (privacy switches)")
        pg = QGridLayout(privacy)
        self.switches: dict[str, QCheckBox] = {}
        for i, m in enumerate(MODALITIES):
            cb = QCheckBox(m)
            cb.setChecked(True)
            cb.toggled.connect(lambda on, m=m: self.session.set_enabled(m, on))
            pg.addWidget(cb, 0, i)
            self.switches[m] = cb
        rv.addWidget(privacy)

        from mmg_live.gui.record_dialog import CustomActionsPanel

        self.custom_panel = CustomActionsPanel(self.session, self)
        rv.addWidget(self.custom_panel, 1)
        split.addWidget(right)
        split.setSizes([700, 580])
        outer.addWidget(split, 1)

        outer.addWidget(QLabel("Devices"))
        self.health = HealthTable()
        outer.addWidget(self.health)
        self.setCentralWidget(root)
        if self.session.model is None:
            self.bars.set_message("No model loaded: preview only (no predictions).")

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the devices (off the GUI thread) and start refreshing."""
        for timer, interval in zip(self._timers, (PREVIEW_INTERVAL_MS, SIGNALS_INTERVAL_MS, HEALTH_INTERVAL_MS)):
            timer.start(interval)
        self.reopen(None)

    def reopen(self, config: DeviceConfig | None) -> None:
        """Stop the current devices and open ``config``'s (default: the session's) in a worker thread."""
        if self._opening:
            return
        self._opening = True
        self.sources_ready.clear()
        self.devices_button.setEnabled(False)
        self.statusBar().showMessage("opening devices…")
        self.preview.clear("opening devices…")

        def work() -> None:
            try:
                messages = self.session.open(config)
            except Exception as exc:  # a bug must not leave the window waiting forever
                messages = [f"opening devices failed: {one_line(exc)}"]
            self.bridge.opened.emit(messages)

        threading.Thread(target=work, name="mmg-open-devices", daemon=True).start()

    def _on_opened(self, messages: list[str]) -> None:
        self._opening = False
        self._open_messages = list(messages)
        self.devices_button.setEnabled(True)
        names = ", ".join(f"{o.source.name} ({o.source.modality})" for o in self.session.opened)
        self.statusBar().showMessage(f"capturing {names}" if names else "no device is open", 10000)
        if "video" not in self.session.streams():
            self.preview.clear("no video source")
        self._update_switches()
        self._refresh_health()
        self.sources_ready.set()

    def closeEvent(self, event) -> None:  # noqa: N802
        for timer in self._timers:
            timer.stop()
        summary = self.session.stop_recording()
        if summary:
            print(f"mmg-live: {summary}", flush=True)
        self.session.shutdown()
        super().closeEvent(event)

    # ---- switches -----------------------------------------------------------------------------

    def _update_switches(self) -> None:
        trained = set(self.session.trained_modalities())
        streams = self.session.streams()
        for m, cb in self.switches.items():
            if self.session.model is None:
                why = "no model loaded: nothing is recognised"
            elif m not in trained:
                why = f"the model's {m} encoder or fusion was not trained: {m} is never used"
            elif m not in streams:
                why = f"no {m} source is open"
            else:
                why = None
            cb.setEnabled(why is None)
            cb.setToolTip(why or f"untick to stop using {m} (privacy); ticked: {m} is used when live")

    # ---- refresh ------------------------------------------------------------------------------

    def _refresh_preview(self) -> None:
        buf = self.session.display_buffer("video")
        if buf is None:
            return
        t = buf.latest_time()
        if t is None or (self.preview._last_t is not None and t <= self.preview._last_t):
            return
        frames, ts = buf.latest(0.0)
        if len(frames):
            self.preview.set_skeleton(self.session.pose_landmarks(float(ts[-1])))
            self.preview.show_frame(frames[-1], float(ts[-1]))

    def _refresh_signals(self) -> None:
        audio = self.session.display_buffer("audio")
        self.level.set_samples(audio.latest(0.1)[0] if audio is not None else None)
        imu = self.session.display_buffer("imu")
        if imu is not None:
            data, ts = imu.latest(self.accel_plot.span_s)
            if len(ts):
                self.accel_plot.set_data(ts, data[:, :3])
                self.gyro_plot.set_data(ts, data[:, 3:6])

    def _refresh_health(self) -> None:
        now = host_now()
        rows, lost = [], []
        for o in self.session.opened:
            h = o.source.health()
            problem = device_problem(h, o.started_at, now)
            rows.append({"name": o.source.name, "modality": o.source.modality, "rate": o.measured_rate(h.samples, now),
                         "nominal": h.nominal_rate, "dropped": h.dropped, "lag": h.age(now),
                         "offset": h.clock_offset, "problem": problem})
            if problem:
                lost.append(f"{o.source.name} ({o.label}): {problem}")
        self.health.set_rows(rows)
        problems = [*self._open_messages, *lost]
        self.device_banner.setText("\n".join(problems))
        self.device_banner.setVisible(bool(problems))
        self._refresh_stats(now)

    def _refresh_stats(self, now: float) -> None:
        engine = self.session.engine
        if engine is None:
            return
        stats = engine.stats()
        if self._idle_since is not None and now - self._idle_since > IDLE_GREY_AFTER_S:
            # keep the last ranking visible but greyed: it is no longer about the present
            self.bars.set_stale(True)
        lat = stats["latency_ms"]
        recent = [t for t in self._arrivals if now - t <= 2.0]
        rate = len(recent) / 2.0
        lat_text = f"latency p50 {lat['p50']:.0f} / p95 {lat['p95']:.0f} ms" if lat else "latency p50 — / p95 — ms"
        self.latency_label.setText(f"{lat_text} · {rate:.1f} predictions/s · {stats['skipped']} windows skipped")
        line = f"engine: {stats['state']}"
        if stats["reason"]:
            line += f" — {stats['reason']}"
        if stats["errors"]:
            line += f" · {stats['errors']} errors (last: {stats['last_error']})"
        self.state_label.setText(line)

    def _on_prediction(self, pred) -> None:
        self._idle_since = None
        self.last_prediction = pred
        self.predictions_seen += 1
        self._arrivals.append(host_now())
        self.bars.set_entries([(e["label"], e["p"], e.get("kind", "base")) for e in pred.top], pred.seq)
        idle = "".join(f" · {m} idle: {why}" for m, why in pred.idle.items())
        answer = "no action (nothing is happening)" if pred.no_action else pred.label
        self.used_label.setText(f"modalities used: {' + '.join(pred.modalities) or '—'} · top: {answer}{idle}")

    def _on_state(self, state: str, reason: object) -> None:
        self.state_label.setText(f"engine: {state}" + (f" — {reason}" if reason else ""))
        if state == "idle" and reason:
            if self.last_prediction is None:
                self.bars.set_message(f"No prediction yet: {reason}")
            elif self._idle_since is None:
                self._idle_since = host_now()
        elif state == "running":
            self._idle_since = None

    # ---- dialogs and recording -----------------------------------------------------------------

    def open_device_dialog(self) -> None:
        from mmg_live.gui.device_dialog import DeviceDialog

        dialog = DeviceDialog(self.session.config, self)
        if dialog.exec():
            self.reopen(dialog.config())

    def open_calibration_dialog(self) -> None:
        from mmg_live.gui.calibration_dialog import CalibrationDialog

        CalibrationDialog(self.session, self).exec()

    def _toggle_recording(self, on: bool) -> None:
        if on:
            default = str(Path.cwd() / time.strftime("session-%Y%m%d-%H%M%S"))
            folder = QFileDialog.getSaveFileName(self, "Record into a new session folder", default)[0]
            if not folder:
                self.record_button.setChecked(False)
                return
            self.start_recording(folder)
        else:
            self.stop_recording()

    def start_recording(self, folder: str) -> bool:
        """Record every open device into ``folder``; False (with a message) when it cannot."""
        try:
            self.session.start_recording(folder)
        except (OSError, ValueError, RuntimeError) as exc:
            self.statusBar().showMessage(f"cannot record into {folder}: {one_line(exc)}", 15000)
            self.record_button.setChecked(False)
            return False
        self.record_button.setChecked(True)
        self.record_button.setText("■ Stop recording")
        self.statusBar().showMessage(f"recording into {folder}")
        return True

    def stop_recording(self) -> str | None:
        summary = self.session.stop_recording()
        self.record_button.setChecked(False)
        self.record_button.setText("● Record session")
        if summary:
            self.statusBar().showMessage(summary, 15000)
        return summary
