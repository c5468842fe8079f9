"""Display widgets of the main window: video preview, audio level, IMU traces, predictions, health.

Every widget paints with QPainter from data handed to it on the GUI thread; none reads devices.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPainterPath, QPen
from PyQt6.QtWidgets import QSizePolicy, QTableWidget, QTableWidgetItem, QWidget

from mmg_live.pose.landmarks import SKELETON_EDGES

AXIS_COLORS = (QColor("#e04040"), QColor("#30a030"), QColor("#3070e0"))
STALE_COLOR = QColor("#ffd0d0")
OK_COLOR = QColor("#ffffff")


def frame_to_qimage(frame: np.ndarray) -> QImage:
    """``[H, W, C]`` uint8 (C = 1 gray, 3 RGB, 4 RGBA) → a QImage owning a copy of the pixels."""
    frame = np.ascontiguousarray(frame)
    h, w = frame.shape[:2]
    c = frame.shape[2] if frame.ndim == 3 else 1
    fmt = {1: QImage.Format.Format_Grayscale8, 3: QImage.Format.Format_RGB888, 4: QImage.Format.Format_RGBA8888}[c]
    return QImage(frame.data, w, h, w * c, fmt).copy()


class VideoPreview(QWidget):
    """The newest camera frame, scaled to fit, with the pose skeleton over it when one is given;
    counts the distinct frames it showed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._image: QImage | None = None
        self._last_t: float | None = None
        self._skeleton: np.ndarray | None = None
        self.frames_shown = 0
        self.paints = 0
        self.placeholder = "no video"

    def show_frame(self, frame: np.ndarray, t: float) -> bool:
        """Show ``frame`` (taken at host time ``t``); returns False when it is the frame already shown."""
        if self._last_t is not None and t <= self._last_t:
            return False
        self._image = frame_to_qimage(frame)
        self._last_t = t
        self.frames_shown += 1
        self.update()
        return True

    @property
    def skeleton(self) -> np.ndarray | None:
        """The ``[33, 2]`` landmarks drawn over the frame, or None."""
        return self._skeleton

    def set_skeleton(self, landmarks: np.ndarray | None) -> None:
        """Draw these ``[33, 2+]`` landmarks (x, y normalised to the frame) over it; None: none."""
        self._skeleton = None if landmarks is None else np.asarray(landmarks, np.float32)[:, :2]
        self.update()

    def clear(self, placeholder: str = "no video") -> None:
        self._image, self._last_t, self.placeholder, self._skeleton = None, None, placeholder, None
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.paints += 1
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#202020"))
        if self._image is None:
            p.setPen(QColor("#c0c0c0"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
        else:
            img = self._image
            scale = min(self.width() / img.width(), self.height() / img.height())
            w, h = img.width() * scale, img.height() * scale
            target = QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
            p.drawImage(target, img)
            if self._skeleton is not None:
                self._paint_skeleton(p, target)
        p.end()

    def _paint_skeleton(self, p: QPainter, target: QRectF) -> None:
        pts = self._skeleton
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor("#40e0a0"), 2.0))
        for a, b in SKELETON_EDGES:
            if np.isfinite(pts[[a, b]]).all():
                ends = [QPointF(target.left() + pts[i, 0] * target.width(), target.top() + pts[i, 1] * target.height())
                        for i in (a, b)]
                p.drawLine(*ends)


class LevelMeter(QWidget):
    """Audio level as a horizontal bar: RMS (filled) and peak (line) in dBFS from -60 to 0."""

    FLOOR_DB = -60.0

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(22)
        self.rms_db: float | None = None
        self.peak_db: float | None = None

    def set_samples(self, samples: np.ndarray | None) -> None:
        """Level of an ``[n, channels]`` float block (None or empty: no audio)."""
        if samples is None or len(samples) == 0:
            self.rms_db = self.peak_db = None
        else:
            x = np.asarray(samples, np.float64)
            self.rms_db = 20 * math.log10(max(float(np.sqrt(np.mean(x * x))), 1e-6))
            self.peak_db = 20 * math.log10(max(float(np.max(np.abs(x))), 1e-6))
        self.update()

    def _frac(self, db: float) -> float:
        return min(1.0, max(0.0, (db - self.FLOOR_DB) / -self.FLOOR_DB))

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        r = self.rect().adjusted(0, 0, -1, -1)
        p.fillRect(r, QColor("#303030"))
        if self.rms_db is None:
            p.setPen(QColor("#c0c0c0"))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, "no audio")
        else:
            w = r.width() * self._frac(self.rms_db)
            level = "#40c040" if self.rms_db < -12 else "#e0c030" if self.rms_db < -3 else "#e04040"
            color = QColor(level)
            p.fillRect(QRectF(r.left(), r.top(), w, r.height()), color)
            x = r.left() + r.width() * self._frac(self.peak_db or self.FLOOR_DB)
            p.setPen(QPen(QColor("#ffffff"), 2))
            p.drawLine(int(x), r.top(), int(x), r.bottom())
            p.drawText(r.adjusted(4, 0, -4, 0), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       f"{self.rms_db:.0f} dBFS")
        p.end()


