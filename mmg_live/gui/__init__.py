"""The PyQt6 GUI of mmg-live: ``mmg_live.gui.app.main(options)`` runs it (``mmg-live`` without ``--headless``)."""
