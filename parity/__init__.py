"""parity: move GRU weights between PyTorch and JAX and prove nothing changed on the way.

Imports torch; :mod:`jaxgru` never does.
"""

from parity._runs import run_jax, run_torch

__all__ = ["run_jax", "run_torch"]
