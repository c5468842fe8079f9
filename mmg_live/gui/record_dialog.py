"""Custom actions: record a new one from a few examples, and the list to rename, delete and save them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtCore import QObject, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QPixmap
from PyQt6.QtWidgets import (QDialog, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QInputDialog, QLabel,
                             QLineEdit, QListWidget, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from mmg_common import one_line
from mmg_live.gui.live_session import LiveSession, default_prototypes_path
from mmg_live.gui.widgets import TracePlot, frame_to_qimage


def name_problem(session: LiveSession, name: str) -> str | None:
    """Why ``name`` cannot be a custom action (empty, reserved, a base class), or None."""
    from mmg_live.prototypes import UNKNOWN

    name = name.strip()
    if not name:
        return "Give the action a name."
    if name == UNKNOWN:
        return f"“{UNKNOWN}” is reserved; choose another name."
    if session.model is not None and name in session.model.class_names:
        return f"“{name}” clashes with a base class of the model; choose another name."
    return None


@dataclass
class Example:
    """One captured example: the model inputs plus what the user sees of it."""

    tensors: dict[str, Any]
    t_end: float
    length_s: float
    thumbnail: np.ndarray | None = None
    imu: tuple[np.ndarray, np.ndarray] | None = None
    problems: dict[str, str] = field(default_factory=dict)


class _Signals(QObject):
    enrolled = pyqtSignal(object)


class RecordActionDialog(QDialog):
    """Record a new custom action: name, number and length of examples, countdown, keep/redo, enrol.

    Args:
        session: the live session (its engine captures the examples, its bank receives them).
        countdown_s: seconds of countdown before each example (tests use 0).
        length_s: default example length (default: the model's longest window in use).
        examples: default number of examples.
    """

    def __init__(self, session: LiveSession, parent: QWidget | None = None, countdown_s: int = 3,
                 length_s: float | None = None, examples: int = 5) -> None:
        super().__init__(parent)
        self.setWindowTitle("Record a new action")
        self.session = session
        self.countdown_s = int(countdown_s)
        self.examples: list[Example] = []
        self.current: Example | None = None
        self.enrolled_name: str | None = None
        self._remaining = 0
        self._signals = _Signals()
        self._signals.enrolled.connect(self._on_enrolled)
        self._tick = QTimer(self)
        self._tick.timeout.connect(self._countdown_step)
        self._capture_timer = QTimer(self)
        self._capture_timer.setSingleShot(True)
        self._capture_timer.timeout.connect(self._capture)

        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("e.g. drink water")
        form.addRow("Action name", self.name_edit)
        self.count_spin = QSpinBox()
        self.count_spin.setRange(1, 20)
        self.count_spin.setValue(examples)
        form.addRow("Examples", self.count_spin)
        self.length_spin = QDoubleSpinBox()
        self.length_spin.setRange(0.05, 30.0)
        self.length_spin.setDecimals(2)
        self.length_spin.setSuffix(" s")
        self.length_spin.setValue(length_s if length_s is not None else session.longest_window_s())
        form.addRow("Length of each", self.length_spin)
        layout.addLayout(form)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color:#900000;")
        layout.addWidget(self.message)
        self.status = QLabel("Press Start, then perform the action when the countdown ends.")
        self.status.setStyleSheet("font-size:16px; font-weight:bold;")
        layout.addWidget(self.status)

        view = QGroupBox("Last example")
        vv = QHBoxLayout(view)
        self.thumbnail = QLabel("—")
        self.thumbnail.setFixedSize(160, 120)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        vv.addWidget(self.thumbnail)
        self.trace = TracePlot("IMU accel", "g", span_s=self.length_spin.value())
        vv.addWidget(self.trace, 1)
        layout.addWidget(view)
        self.kept_label = QLabel("kept: 0")
        layout.addWidget(self.kept_label)

        row = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.keep_button = QPushButton("Keep")
        self.keep_button.clicked.connect(self.keep)
        self.redo_button = QPushButton("Redo")
        self.redo_button.clicked.connect(self.redo)
        self.finish_button = QPushButton("Finish")
        self.finish_button.clicked.connect(self.finish)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        for b in (self.start_button, self.keep_button, self.redo_button, self.finish_button, cancel):
            row.addWidget(b)
        layout.addLayout(row)
        self._set_buttons(start=True)

    def _set_buttons(self, start: bool = False, review: bool = False, finish: bool = False) -> None:
        self.start_button.setEnabled(start)
        self.keep_button.setEnabled(review)
        self.redo_button.setEnabled(review)
        self.finish_button.setEnabled(finish)

    @property
    def target(self) -> int:
        return self.count_spin.value()

    # ---- flow ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Check the name and begin the first example."""
        name = self.name_edit.text().strip()
        problem = name_problem(self.session, name)
        if problem is None and self.session.engine is None:
            problem = "No model is loaded: custom actions need a model (--checkpoint)."
        if problem:
            self.message.setText(problem)
            return
        self.message.setText("")
        self.name_edit.setEnabled(False)
        self.count_spin.setEnabled(False)
        self.length_spin.setEnabled(False)
        self._next_example()

    def _next_example(self) -> None:
        self._set_buttons()
        self.current = None
        self._remaining = self.countdown_s
        if self._remaining > 0:
            self._countdown_step(first=True)
            self._tick.start(1000)
        else:
            self._record()

    def _countdown_step(self, first: bool = False) -> None:
        if not first:
            self._remaining -= 1
        if self._remaining <= 0:
            self._tick.stop()
            self._record()
            return
        self.status.setText(f"Example {len(self.examples) + 1}/{self.target}: get ready… {self._remaining}")

    def _record(self) -> None:
        self.status.setText(f"Example {len(self.examples) + 1}/{self.target}: go! recording "
                            f"{self.length_spin.value():.1f} s…")
        self._capture_timer.start(int(self.length_spin.value() * 1000))

    def _capture(self) -> None:
        engine = self.session.engine
        if engine is None:
            self.status.setText("The engine stopped (devices changed?); cancel and try again.")
            return
        mods = self.session.trained_modalities()
        tensors, problems, t_end = engine.capture_inputs(modalities=mods)
        length = self.length_spin.value()
        ex = Example(tensors, t_end or 0.0, length, problems=problems)
        video = self.session.display_buffer("video")
        if video is not None:
            frames, _ = video.latest(0.0)
            ex.thumbnail = frames[-1] if len(frames) else None
        imu = self.session.display_buffer("imu")
        if imu is not None and t_end is not None:
            data, ts = imu.window(t_end - length, t_end + 1e-6)
            ex.imu = (ts, data[:, :3]) if len(ts) else None
        self.current = ex
        self._show(ex)
        n = len(self.examples) + 1
        if tensors:
            left_out = "; ".join(f"{m}: {why}" for m, why in problems.items())
            self.status.setText(f"Example {n}/{self.target} captured ({' + '.join(sorted(tensors))})"
                                + (f"; left out {left_out}" if left_out else "") + ". Keep it or redo it?")
            self._set_buttons(review=True)
        else:
            why = "; ".join(f"{m}: {p}" for m, p in problems.items()) or "no usable data"
            self.status.setText(f"Example {n} could not be captured ({why}). Redo it.")
            self._set_buttons()
            self.redo_button.setEnabled(True)

    def _show(self, ex: Example) -> None:
        if ex.thumbnail is not None:
            pix = QPixmap.fromImage(frame_to_qimage(ex.thumbnail))
            self.thumbnail.setPixmap(pix.scaled(self.thumbnail.size(), Qt.AspectRatioMode.KeepAspectRatio))
        else:
            self.thumbnail.setText("no video")
        if ex.imu is not None:
            self.trace.span_s = max(ex.length_s, 0.1)
            self.trace.set_data(*ex.imu)

    def keep(self) -> None:
        """Keep the example just captured; record the next or allow Finish."""
        if self.current is None or not self.current.tensors:
            return
        self.examples.append(self.current)
        self.current = None
        self.kept_label.setText(f"kept: {len(self.examples)} of {self.target}")
        if len(self.examples) >= self.target:
            self.status.setText(f"All {self.target} examples kept. Press Finish to add “{self.name()}”.")
            self._set_buttons(finish=True)
        else:
            self._next_example()

    def redo(self) -> None:
        """Throw away the example just captured and record it again."""
        self.current = None
        self._next_example()

    def name(self) -> str:
        return self.name_edit.text().strip()

    def finish(self) -> None:
        """Enrol every kept example (in a worker thread: it runs the encoders) and make it live."""
        if not self.examples:
            return
        self._set_buttons()
        self.status.setText("Adding the examples…")
        name, bank, examples = self.name(), self.session.bank, list(self.examples)

        def work() -> None:
            try:
                bank.add_examples(name, [ex.tensors for ex in examples],
                                  [{"t_end": ex.t_end, "length_s": ex.length_s, "example": i,
                                    "modalities": sorted(ex.tensors)} for i, ex in enumerate(examples)])
                self._signals.enrolled.emit(None)
            except Exception as exc:  # PrototypeError and the like: shown, never a traceback
                self._signals.enrolled.emit(one_line(exc))

        threading.Thread(target=work, name="mmg-enrol", daemon=True).start()

    def _on_enrolled(self, error: str | None) -> None:
        if error:
            self.message.setText(error)
            self._set_buttons(finish=True)
            return
        self.session.publish_bank()
        self.enrolled_name = self.name()
        self.status.setText(f"“{self.name()}” is live ({len(self.examples)} examples).")
        self.accept()

    def reject(self) -> None:
        self._tick.stop()
        self._capture_timer.stop()
        super().reject()


class CustomActionsPanel(QGroupBox):
    """The custom actions of the session's bank: record, rename, delete, save."""

    def __init__(self, session: LiveSession, parent: QWidget | None = None) -> None:
        super().__init__("Custom actions", parent)
        self.session = session
        layout = QVBoxLayout(self)
        self.list = QListWidget()
        layout.addWidget(self.list, 1)
        row = QHBoxLayout()
        self.record_button = QPushButton("Record new…")
        self.record_button.clicked.connect(self.record_new)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.clicked.connect(self._rename_clicked)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self._delete_clicked)
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(lambda: self.save())
        for b in (self.record_button, self.rename_button, self.delete_button, self.save_button):
            row.addWidget(b)
        layout.addLayout(row)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.refresh()
        if session.bank is None:
            for b in (self.record_button, self.rename_button, self.delete_button, self.save_button):
                b.setEnabled(False)
            self.message.setText("Custom actions need a model.")

    def path(self) -> Path:
        """Where the bank is saved: ``--prototypes`` or the default per-user file."""
        given = self.session.options.prototypes
        return Path(given) if given else default_prototypes_path()

    def refresh(self) -> None:
        self.list.clear()
        bank = self.session.bank
        if bank is None:
            return
        for name, n in bank.counts().items():
            self.list.addItem(f"{name} ({n} example{'s' if n != 1 else ''})")

    def selected(self) -> str | None:
        row = self.list.currentRow()
        names = self.session.bank.names() if self.session.bank is not None else []
        return names[row] if 0 <= row < len(names) else None

    def record_new(self) -> RecordActionDialog:
        dialog = RecordActionDialog(self.session, self)
        dialog.finished.connect(lambda _: self._after_record(dialog))
        dialog.open()
        return dialog

    def _after_record(self, dialog: RecordActionDialog) -> None:
        if dialog.enrolled_name:
            self.message.setText(f"“{dialog.enrolled_name}” added and live; press Save to keep it.")
        self.refresh()

    def rename(self, old: str, new: str) -> bool:
        """Rename a custom action; False (with the reason shown) when it cannot be."""
        new = new.strip()
        problem = name_problem(self.session, new)
        if problem is None:
            try:
                self.session.bank.rename(old, new)
            except ValueError as exc:
                problem = one_line(exc)
        self.message.setText(problem or f"renamed “{old}” to “{new}”")
        self.session.publish_bank()
        self.refresh()
        return problem is None

    def delete(self, name: str) -> bool:
        try:
            n = self.session.bank.remove(name)
        except ValueError as exc:
            self.message.setText(one_line(exc))
            return False
        self.session.publish_bank()
        self.message.setText(f"deleted “{name}” ({n} examples)")
        self.refresh()
        return True

    def save(self, path: str | Path | None = None) -> Path | None:
        """Save the bank (default :meth:`path`); returns the file, or None with the error shown."""
        target = Path(path) if path is not None else self.path()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            written = self.session.bank.save(target)
        except (OSError, ValueError, RuntimeError) as exc:
            self.message.setText(f"cannot save custom actions to {target}: {one_line(exc)}")
            return None
        self.message.setText(f"saved {len(self.session.bank)} custom actions to {written}")
        return Path(written)

    def _rename_clicked(self) -> None:
        old = self.selected()
        if old is None:
            self.message.setText("Select an action to rename.")
            return
        new, ok = QInputDialog.getText(self, "Rename custom action", f"New name for “{old}”:", text=old)
        if ok:
            self.rename(old, new)

    def _delete_clicked(self) -> None:
        name = self.selected()
        if name is None:
            self.message.setText("Select an action to delete.")
            return
        self.delete(name)
