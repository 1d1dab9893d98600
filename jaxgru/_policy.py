"""What the NNX and Linen modules share: constructor checks and Flax's dtype policy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
  remat: Any = False,
) -> float:
  check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
  check_dtypes(dtype, param_dtype)
  _validate.check_impl(impl, _validate.check_variant(variant))
  _validate.check_flag(remat, "remat")
  return _validate.check_dropout(dropout)


def gru_options(module: Any) -> dict[str, Any]:
  """The keyword arguments of :func:`jaxgru.gru` that a GRU module holds as attributes."""
  return {k: getattr(module, k) for k in ("batch_first", "dropout", "variant", "impl", "remat")}


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


def promote(params: Mapping[str, jax.Array], arrays: tuple[Any, ...], dtype: Any) -> tuple[dict[str, jax.Array], tuple[Any, ...]]:
  """Flax's dtype policy: cast params and inputs to ``dtype``, or, when it is None, to the
  dtype all of them promote to. ``None`` entries of ``arrays`` pass through."""
  arrays = tuple(None if a is None else _validate.as_array(a, "input") for a in arrays)
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
  params, (x, h) = promote(params, (x, carry), dtype)
  if x.ndim <= 2:
    return gru_cell(params, x, h, variant=variant).astype(carry.dtype)
  _validate.check_state(h, x.shape[:-1] + params["weight_hh"].shape[1:], h.dtype, "carry")
  h_new = gru_cell(params, x.reshape(-1, x.shape[-1]), h.reshape(-1, h.shape[-1]), variant=variant)
  return h_new.reshape(h.shape).astype(carry.dtype)
