"""``python -m parity``: the sweep of :mod:`parity.proof.cli`."""

import sys

from parity.proof.cli import main

if __name__ == "__main__":
  sys.exit(main())
