"""A panel that runs one guided calibration flow (:mod:`calibration.guided`) in a worker thread:
each question shows in a prompt with a Next button, each message in a log."""

from __future__ import annotations

import threading
from typing import Any, Callable

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from mmg_common import one_line

Ask = Callable[[str], object]
Say = Callable[[str], object]
Flow = Callable[[Ask, Say], Any]  # a calibration.guided runner with its source bound


class GuidedFlowPanel(QWidget):
    """Start / Next buttons, a prompt and a log around one guided flow.

    Args:
        first_prompt: shown before Start.
        capturing: shown while a capture runs (after Next).
        failure: prefix of the message shown when the flow raises.
        intro: an explanation above the prompt (optional).
    """

    asked = pyqtSignal(str)
    said = pyqtSignal(str)
    finished = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, first_prompt: str, capturing: str, failure: str, intro: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.capturing, self.failure = capturing, failure
        self.running = False
        self._next = threading.Event()
        self._cancel = threading.Event()
        self._on_done: Callable[[Any], str] = str
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        if intro:
            howto = QLabel(intro)
            howto.setWordWrap(True)
            v.addWidget(howto)
        self.prompt = QLabel(first_prompt)
        self.prompt.setWordWrap(True)
        self.prompt.setStyleSheet("font-size:15px; font-weight:bold;")
        v.addWidget(self.prompt)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        v.addWidget(self.log, 1)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        v.addWidget(self.result)
        row = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.next_button = QPushButton("Next")
        self.next_button.setEnabled(False)
        self.next_button.clicked.connect(self.next_step)
        row.addWidget(self.start_button)
        row.addWidget(self.next_button)
        row.addStretch(1)
        v.addLayout(row)
        self.asked.connect(self._on_asked)
        self.said.connect(self.log.appendPlainText)
        self.finished.connect(self._on_finished)
        self.failed.connect(self._on_failed)

    def start(self, flow: Flow, on_done: Callable[[Any], str], name: str = "mmg-guided-flow") -> None:
        """Run ``flow(ask, say)`` in a worker thread; ``on_done(result)`` (GUI thread) returns the
        text that replaces the prompt when it succeeds."""
        self.running = True
        self._on_done = on_done
        self._cancel.clear()
        self.start_button.setEnabled(False)
        self.log.clear()
        self.result.setText("")

        def ask(prompt: str) -> None:
            from calibration.errors import CalibrationError

            self._next.clear()
            self.asked.emit(prompt.replace(" [Enter]", "").rstrip() + " Then press Next.")
            while not self._next.wait(0.1):
                if self._cancel.is_set():
                    raise CalibrationError("calibration cancelled")

        def work() -> None:
            try:
                result = flow(ask, self.said.emit)
            except Exception as exc:  # CalibrationError, DeviceError: one line in the panel
                self.failed.emit(one_line(exc))
                return
            self.finished.emit(result)

        threading.Thread(target=work, name=name, daemon=True).start()

    def next_step(self) -> None:
        """The user holds the pose: capture it."""
        self.next_button.setEnabled(False)
        self.prompt.setText(self.capturing)
        self._next.set()

    def cancel(self) -> None:
        """Stop a running flow at its next question."""
        self._cancel.set()

    def _stopped(self) -> None:
        self.running = False
        self.start_button.setEnabled(True)
        self.next_button.setEnabled(False)

    def _on_asked(self, text: str) -> None:
        self.prompt.setText(text)
        self.next_button.setEnabled(True)

    def _on_finished(self, result: Any) -> None:
        self._stopped()
        self.prompt.setText(self._on_done(result))

    def _on_failed(self, message: str) -> None:
        self._stopped()
        self.prompt.setText(f"{self.failure}: {message}")
