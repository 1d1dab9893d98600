"""parity: move GRU, LSTM and RNN weights between PyTorch and JAX and prove nothing changed on the way.

- :func:`from_torch` / :func:`to_torch`: ``torch.nn.GRU`` / ``GRUCell`` (``LSTM``, ``RNN`` and
  their cells) <-> ``jaxgru`` modules.
- :func:`state_dict_to_params` / :func:`params_to_state_dict`: the same for plain arrays.
- :func:`save` / :func:`load`: safetensors with torch's names; torch ``.pt`` files (weights only).
- :func:`load_tensors` / :func:`save_tensors` / :func:`tied_names`: a whole model's state dict, tied weights too.
- :func:`compare` / :func:`assert_close`: outputs, states and every gradient, torch vs JAX.
- :func:`compare_models`: the same for a whole model, a torch module against its JAX port.
- :mod:`parity.other_jax <parity.frameworks.other_jax>`: weights to and from Flax's, Equinox's and Haiku's GRU, LSTM and simple cells (also in ``jax.numpy``, under ``jit``).
- :mod:`parity.keras <parity.frameworks.keras>`, :mod:`parity.onnx <parity.frameworks.onnx>`: Keras 3 GRU layers and ONNX ``GRU``, ``LSTM`` and ``RNN`` operators (ONNX Runtime).
- :mod:`parity.torchrl <parity.frameworks.torchrl>`: torchrl's recurrent ``GRUModule`` and ``LSTMModule`` against ``jaxgru`` with episode resets.
- ``python -m parity``: the sweep on this machine's devices.

The code lives in four folders, one per concern: :mod:`parity.weights` (conversion and files),
:mod:`parity.proof` (runs, comparison, the sweep), :mod:`parity.frameworks` (Keras, ONNX, other
JAX cells, torchrl; ``from parity import keras`` gives :mod:`parity.frameworks.keras`) and
:mod:`parity.sine` (the sine task and ``jaxgru-sine``).

Needs torch and safetensors (``pip install "jaxgru[parity]"``); :mod:`jaxgru` never imports
torch. The names above are imported on first use, so ``import parity`` works without them and
the first use of one says which extra to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from parity import _extras

if TYPE_CHECKING:
  from parity.frameworks import keras, onnx, other_jax, torchrl  # noqa: F401  (found by __getattr__)
  from parity.proof.models import compare_models
  from parity.proof.report import Report, assert_close, compare
  from parity.proof.runs import run_jax, run_torch
  from parity.weights.convert import from_torch, module_from_params, params_to_state_dict, state_dict_to_params, to_torch
  from parity.weights.files import load, load_tensors, save, save_tensors, tied_names

# the module each public name comes from
_HOME = {
  **dict.fromkeys(("run_jax", "run_torch"), "parity.proof.runs"),
  **dict.fromkeys(
    ("from_torch", "module_from_params", "params_to_state_dict", "state_dict_to_params", "to_torch"),
    "parity.weights.convert",
  ),
  **dict.fromkeys(("load", "load_tensors", "save", "save_tensors", "tied_names"), "parity.weights.files"),
  **dict.fromkeys(("Report", "assert_close", "compare"), "parity.proof.report"),
  "compare_models": "parity.proof.models",
}
# the frameworks' short names: `from parity import keras` is parity.frameworks.keras
_FRAMEWORKS = ("keras", "onnx", "other_jax", "torchrl")


def __getattr__(name: str):
  if name not in _HOME and name not in _FRAMEWORKS:
    raise AttributeError(f"module 'parity' has no attribute {name!r}")
  try:  # other_jax needs equinox and haiku (the `others` extra), keras, onnx and torchrl their own
    if name in _FRAMEWORKS:
      value = importlib.import_module(f"parity.frameworks.{name}")
    else:
      value = getattr(importlib.import_module(_HOME[name]), name)
  except ModuleNotFoundError as error:
    raise _extras.missing(error, f"parity.{name}") from error
  globals()[name] = value  # found directly from now on
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_HOME) | set(_FRAMEWORKS))


__all__ = [
  "Report",
  "assert_close",
  "compare",
  "compare_models",
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
