"""The dsage desktop app (PySide6): one event loop for Qt and Twisted; talks only to dsage_core.client."""
