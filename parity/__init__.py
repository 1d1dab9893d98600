"""parity: move GRU weights between PyTorch and JAX and prove nothing changed on the way.

- :func:`from_torch` / :func:`to_torch`: ``torch.nn.GRU`` / ``GRUCell`` <-> ``jaxgru`` modules.
- :func:`state_dict_to_params` / :func:`params_to_state_dict`: the same for plain arrays.
- :func:`save` / :func:`load`: safetensors with torch's names; torch ``.pt`` files (weights only).
- :func:`load_tensors` / :func:`save_tensors` / :func:`tied_names`: a whole model's state dict, tied weights too.
- :func:`compare` / :func:`assert_close`: outputs, states and every gradient, torch vs JAX.
- :mod:`parity.other_jax`: weights to and from Flax's, Equinox's and Haiku's GRU cells.
- :mod:`parity.keras`, :mod:`parity.onnx`: Keras 3 GRU layers and ONNX ``GRU`` operators (ONNX Runtime).
- ``python -m parity``: the sweep on this machine's devices.

Imports torch; :mod:`jaxgru` never does.
"""

from parity._runs import run_jax, run_torch
from parity.convert import from_torch, module_from_params, params_to_state_dict, state_dict_to_params, to_torch
from parity.files import load, load_tensors, save, save_tensors, tied_names
from parity.report import Report, assert_close, compare


def __getattr__(name: str):
  # imported on first use: other_jax needs equinox (the `others` extra), keras and onnx their extras
  if name in ("other_jax", "keras", "onnx"):
    import importlib

    return importlib.import_module(f"parity.{name}")
  raise AttributeError(f"module 'parity' has no attribute {name!r}")


__all__ = [
  "Report",
  "assert_close",
  "compare",
  "from_torch",
  "load",
  "load_tensors",
  "module_from_params",
  "params_to_state_dict",
  "run_jax",
  "run_torch",
  "save",
  "save_tensors",
  "state_dict_to_params",
  "tied_names",
  "to_torch",
]
