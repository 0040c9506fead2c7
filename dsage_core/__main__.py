"""``python -m dsage_core`` is the ``dsage`` command."""
import sys

from dsage_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
