"""The PyQt6 GUI of mmg-live: ``mmg_live.gui.app.main(args)`` runs it (``mmg-live`` without ``--headless``)."""
