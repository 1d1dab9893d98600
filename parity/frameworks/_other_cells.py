"""The LSTM and RNN cells of :mod:`parity.frameworks.other_jax`'s entry points: a ``jaxgru`` (or
torch) source checked and converted through :mod:`parity.frameworks.cell_trees`, and a library's
tree back, with the checks only concrete values allow (``bias=False`` only when every bias is
zero, an RNN's nonlinearity)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from parity import _arrays
from parity.frameworks.cell_trees import FORMATS, from_tree, to_tree
from parity.weights import convert


def mode_of(source: Any, variables: Any = None) -> str:
  """Which cell ``source`` holds: ``"GRU"``, ``"LSTM"`` or ``"RNN"`` (a GRU's checks report anything else)."""
  try:
    params, _ = convert.params_and_variant(source, variables)
  except (TypeError, ValueError):
    return "GRU"
  return convert.mode_of(params) if isinstance(params, Mapping) else "GRU"


def to_library(source: Any, variables: Any, fmt: str, name: str | None = None) -> Any:
  """``source``'s LSTM or RNN cell as ``fmt``'s tree of JAX arrays (dtype kept)."""
  params, _ = convert.params_and_variant(source, variables)
  convert.check_values(params, "params")
  arrays = {k: _arrays.array_to_numpy(v, f"params[{k!r}]") for k, v in params.items()}
  spec = convert.spec_of(arrays, modes=convert.MODES)
  mode = FORMATS[fmt].mode
  if spec.mode != mode:
    raise ValueError(f"{fmt} is a {mode} cell, but the source is a {spec.mode}'s")
  nonlinearity = getattr(source, "nonlinearity", "tanh")
  if mode == "RNN" and nonlinearity != "tanh":
    raise ValueError(f"{fmt} computes tanh, but the source has nonlinearity={nonlinearity!r}: no such cell computes it")
  if spec.proj_size:
    raise ValueError(f"the source has proj_size={spec.proj_size} (weight_hr): {fmt} has no projection")
  if not convert.is_cell(arrays):
    if spec.num_layers != 1 or spec.bidirectional:
      raise ValueError(
        f"{fmt} holds one cell, but the source has num_layers={spec.num_layers}, bidirectional={spec.bidirectional}; "
        "convert one layer and direction at a time (its weight_ih_l{k}[_reverse], ... keys without the suffix)"
      )
    arrays = {k.removesuffix("_l0"): v for k, v in arrays.items()}
  _arrays.check_jax_can_hold(spec.dtype, "the parameters' dtype")
  return to_tree({k: _arrays.to_jax(v) for k, v in arrays.items()}, fmt, name=name)


def from_library(tree: Any, fmt: str, bias: bool, name: str | None = None) -> dict[str, jax.Array]:
  """``fmt``'s tree as checked ``jaxgru`` cell params; ``bias=False`` only when every bias is zero."""
  params = {k: _arrays.array_to_numpy(v, k) for k, v in from_tree(tree, fmt, name=name).items()}
  if not bias:
    if any(np.any(params[k] != 0) for k in ("bias_ih", "bias_hh")):
      raise ValueError(f"bias=False, but the {fmt} cell has nonzero biases, which a cell without bias cannot hold")
    params = {k: v for k, v in params.items() if not k.startswith("bias")}
  try:
    convert.spec_of(params, modes=convert.MODES)
  except ValueError as err:
    raise ValueError(f"the {fmt} parameters do not fit together: {err}") from None
  return {k: _arrays.to_jax(v) for k, v in params.items()}


def linen_format(tree: Mapping[str, Any]) -> str:
  """Which Flax Linen cell a params tree is: the GRU's (``ir``, ...), an LSTM's (``ii``, ...) or a ``SimpleCell``'s (``i``, ``h``)."""
  keys = set(tree) if isinstance(tree, Mapping) else set()
  if "ii" in keys:
    return "flax.linen.LSTMCell"
  if keys == {"i", "h"}:
    return "flax.linen.SimpleCell"
  return "flax.linen.GRUCell"


def haiku_lstm_name(params: Mapping[str, Any]) -> str | None:
  """The module name of the one ``hk.LSTM`` in Haiku params (``{name + "/linear": {"w", "b"}}``), or None."""
  if not isinstance(params, Mapping):
    return None
  names = [
    k.removesuffix("/linear")
    for k, v in params.items()
    if isinstance(k, str) and k.endswith("/linear") and isinstance(v, Mapping)
  ]
  return names[0] if len(names) == 1 else None
