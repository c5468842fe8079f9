"""Pick the devices: camera (index, file or URL), microphone, serial IMU and baud, replay folder."""

from __future__ import annotations

from dataclasses import replace

from PyQt6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                             QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget)

from mmg_common import one_line
from mmg_live.sources import DeviceConfig

BAUDS = ("9600", "57600", "115200", "230400", "460800", "921600")
NO_MIC = "(none)"
DEFAULT_MIC = "default input"


def microphone_choices() -> tuple[list[tuple[str, str | None]], str | None]:
    """``([(text, --mic value)], note)``: PortAudio's input devices; ``note`` says why there are none."""
    choices: list[tuple[str, str | None]] = [(NO_MIC, None)]
    try:
        from devices.microphone import list_microphones

        mics = list_microphones()
    except Exception as exc:  # PortAudio missing: DeviceError (or ImportError)
        return choices, one_line(exc)
    if not mics:
        return choices, "PortAudio sees no input device (no microphone)"
    choices.append((DEFAULT_MIC, ""))
    choices += [(f"{m['index']}: {m['name']} ({m['hostapi']})", str(m["index"])) for m in mics]
    return choices, None


def serial_ports() -> list[str]:
    """Serial ports pyserial finds (empty when pyserial is missing)."""
    try:
        from serial.tools import list_ports
    except ImportError:
        return []
    return [p.device for p in list_ports.comports()]


def _split_imu(spec: str | None) -> tuple[str, str]:
    if not spec:
        return "", "115200"
    port, sep, baud = spec.rpartition("@")
    return (port, baud) if sep and baud.isdigit() else (spec, "115200")


class DeviceDialog(QDialog):
    """Edits a :class:`DeviceConfig`; :meth:`config` is the result (remote streams, their keys and the
    replay's looping are kept as they are)."""

    def __init__(self, config: DeviceConfig, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Devices")
        self._config = config
        layout = QVBoxLayout(self)
        form = QFormLayout()

        self.camera = QComboBox()
        self.camera.setEditable(True)
        self.camera.addItems(["", "0", "1", "2"])
        self.camera.setCurrentText(config.camera or "")
        self.camera.lineEdit().setPlaceholderText("none · index (0) · video file · URL (rtsp://…)")
        cam_row = QHBoxLayout()
        cam_row.addWidget(self.camera, 1)
        cam_browse = QPushButton("File…")
        cam_browse.clicked.connect(self._browse_camera)
        cam_row.addWidget(cam_browse)
        form.addRow("Camera", cam_row)

        self.mic = QComboBox()
        choices, note = microphone_choices()
        for text, value in choices:
            self.mic.addItem(text, value)
        if config.mic is not None:
            idx = next((i for i, (_, v) in enumerate(choices) if v == config.mic), -1)
            if idx < 0:
                self.mic.addItem(f"{config.mic or DEFAULT_MIC}", config.mic)
                idx = self.mic.count() - 1
            self.mic.setCurrentIndex(idx)
        form.addRow("Microphone", self.mic)
        self.mic_note = QLabel(note or "")
        self.mic_note.setStyleSheet("color:#900000;")
        self.mic_note.setVisible(bool(note))
        form.addRow("", self.mic_note)

        port, baud = _split_imu(config.imu)
        self.port = QComboBox()
        self.port.setEditable(True)
        self.port.addItems(["", *serial_ports()])
        self.port.setCurrentText(port)
        self.port.lineEdit().setPlaceholderText("none · /dev/ttyACM0 · loop:// · rfc2217://host:port")
        self.baud = QComboBox()
        self.baud.setEditable(True)
        self.baud.addItems(BAUDS)
        self.baud.setCurrentText(baud)
        imu_row = QHBoxLayout()
        imu_row.addWidget(self.port, 1)
        imu_row.addWidget(QLabel("baud"))
        imu_row.addWidget(self.baud)
        form.addRow("Serial IMU", imu_row)

        self.replay = QLineEdit(config.replay or "")
        self.replay.setPlaceholderText("none · a recorded session folder")
        rep_row = QHBoxLayout()
        rep_row.addWidget(self.replay, 1)
        rep_browse = QPushButton("Folder…")
        rep_browse.clicked.connect(self._browse_replay)
        rep_row.addWidget(rep_browse)
        form.addRow("Replay", rep_row)
        self.speed = QDoubleSpinBox()
        self.speed.setRange(0.1, 10.0)
        self.speed.setValue(config.speed)
        form.addRow("Replay speed", self.speed)
        if config.remote:
            form.addRow("Remote", QLabel(", ".join(config.remote)))
        layout.addLayout(form)
        self.error = QLabel("")
        self.error.setStyleSheet("color:#900000;")
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Apply")
        buttons.accepted.connect(self._apply)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _browse_camera(self) -> None:
        path = QFileDialog.getOpenFileName(self, "Video file")[0]
        if path:
            self.camera.setCurrentText(path)

    def _browse_replay(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Session folder")
        if path:
            self.replay.setText(path)

    def _apply(self) -> None:
        baud = self.baud.currentText().strip()
        if self.port.currentText().strip() and not (baud.isdigit() and int(baud) > 0):
            self.error.setText(f"baud rate {baud!r} is not a positive integer")
            return
        self.accept()

    def config(self) -> DeviceConfig:
        """The devices chosen (empty fields: that device is off)."""
        port = self.port.currentText().strip()
        baud = self.baud.currentText().strip() or "115200"
        return replace(self._config, camera=self.camera.currentText().strip() or None, mic=self.mic.currentData(),
                       imu=f"{port}@{baud}" if port else None, replay=self.replay.text().strip() or None,
                       speed=float(self.speed.value()))
