"""What the NNX and Linen modules share: constructor checks and Flax's dtype policy."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp

from jaxgru import _validate
from jaxgru._core import gru_cell
from jaxgru._params import check_sizes


def check_gru_args(
  input_size: Any,
  hidden_size: Any,
  num_layers: Any,
  dropout: Any,
  variant: Any,
  dtype: Any,
  param_dtype: Any,
  impl: Any = "auto",
  *,
  cell: bool = False,
  **flags: Any,
) -> float:
  """Checks a module's constructor arguments as torch and :func:`jaxgru.gru` would; returns
  ``dropout`` as a float. ``flags`` (``bias=...``, ``remat=...``) must be bools; a cell may
  have size 0 (torch's ``GRUCell(3, 0)`` returns (B, 0)), a GRU may not."""
  check_sizes(0 if cell else 1, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
  check_dtypes(dtype, param_dtype)
  _validate.check_impl(impl, _validate.check_variant(variant))
  for name, value in flags.items():
    _validate.check_flag(value, name)
  dropout = _validate.check_dropout(dropout)
  if dropout > 0 and num_layers == 1:
    warnings.warn(  # torch's warning, word for word
      "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
      f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
      UserWarning,
      stacklevel=_caller_stacklevel(),
    )
  return dropout


def _caller_stacklevel() -> int:
  """The ``stacklevel`` of the first frame outside jaxgru, Flax and generated code (a dataclass's
  ``__init__``): the user's constructor call, however deep Flax's module machinery goes."""
  inside = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (sys.modules[__name__], flax)) + ("<",)
  frame, level = sys._getframe(1), 1
  while frame.f_back is not None and frame.f_code.co_filename.startswith(inside):
    frame, level = frame.f_back, level + 1
  return level


def gru_options(module: Any) -> dict[str, Any]:
  """The keyword arguments of :func:`jaxgru.gru` that a GRU module holds as attributes (dropout
  apart: it depends on the mode)."""
  return {k: getattr(module, k) for k in ("batch_first", "variant", "impl", "remat")}


def check_dtypes(dtype: Any, param_dtype: Any) -> None:
  for name, value in (("dtype", dtype), ("param_dtype", param_dtype)):
    if value is None and name == "dtype":
      continue
    try:
      ok = jnp.issubdtype(jnp.dtype(value), jnp.floating)
    except TypeError:
      ok = False
    if not ok:
      raise TypeError(f"{name} must be a floating-point dtype, got {value!r}")


def promote(
  params: Mapping[str, jax.Array], arrays: Mapping[str, Any], dtype: Any
) -> tuple[dict[str, jax.Array], tuple[Any, ...]]:
  """Flax's dtype policy: cast params and inputs to ``dtype``, or, when it is None, to the
  dtype all of them promote to. ``arrays`` maps each input's name (for errors) to its value;
  ``None`` values pass through. Complex inputs are rejected, as torch's GRU does: a cast to
  a real dtype would silently drop their imaginary part."""
  arrays = {k: None if a is None else _validate.as_array(a, k) for k, a in arrays.items()}
  for name, a in arrays.items():
    if a is not None and jnp.issubdtype(a.dtype, jnp.complexfloating):
      raise TypeError(f"{name} must be a real array (torch's GRU rejects complex input), got dtype {a.dtype}")
  arrays = tuple(arrays.values())
  if dtype is None:
    dtype = jnp.result_type(*params.values(), *(a for a in arrays if a is not None))
    if not jnp.issubdtype(dtype, jnp.floating):
      dtype = jnp.float32
  cast = {k: jnp.asarray(v, dtype) for k, v in params.items()}
  return cast, tuple(None if a is None else a.astype(dtype) for a in arrays)


def run_cell(params: Mapping[str, jax.Array], carry: Any, x: Any, dtype: Any, variant: str) -> jax.Array:
  """A Flax cell's step: :func:`jaxgru.gru_cell` in the compute dtype, over any number of
  leading batch axes; the new carry keeps the carry's dtype, so the cell scans."""
  carry = _validate.as_array(carry, "carry")
  params, (x, h) = promote(params, {"inputs": x, "carry": carry}, dtype)
  if x.ndim <= 2:
    return gru_cell(params, x, h, variant=variant).astype(carry.dtype)
  _validate.check_state(h, x.shape[:-1] + params["weight_hh"].shape[1:], h.dtype, "carry")
  h_new = gru_cell(params, x.reshape(-1, x.shape[-1]), h.reshape(-1, h.shape[-1]), variant=variant)
  return h_new.reshape(h.shape).astype(carry.dtype)
