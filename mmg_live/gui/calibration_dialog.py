"""Calibration in three steps: six-pose IMU intrinsics and the IMU's mounting on the wrist
(``calibration.guided``, as ``mmg-calibrate imu`` and ``mounting``) and tap-based time sync (the
code behind ``mmg-calibrate sync``), saved as a profile for ``--calibration FILE``."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, QTimer, pyqtSignal
from PyQt6.QtWidgets import (QDialog, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton,
                             QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from mmg_common import one_line
from mmg_live.gui.live_session import LiveSession


def default_profile_path() -> Path:
    """``calibration.json`` in the current folder."""
    return Path.cwd() / "calibration.json"


class _Signals(QObject):
    prompt = pyqtSignal(str)
    say = pyqtSignal(str)
    imu_done = pyqtSignal(object)
    imu_failed = pyqtSignal(str)
    mounting_prompt = pyqtSignal(str)
    mounting_say = pyqtSignal(str)
    mounting_done = pyqtSignal(object)
    mounting_failed = pyqtSignal(str)
    sync_done = pyqtSignal(object)
    sync_failed = pyqtSignal(str)


class CalibrationDialog(QDialog):
    """Walks through IMU six-pose calibration, the IMU's mounting and time sync; saves the profile (JSON).

    Args:
        session: the live session (its IMU source is calibrated; it records the tap session).
        imu_source: a started IMU source to calibrate instead of the session's.
        capture_s, still_s: seconds per pose and flat on the table (as ``mmg-calibrate imu``); the
            mounting's arm poses take ``capture_s`` each.
        tap_seconds: length of the tap recording.
    """

    def __init__(self, session: LiveSession | None, parent: QWidget | None = None, imu_source: Any = None,
                 capture_s: float = 3.0, still_s: float = 6.0, tap_seconds: float = 15.0) -> None:
        super().__init__(parent)
        from calibration.profile import CalibrationProfile

        self.setWindowTitle("Calibrate devices")
        self.resize(720, 560)
        self.session = session
        self.imu_source = imu_source
        self.capture_s, self.still_s, self.tap_seconds = capture_s, still_s, tap_seconds
        self.profile = CalibrationProfile()
        self.saved_path: Path | None = None
        self._next = threading.Event()
        self._cancel = threading.Event()
        self._running = False
        self.sig = _Signals()
        self.sig.prompt.connect(self._on_prompt)
        self.sig.say.connect(lambda text: self.imu_log.appendPlainText(text))
        self.sig.imu_done.connect(self._on_imu_done)
        self.sig.imu_failed.connect(self._on_imu_failed)
        self.sig.mounting_prompt.connect(self._on_mounting_prompt)
        self.sig.mounting_say.connect(lambda text: self.mounting_log.appendPlainText(text))
        self.sig.mounting_done.connect(self._on_mounting_done)
        self.sig.mounting_failed.connect(self._on_mounting_failed)
        self.sig.sync_done.connect(self._on_sync_done)
        self.sig.sync_failed.connect(self._on_sync_failed)

        layout = QVBoxLayout(self)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._imu_page(), "1. IMU (six poses)")
        self.tabs.addTab(self._mounting_page(), "2. Mounting (two arm poses)")
        self.tabs.addTab(self._sync_page(), "3. Time sync (taps)")
        layout.addWidget(self.tabs, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Profile"))
        self.path_edit = QLineEdit(str(default_profile_path()))
        row.addWidget(self.path_edit, 1)
        self.save_button = QPushButton("Save profile")
        self.save_button.clicked.connect(lambda: self.save())
        row.addWidget(self.save_button)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        row.addWidget(close)
        layout.addLayout(row)
        self.save_message = QLabel("")
        self.save_message.setWordWrap(True)
        layout.addWidget(self.save_message)

    # ---- IMU page -----------------------------------------------------------------------------

    def _imu_page(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        src = self._imu()
        v.addWidget(QLabel(f"IMU: {src.name}" if src is not None else
                           "No IMU is open: choose a serial IMU with Devices… first."))
        self.prompt = QLabel("Press Start; you will place the device in six still poses.")
        self.prompt.setWordWrap(True)
        self.prompt.setStyleSheet("font-size:15px; font-weight:bold;")
        v.addWidget(self.prompt)
        self.imu_log = QPlainTextEdit()
        self.imu_log.setReadOnly(True)
        v.addWidget(self.imu_log, 1)
        self.imu_result = QLabel("")
        self.imu_result.setWordWrap(True)
        v.addWidget(self.imu_result)
        row = QHBoxLayout()
        self.imu_start = QPushButton("Start")
        self.imu_start.clicked.connect(self.start_imu)
        self.imu_start.setEnabled(src is not None)
        self.next_button = QPushButton("Next")
        self.next_button.setEnabled(False)
        self.next_button.clicked.connect(self.next_pose)
        row.addWidget(self.imu_start)
        row.addWidget(self.next_button)
        row.addStretch(1)
        v.addLayout(row)
        return page

    def _imu(self) -> Any:
        if self.imu_source is not None:
            return self.imu_source
        if self.session is None:
            return None
        for o in self.session.opened:
            if o.source.modality == "imu":
                # calibrate the raw readings, not ones an applied profile already corrected
                return getattr(o.source, "_source", o.source)
        return None

    def start_imu(self) -> None:
        """Run the guided six-pose flow in a worker thread; its questions appear here with Next."""
        from calibration.errors import CalibrationError
        from calibration.guided import run_guided_imu_calibration

        src = self._imu()
        if src is None or self._running:
            return
        self._running = True
        self._cancel.clear()
        self.imu_start.setEnabled(False)
        self.imu_log.clear()
        self.imu_result.setText("")

        def ask(prompt: str) -> None:
            self._next.clear()
            self.sig.prompt.emit(prompt.replace(" [Enter]", "").rstrip() + " Then press Next.")
            while not self._next.wait(0.1):
                if self._cancel.is_set():
                    raise CalibrationError("calibration cancelled")

        def work() -> None:
            try:
                cal = run_guided_imu_calibration(src, ask, self.sig.say.emit, capture_s=self.capture_s,
                                                 still_s=self.still_s)
            except Exception as exc:  # CalibrationError, DeviceError: one line in the dialog
                self.sig.imu_failed.emit(one_line(exc))
                return
            self.sig.imu_done.emit((src.name, cal))

        threading.Thread(target=work, name="mmg-imu-calibration", daemon=True).start()

    def next_pose(self) -> None:
        """The user placed the device: capture the pose."""
        self.next_button.setEnabled(False)
        self.prompt.setText("capturing… keep the device still")
        self._next.set()

    def _on_prompt(self, text: str) -> None:
        self.prompt.setText(text)
        self.next_button.setEnabled(True)

    def _on_imu_done(self, result: tuple[str, Any]) -> None:
        import numpy as np

        name, cal = result
        self._running = False
        self.imu_start.setEnabled(True)
        self.next_button.setEnabled(False)
        old = self.profile.imu.get(name)
        if old is not None and old.mounting is not None:  # new intrinsics, same strap
            cal = replace(cal, mounting=old.mounting)
        self.profile.imu[name] = cal
        fmt = lambda v: ", ".join(f"{x:+.4f}" for x in np.asarray(v))  # noqa: E731
        self.prompt.setText("IMU calibrated. Save the profile, or go on to time sync.")
        self.imu_result.setText(f"{name}: accel offset [{fmt(cal.accel_offset)}] g, scale [{fmt(cal.accel_scale)}], "
                                f"gyro bias [{fmt(cal.gyro_bias)}] deg/s")

    def _on_imu_failed(self, message: str) -> None:
        self._running = False
        self.imu_start.setEnabled(True)
        self.next_button.setEnabled(False)
        self.prompt.setText(f"IMU calibration failed: {message}")

    # ---- mounting page ------------------------------------------------------------------------

    def _mounting_page(self) -> QWidget:
        from calibration.cli import MOUNTING_PROCEDURE

        page = QWidget()
        v = QVBoxLayout(page)
        howto = QLabel(MOUNTING_PROCEDURE.replace("--imu PORT then asks", "Start then asks"))
        howto.setWordWrap(True)
        v.addWidget(howto)
        self.mounting_prompt = QLabel("Strap the IMU to your wrist, then press Start.")
        self.mounting_prompt.setWordWrap(True)
        self.mounting_prompt.setStyleSheet("font-size:15px; font-weight:bold;")
        v.addWidget(self.mounting_prompt)
        self.mounting_log = QPlainTextEdit()
        self.mounting_log.setReadOnly(True)
        v.addWidget(self.mounting_log, 1)
        row = QHBoxLayout()
        self.mounting_start = QPushButton("Start")
        self.mounting_start.clicked.connect(self.start_mounting)
        self.mounting_start.setEnabled(self._imu() is not None)
        self.mounting_next = QPushButton("Next")
        self.mounting_next.setEnabled(False)
        self.mounting_next.clicked.connect(self.next_arm_pose)
        row.addWidget(self.mounting_start)
        row.addWidget(self.mounting_next)
        row.addStretch(1)
        v.addLayout(row)
        return page

    def start_mounting(self) -> None:
        """Run the guided two-pose mounting flow in a worker thread, reading the IMU through the
        intrinsics calibrated so far (not through an older mounting)."""
        from calibration.errors import CalibrationError
        from calibration.guided import run_guided_mounting_calibration
        from calibration.profile import CalibrationProfile, ImuCalibration, ProfileApplier

        src = self._imu()
        if src is None or self._running:
            return
        self._running = True
        self._cancel.clear()
        self.mounting_start.setEnabled(False)
        self.mounting_log.clear()
        intrinsics = replace(self.profile.imu.get(src.name) or ImuCalibration(), mounting=None)
        corrected = ProfileApplier(CalibrationProfile(imu={src.name: intrinsics})).wrap(src)

        def ask(prompt: str) -> None:
            self._next.clear()
            self.sig.mounting_prompt.emit(prompt.replace(" [Enter]", "").rstrip() + " Then press Next.")
            while not self._next.wait(0.1):
                if self._cancel.is_set():
                    raise CalibrationError("calibration cancelled")

        def work() -> None:
            try:
                rotation = run_guided_mounting_calibration(corrected, ask, self.sig.mounting_say.emit,
                                                           capture_s=self.capture_s)
            except Exception as exc:  # CalibrationError, DeviceError: one line in the dialog
                self.sig.mounting_failed.emit(one_line(exc))
                return
            self.sig.mounting_done.emit((src.name, rotation))

        threading.Thread(target=work, name="mmg-mounting-calibration", daemon=True).start()

    def next_arm_pose(self) -> None:
        """The user holds the arm pose: capture it."""
        self.mounting_next.setEnabled(False)
        self.mounting_prompt.setText("capturing… keep the arm still")
        self._next.set()

    def _on_mounting_prompt(self, text: str) -> None:
        self.mounting_prompt.setText(text)
        self.mounting_next.setEnabled(True)

    def _on_mounting_done(self, result: tuple[str, Any]) -> None:
        from calibration.mounting import rotation_angle_deg
        from calibration.profile import ImuCalibration

        name, rotation = result
        self._running = False
        self.mounting_start.setEnabled(True)
        self.mounting_next.setEnabled(False)
        self.profile.imu[name] = replace(self.profile.imu.get(name) or ImuCalibration(), mounting=rotation)
        self.mounting_prompt.setText(f"Mounting calibrated: the IMU is turned {rotation_angle_deg(rotation):.0f}° "
                                     "from the model's wrist frame. Save the profile, or go on to time sync.")

    def _on_mounting_failed(self, message: str) -> None:
        self._running = False
        self.mounting_start.setEnabled(True)
        self.mounting_next.setEnabled(False)
        self.mounting_prompt.setText(f"Mounting calibration failed: {message}")

    # ---- sync page ----------------------------------------------------------------------------

    def _sync_page(self) -> QWidget:
        from calibration.cli import TAP_PROCEDURE

        page = QWidget()
        v = QVBoxLayout(page)
        howto = QLabel(TAP_PROCEDURE.replace("`mmg-calibrate sync --session DIR`", "Estimate offsets"))
        howto.setWordWrap(True)
        v.addWidget(howto)
        row = QHBoxLayout()
        self.session_edit = QLineEdit()
        self.session_edit.setPlaceholderText("a recorded tap session folder")
        row.addWidget(self.session_edit, 1)
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse_session)
        row.addWidget(browse)
        self.record_taps = QPushButton(f"Record taps ({self.tap_seconds:.0f} s)")
        self.record_taps.clicked.connect(self.record_tap_session)
        self.record_taps.setEnabled(self.session is not None)
        row.addWidget(self.record_taps)
        self.estimate_button = QPushButton("Estimate offsets")
        self.estimate_button.clicked.connect(self.estimate)
        row.addWidget(self.estimate_button)
        v.addLayout(row)
        self.sync_message = QLabel("")
        self.sync_message.setWordWrap(True)
        v.addWidget(self.sync_message)
        self.offsets = QTableWidget(0, 6)
        self.offsets.setHorizontalHeaderLabels(
            ["stream", "modality", "taps", "offset (ms)", "spread (ms)", "drift (ppm)"])
        self.offsets.horizontalHeader().setStretchLastSection(True)
        v.addWidget(self.offsets, 1)
        return page

    def _browse_session(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Tap session folder")
        if path:
            self.session_edit.setText(path)

    def record_tap_session(self) -> None:
        """Record every open device for ``tap_seconds`` into a temporary session, then estimate."""
        if self.session is None:
            return
        folder = Path(tempfile.mkdtemp(prefix="mmg-taps-")) / "session"
        try:
            self.session.start_recording(folder)
        except (OSError, ValueError, RuntimeError) as exc:
            self.sync_message.setText(f"cannot record the tap session: {one_line(exc)}")
            return
        self.record_taps.setEnabled(False)
        self.sync_message.setText(f"Recording: tap the IMU device sharply 5 times, about 1 s apart… "
                                  f"({self.tap_seconds:.0f} s)")

        def done() -> None:
            summary = self.session.stop_recording()
            self.record_taps.setEnabled(True)
            self.session_edit.setText(str(folder))
            self.sync_message.setText(summary or "")
            self.estimate()

        QTimer.singleShot(int(self.tap_seconds * 1000), done)

    def estimate(self) -> None:
        """Run ``mmg-calibrate sync``'s estimation on the session folder (in a worker thread)."""
        folder = self.session_edit.text().strip()
        if not folder:
            self.sync_message.setText("Choose a tap session folder (or record one).")
            return
        self.estimate_button.setEnabled(False)
        self.sync_message.setText(f"estimating offsets from {folder}…")

        def work() -> None:
            from calibration.session import session_streams
            from calibration.sync import estimate_offsets

            try:
                result = estimate_offsets(session_streams(folder))
            except Exception as exc:  # CalibrationError ("no tap events found in …"), unreadable folder
                self.sig.sync_failed.emit(one_line(exc))
                return
            self.sig.sync_done.emit(result)

        threading.Thread(target=work, name="mmg-sync-calibration", daemon=True).start()

    def _on_sync_done(self, result: Any) -> None:
        self.estimate_button.setEnabled(True)
        result.to_profile(self.profile)
        self.offsets.setRowCount(len(result.offsets))
        for i, (name, off) in enumerate(result.offsets.items()):
            cells = (name, off.modality, str(len(result.events[name])), f"{off.offset_s * 1000:+.1f}",
                     f"{off.spread_s * 1000:.1f}", "—" if off.drift_ppm is None else f"{off.drift_ppm:+.1f}")
            for j, text in enumerate(cells):
                self.offsets.setItem(i, j, QTableWidgetItem(text))
        self.sync_message.setText(f"Offsets relative to {result.reference} (+ means the stream reads late). "
                                  "Save the profile to use them.")

    def _on_sync_failed(self, message: str) -> None:
        self.estimate_button.setEnabled(True)
        self.sync_message.setText(f"Time sync failed: {message}")

    # ---- saving -------------------------------------------------------------------------------

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write the profile; returns the path, or None with the reason shown."""
        target = Path(path) if path is not None else Path(self.path_edit.text().strip() or default_profile_path())
        if not self.profile.imu and not self.profile.time_offsets:
            self.save_message.setText("Nothing to save yet: calibrate the IMU or estimate time offsets first.")
            return None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            written = Path(self.profile.save(target))
        except (OSError, ValueError, RuntimeError) as exc:
            self.save_message.setText(f"cannot save {target}: {one_line(exc)}")
            return None
        self.saved_path = written
        self.save_message.setText(f"Saved {written}. Apply it with: mmg-live --calibration {written} …")
        return written

    def reject(self) -> None:
        self._cancel.set()
        super().reject()
