"""``mmg-live`` without ``--headless``: load the model, open the devices, run the window."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from mmg_common import one_line
from mmg_live.gui.live_session import LiveSession, default_prototypes_path
from mmg_live.gui.qt_env import ensure_app
from mmg_live.options import LiveOptions
from mmg_live.sources import load_calibration


def load_model(options: LiveOptions) -> tuple[Any, str | None]:
    """``(model, note)``: ``--checkpoint``, else the shipped default; None (with why) for preview only."""
    path = options.checkpoint
    if not path:
        from mmg_live.assets import default_checkpoint_path

        try:
            path = str(default_checkpoint_path())
        except FileNotFoundError:
            return None, ("No model: the default checkpoint is not installed and no --checkpoint was given; "
                          "showing the devices only (no predictions).")
    from mmg_live.checkpoint import load_checkpoint

    try:
        model, _info = load_checkpoint(path, "cpu" if options.backend == "onnxruntime" else options.device)
    except (ValueError, OSError, RuntimeError) as exc:
        return None, f"No model: {one_line(exc)}; showing the devices only (no predictions)."
    return model, None


def load_bank(options: LiveOptions, model: Any) -> tuple[Any, str | None]:
    """The custom actions from ``--prototypes`` (or the default file when it exists), and a note."""
    if model is None:
        return None, None
    from mmg_live.prototypes import PrototypeBank

    path = Path(options.prototypes) if options.prototypes else default_prototypes_path()
    if not path.is_file():
        return PrototypeBank(model), None
    try:
        return PrototypeBank.load(path, model), None
    except (ValueError, OSError, RuntimeError) as exc:
        return PrototypeBank(model), f"Custom actions not loaded: {one_line(exc)}"


def load_session_calibration(options: LiveOptions) -> tuple[Any, str | None]:
    """The ``--calibration`` profile (None without one), and a note when it cannot be applied."""
    if not options.calibration:
        return None, None
    try:
        return load_calibration(options.calibration), None
    except ValueError as exc:
        return None, f"Calibration not applied: {one_line(exc)}"


def main(options: LiveOptions) -> int:
    """Run the GUI until the window closes (or ``--seconds`` pass); returns the exit status."""
    app = ensure_app()
    from PyQt6.QtCore import QTimer

    from mmg_live.gui.main_window import MainWindow

    model, model_note = load_model(options)
    bank, bank_note = load_bank(options, model)
    calibration, cal_note = load_session_calibration(options)
    session = LiveSession(options, model, bank, stride_s=options.stride_s, calibration=calibration)
    window = MainWindow(session, notes=[n for n in (model_note, bank_note, cal_note) if n],
                        source_label=options.source_label)
    window.show()
    window.start()
    if options.record:
        window.start_recording(options.record)
    if options.seconds:
        QTimer.singleShot(int(options.seconds * 1000), window.close)
    # Qt does not return to Python while idle; a no-op timer lets Ctrl+C/SIGTERM close the window.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: window.close())
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)
    rc = app.exec()
    wake.stop()
    return int(rc)
