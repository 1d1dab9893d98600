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
from jaxgru._lstm import lstm_cell
from jaxgru._params import check_proj_size, check_sizes
from jaxgru._rnn import rnn_cell


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
  mode: str = "GRU",
  proj_size: Any = 0,
  nonlinearity: Any = "tanh",
  **flags: Any,
) -> float:
  """Checks a module's constructor arguments as torch and :func:`jaxgru.gru` (``lstm``, ``rnn``)
  would; returns ``dropout`` as a float. ``flags`` (``bias=...``, ``remat=...``) must be bools;
  a cell may have size 0 (torch's ``GRUCell(3, 0)`` returns (B, 0)), a layer may not."""
  check_sizes(0 if cell else 1, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
  check_proj_size(proj_size, hidden_size, mode)
  _validate.check_nonlinearity(nonlinearity)
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


def run_cell(params: Mapping[str, jax.Array], carry: Any, x: Any, dtype: Any, step: Any) -> Any:
  """A Flax cell's step in the compute dtype, over any number of leading batch axes: ``step(params,
  x, parts) -> parts`` on 1-D or 2-D inputs, ``carry`` one array (h) or a tuple of them (an LSTM's
  (h, c)). The new carry has the carry's structure and dtypes, so the cell scans."""
  single = not isinstance(carry, (tuple, list))
  parts = tuple(_validate.as_array(c, "carry") for c in ((carry,) if single else carry))
  names = ("carry",) if single else tuple(f"carry[{k}]" for k in range(len(parts)))
  params, (x, *state) = promote(params, {"inputs": x, **dict(zip(names, parts, strict=True))}, dtype)
  if x.ndim <= 2:
    new = step(params, x, tuple(state))
  else:
    for s, name in zip(state, names, strict=True):
      _validate.check_state(s, x.shape[:-1] + s.shape[-1:], s.dtype, name)
    flat = step(params, x.reshape(-1, x.shape[-1]), tuple(s.reshape(-1, s.shape[-1]) for s in state))
    new = tuple(n.reshape(s.shape) for n, s in zip(flat, state, strict=True))
  new = tuple(n.astype(c.dtype) for n, c in zip(new, parts, strict=True))
  return new[0] if single else new


def cell_step(mode: str, variant: str = "torch", nonlinearity: str = "tanh") -> Any:
  """The ``step`` of :func:`run_cell` for a ``mode`` cell: :func:`jaxgru.gru_cell`,
  :func:`jaxgru.lstm_cell` or :func:`jaxgru.rnn_cell` over a tuple of state parts."""
  if mode == "LSTM":
    return lambda params, x, state: lstm_cell(params, x, state)
  if mode == "RNN":
    return lambda params, x, state: (rnn_cell(params, x, state[0], nonlinearity=nonlinearity),)
  return lambda params, x, state: (gru_cell(params, x, state[0], variant=variant),)
