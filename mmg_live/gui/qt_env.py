"""Qt environment fixes that must happen before the first QApplication is created."""

from __future__ import annotations

import os


def prepare_qt_env() -> None:
    """Drop plugin paths that point into OpenCV's bundled Qt (a Qt5 plugin crashes PyQt6)."""
    for var in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_PLUGIN_PATH"):
        value = os.environ.get(var, "")
        if "cv2" in value:
            os.environ.pop(var, None)


def ensure_app(argv: list[str] | None = None):
    """The process's QApplication, created on first use (after :func:`prepare_qt_env`)."""
    prepare_qt_env()
    from PyQt6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(argv or ["mmg-live"])
        app.setApplicationName("mmg-live")
    return app
