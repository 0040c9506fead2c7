"""Bundle entry point: the tray worker (``dsage-tray``); also serves its worker's child processes."""
import sys

from entry_app import dispatch

if __name__ == "__main__":
    sys.exit(dispatch("tray"))
