"""The seed tutorial's sine-wave GRU, trained in JAX with jaxgru and optax; ``--compare-torch`` trains
the tutorial's PyTorch model beside it from the same initial weights.

Run: ``python examples/sine.py --compare-torch`` (after ``bash scripts/setup.sh``), or the installed
console command ``jaxgru-sine``; ``--help`` lists the flags. The code lives in
:mod:`parity.sine.cli` (the command) and :mod:`parity.sine.task` (data, model, training).
"""

import sys

from parity.sine.cli import main

if __name__ == "__main__":
  sys.exit(main())
