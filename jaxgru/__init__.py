"""jaxgru: PyTorch's ``torch.nn.GRU`` in JAX and Flax, exactly.

- :func:`gru`, :func:`gru_cell`: the pure functional core, over torch-layout params.
- :class:`GRU`, :class:`GRUCell`: Flax NNX modules; :mod:`jaxgru.linen`: Flax Linen modules.
- :func:`init_gru_params`, :func:`init_gru_cell_params`: torch's initialisation.
- :func:`native_available`, :func:`native_status`: whether ``impl="native"`` (the C++ kernel) can run here;
  :func:`export_checks`: what ``jax.export`` needs to keep it in a CPU export.
"""

from jaxgru import linen
from jaxgru._core import gru, gru_cell, gru_step
from jaxgru._native import export_checks, native_available, native_status
from jaxgru._nnx import GRU, GRUCell
from jaxgru._params import GRUSpec, expected_shapes, gru_spec, init_gru_cell_params, init_gru_params

__version__ = "0.1.0"

__all__ = [
  "GRU",
  "GRUCell",
  "GRUSpec",
  "expected_shapes",
  "export_checks",
  "gru",
  "gru_cell",
  "gru_spec",
  "gru_step",
  "init_gru_cell_params",
  "init_gru_params",
  "linen",
  "native_available",
  "native_status",
]
