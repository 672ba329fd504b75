"""``python -m pysciml``: the same as the ``pysciml`` command."""

import sys

from pysciml.cli import main

if __name__ == "__main__":
    sys.exit(main())
