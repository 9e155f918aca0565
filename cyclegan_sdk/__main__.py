"""``python -m cyclegan_sdk``: the ``cyclegan`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