class TracePlot(QWidget):
    """Three channels (x, y, z) over the last ``span_s`` seconds, auto-scaled, with a title."""

    def __init__(self, title: str, unit: str, span_s: float = 5.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title, self.unit, self.span_s = title, unit, span_s
        self.setMinimumSize(240, 90)
        self.t = np.zeros(0)
        self.y = np.zeros((0, 3))

    def set_data(self, t: np.ndarray, y: np.ndarray) -> None:
        """Timestamps ``[n]`` (seconds) and values ``[n, 3]``; only the last ``span_s`` s are drawn."""
        t = np.asarray(t, np.float64)
        keep = t >= (t[-1] - self.span_s) if len(t) else slice(None)
        self.t, self.y = t[keep], np.asarray(y, np.float64)[keep]
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(2, 16, -2, -2)
        p.fillRect(self.rect(), QColor("#fafafa"))
        p.setPen(QColor("#404040"))
        p.drawText(4, 12, f"{self.title} ({self.unit})")
        p.setPen(QColor("#d0d0d0"))
        p.drawRect(r)
        if len(self.t) < 2:
            p.setPen(QColor("#808080"))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, "no IMU data")
            p.end()
            return
        lo, hi = float(self.y.min()), float(self.y.max())
        pad = max((hi - lo) * 0.1, 1e-3)
        lo, hi = lo - pad, hi + pad
        t1 = self.t[-1]
        xs = r.right() - (t1 - self.t) / self.span_s * r.width()
        p.setPen(QColor("#808080"))
        p.drawText(r.adjusted(3, 0, 0, 0), Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft, f"{hi:.2f}")
        p.drawText(r.adjusted(3, 0, 0, 0), Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignLeft, f"{lo:.2f}")
        for k in range(min(3, self.y.shape[1])):
            ys = r.bottom() - (self.y[:, k] - lo) / (hi - lo) * r.height()
            path = QPainterPath()
            path.moveTo(float(xs[0]), float(ys[0]))
            for x, y in zip(xs[1:], ys[1:]):
                path.lineTo(float(x), float(y))
            p.setPen(QPen(AXIS_COLORS[k], 1.5))
            p.drawPath(path)
        p.end()


class PredictionBars(QWidget):
    """Ranked predictions: label, probability as a bar and in %, and ``base``/``custom`` kind."""

    ROW = 26

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.entries: list[tuple[str, float, str]] = []
        self.seq = 0
        self.stale = False
        self.message = "waiting for predictions…"
        self.setMinimumHeight(5 * self.ROW + 4)

    def set_entries(self, entries: Sequence[tuple[str, float, str]], seq: int = 0) -> None:
        self.entries = [(str(label), float(p), str(kind)) for label, p, kind in entries]
        self.seq = seq
        self.stale = False
        self.setMinimumHeight(max(5, len(self.entries)) * self.ROW + 4)
        self.update()

    def set_stale(self, stale: bool = True) -> None:
        """Grey the bars out: they show the last prediction, not a current one."""
        self.stale = stale
        self.update()

    def set_message(self, message: str) -> None:
        """Text shown instead of bars (no model, no prediction yet)."""
        self.entries, self.message = [], message
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#ffffff"))
        if not self.entries:
            p.setPen(QColor("#606060"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.message)
            p.end()
            return
        label_w = min(200, self.width() // 3)
        bar_x, bar_w = label_w + 8, max(40, self.width() - label_w - 120)
        bold = QFont(self.font())
        bold.setBold(True)
        for i, (label, prob, kind) in enumerate(self.entries):
            y = 2 + i * self.ROW
            p.setFont(bold if i == 0 else self.font())
            p.setPen(QColor("#202020"))
            p.drawText(QRectF(4, y, label_w, self.ROW - 4), Qt.AlignmentFlag.AlignVCenter, label)
            color = QColor("#8a4fd8") if kind == "custom" else QColor("#2f80d0")
            if self.stale:
                color = QColor("#b8b8b8")
            p.fillRect(QRectF(bar_x, y + 3, bar_w, self.ROW - 10), QColor("#eeeeee"))
            p.fillRect(QRectF(bar_x, y + 3, bar_w * max(0.0, min(1.0, prob)), self.ROW - 10), QBrush(color))
            p.drawText(QRectF(bar_x + bar_w + 6, y, 110, self.ROW - 4), Qt.AlignmentFlag.AlignVCenter,
                       f"{prob * 100:5.1f}% {kind}")
        p.end()


class HealthTable(QTableWidget):
    """One row per device: rate (measured / nominal), drops, lag, clock offset, status.

    A stale device (error, or no sample for more than a second) is shown in red with the reason.
    """

    COLUMNS = ("device", "modality", "rate (Hz)", "dropped", "lag", "clock offset", "status")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(self.COLUMNS), parent)
        self.setHorizontalHeaderLabels(self.COLUMNS)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setStretchLastSection(True)
        self.setMaximumHeight(140)
        self.stale: dict[str, str | None] = {}
        self.rates: dict[str, float] = {}

    def set_rows(self, rows: Sequence[dict]) -> None:
        """Rows of ``name, modality, rate, nominal, dropped, lag, offset, problem``."""
        self.setRowCount(len(rows))
        self.stale = {}
        for i, row in enumerate(rows):
            lag = "—" if row["lag"] is None else f"{row['lag'] * 1000:.0f} ms"
            cells = (row["name"], row["modality"], f"{row['rate']:.1f} / {row['nominal']:.1f}", str(row["dropped"]),
                     lag, f"{row['offset'] * 1000:+.1f} ms", row["problem"] or "ok")
            bg = STALE_COLOR if row["problem"] else OK_COLOR
            for j, text in enumerate(cells):
                item = self.item(i, j)
                if item is None:
                    item = QTableWidgetItem()
                    self.setItem(i, j, item)
                item.setText(text)
                item.setBackground(bg)
                item.setForeground(QColor("#b00000") if row["problem"] and j == len(cells) - 1 else QColor("#000000"))
                item.setToolTip(row["problem"] or "")
            self.stale[row["name"]] = row["problem"]
            self.rates[row["name"]] = row["rate"]
