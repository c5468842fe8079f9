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
from PyQt6.QtWidgets import (QDialog, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QTableWidget,
                             QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from mmg_common import one_line
from mmg_live.gui.guided_flow import GuidedFlowPanel
from mmg_live.gui.live_session import LiveSession


def default_profile_path() -> Path:
    """``calibration.json`` in the current folder."""
    return Path.cwd() / "calibration.json"


class _Signals(QObject):
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
        self.sig = _Signals()
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

    # ---- IMU and mounting pages --------------------------------------------------------------

    def _imu_page(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        src = self._imu()
        v.addWidget(QLabel(f"IMU: {src.name}" if src is not None else
                           "No IMU is open: choose a serial IMU with Devices… first."))
        self.imu_flow = GuidedFlowPanel("Press Start; you will place the device in six still poses.",
                                        "capturing… keep the device still", "IMU calibration failed")
        self.imu_flow.start_button.clicked.connect(self.start_imu)
        self.imu_flow.start_button.setEnabled(src is not None)
        v.addWidget(self.imu_flow, 1)
        return page

    def _mounting_page(self) -> QWidget:
        from calibration.cli import MOUNTING_PROCEDURE

        self.mounting_flow = GuidedFlowPanel(
            "Strap the IMU to your wrist, then press Start.", "capturing… keep the arm still",
            "Mounting calibration failed", intro=MOUNTING_PROCEDURE.replace("--imu PORT then asks", "Start then asks"))
        self.mounting_flow.start_button.clicked.connect(self.start_mounting)
        self.mounting_flow.start_button.setEnabled(self._imu() is not None)
        return self.mounting_flow

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

    def _flows_busy(self) -> bool:
        return self.imu_flow.running or self.mounting_flow.running

    def start_imu(self) -> None:
        """Run the guided six-pose flow; its questions appear on the IMU page with Next."""
        from calibration.guided import run_guided_imu_calibration

        src = self._imu()
        if src is None or self._flows_busy():
            return
        self.imu_flow.start(
            lambda ask, say: run_guided_imu_calibration(src, ask, say, capture_s=self.capture_s, still_s=self.still_s),
            lambda cal: self._imu_calibrated(src.name, cal), name="mmg-imu-calibration")

    def _imu_calibrated(self, name: str, cal: Any) -> str:
        import numpy as np

        old = self.profile.imu.get(name)
        if old is not None and old.mounting is not None:  # new intrinsics, same strap
            cal = replace(cal, mounting=old.mounting)
        self.profile.imu[name] = cal
        fmt = lambda v: ", ".join(f"{x:+.4f}" for x in np.asarray(v))  # noqa: E731
        self.imu_flow.result.setText(f"{name}: accel offset [{fmt(cal.accel_offset)}] g, "
                                     f"scale [{fmt(cal.accel_scale)}], gyro bias [{fmt(cal.gyro_bias)}] deg/s")
        return "IMU calibrated. Save the profile, or go on to the mounting and time sync."

    def start_mounting(self) -> None:
        """Run the guided two-pose mounting flow, reading the IMU through the intrinsics calibrated
        so far (not through an older mounting)."""
        from calibration.guided import run_guided_mounting_calibration
        from calibration.profile import CalibrationProfile, ImuCalibration, ProfileApplier

        src = self._imu()
        if src is None or self._flows_busy():
            return
        intrinsics = replace(self.profile.imu.get(src.name) or ImuCalibration(), mounting=None)
        corrected = ProfileApplier(CalibrationProfile(imu={src.name: intrinsics})).wrap(src)
        self.mounting_flow.start(
            lambda ask, say: run_guided_mounting_calibration(corrected, ask, say, capture_s=self.capture_s),
            lambda rotation: self._mounting_calibrated(src.name, rotation), name="mmg-mounting-calibration")

    def _mounting_calibrated(self, name: str, rotation: Any) -> str:
        from calibration.mounting import rotation_angle_deg
        from calibration.profile import ImuCalibration

        self.profile.imu[name] = replace(self.profile.imu.get(name) or ImuCalibration(), mounting=rotation)
        return (f"Mounting calibrated: the IMU is turned {rotation_angle_deg(rotation):.0f}° "
                "from the model's wrist frame. Save the profile, or go on to time sync.")

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
        self.imu_flow.cancel()
        self.mounting_flow.cancel()
        super().reject()
