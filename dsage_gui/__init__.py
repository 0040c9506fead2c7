"""The dsage desktop app (PySide6): one event loop for Qt and Twisted; uses dsage_core's client,
LocalCluster and a few helpers (docs/ARCHITECTURE.md, "The desktop app")."""
