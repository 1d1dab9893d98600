"""Argument checks that run at trace time, before XLA sees a shape it would reject.

Each check names the argument and what was expected. Shapes and dtypes are always known
while tracing; values (``lengths``) are checked only when they are concrete, and
:func:`length_mask` makes out-of-range lengths loud (NaN) when they are not.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgru._coerce import check_flag as check_flag  # re-exported: the modules check their flags through here
from jaxgru._coerce import to_array as as_array
from jaxgru._params import RecurrentSpec

VARIANTS = ("torch", "classic")
NONLINEARITIES = ("tanh", "relu")


def check_nonlinearity(nonlinearity: Any) -> str:
  """torch's ``nn.RNN`` takes ``"tanh"`` or ``"relu"``, and says so in these words."""
  if nonlinearity not in NONLINEARITIES:
    raise ValueError(f"Unknown nonlinearity {nonlinearity!r}. Select from 'tanh' or 'relu'.")
  return nonlinearity


def check_variant(variant: Any) -> str:
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
  return variant


IMPLS = ("auto", "fused", "reference", "pallas", "native")  # every implementation behind gru(impl=...); tests run over this tuple


def check_impl(impl: Any, variant: str) -> str:
  if impl not in IMPLS:
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
  if impl in ("fused", "native") and variant != "torch":
    raise ValueError(f"impl={impl!r} implements variant='torch' only, got variant={variant!r}; use impl='auto' or 'reference'")
  return impl


def check_dropout(dropout: Any) -> float:
  """``dropout`` must be a probability in [0, 1], as torch's (1 zeroes everything between layers);
  a traced value is passed through unchecked."""
  if isinstance(dropout, jax.core.Tracer):
    return dropout
  if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= float(dropout) <= 1.0:
    raise ValueError(f"dropout must be a float in [0, 1], got {dropout!r}")
  return float(dropout)


def check_dropout_key(dropout: Any, dropout_key: Any) -> None:
  """Dropout needs randomness: like Flax's ``Dropout``, a rate that may be > 0 without a key is an error."""
  if dropout_key is None and (isinstance(dropout, jax.core.Tracer) or dropout > 0):
    raise ValueError(
      f"dropout={dropout!r} needs randomness: pass dropout_key (a PRNG key) for training, or dropout=0.0 for evaluation"
    )


def check_input(x: Any, spec: RecurrentSpec, name: str = "x") -> jax.Array:
  """Checks a recurrent layer's input: rank 2 (unbatched) or 3, last axis ``input_size``, params' dtype."""
  x = as_array(x, name)
  if x.ndim not in (2, 3):
    raise ValueError(
      f"{name} must be 2-D (T, input_size) unbatched or 3-D (T, B, input_size) / (B, T, input_size) "
      f"with batch_first; got shape {x.shape}"
    )
  if x.shape[-1] != spec.input_size:
    raise ValueError(f"{name}.shape[-1] must be input_size={spec.input_size}, got shape {x.shape}")
  _check_dtype(x, spec.dtype, name)
  return x


def check_cell_input(x: Any, spec: RecurrentSpec) -> jax.Array:
  x = as_array(x, "x")
  if x.ndim not in (1, 2):
    raise ValueError(f"x must be 1-D (input_size,) or 2-D (B, input_size) for a {spec.mode} cell, got shape {x.shape}")
  if x.shape[-1] != spec.input_size:
    raise ValueError(f"x.shape[-1] must be input_size={spec.input_size}, got shape {x.shape}")
  _check_dtype(x, spec.dtype, "x")
  return x


def _check_dtype(x: jax.Array, dtype: Any, name: str) -> None:
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
  if x.dtype != dtype:
    raise TypeError(
      f"{name} has dtype {x.dtype} but the params have dtype {dtype}; torch rejects mixed dtypes, "
      f"so cast one of them (e.g. {name}.astype({jnp.dtype(dtype).name}))"
    )


def check_state(h: Any, expected: tuple[int, ...], dtype: Any, name: str) -> jax.Array:
  """Checks an initial hidden state against its expected shape and dtype."""
  h = as_array(h, name)
  if tuple(h.shape) != tuple(expected):
    raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(h.shape)}")
  _check_dtype(h, dtype, name)
  return h


def check_lengths(lengths: Any, batch: int | None, steps: int) -> jax.Array:
  """Checks ``lengths``: shape (B,), integer dtype and, when concrete, 1 <= length <= T."""
  if batch is None:
    raise ValueError("lengths needs batched input (T, B, input_size); got unbatched 2-D x")
  lengths = as_array(lengths, "lengths")
  if lengths.shape != (batch,):
    raise ValueError(f"lengths must have shape (B,) = ({batch},), one per batch element; got {lengths.shape}")
  if not jnp.issubdtype(lengths.dtype, jnp.integer):
    raise TypeError(f"lengths must be an integer array, got dtype {lengths.dtype}")
  if not isinstance(lengths, jax.core.Tracer):
    values = np.asarray(lengths)
    bad = values[(values < 1) | (values > steps)]
    if bad.size:
      raise ValueError(f"lengths must lie in [1, T={steps}], got {bad.tolist()} in {values.tolist()}")
  return lengths


def _axis_spec(a: jax.Array, axis: int) -> Any:
  spec = getattr(jax.typeof(a).sharding, "spec", ())
  return spec[axis] if axis < len(spec) else None


def check_batch_sharding(value: jax.Array, axis: int, x: jax.Array, name: str) -> None:
  """Under an explicit-sharding mesh, ``value``'s batch axis must be sharded like ``x``'s (axis 1)."""
  want, got = _axis_spec(x, 1), _axis_spec(value, axis)
  if want != got:
    raise ValueError(
      f"{name} must be sharded like x's batch axis ({want!r}) on its axis {axis}, got {got!r}: "
      "under an explicit-sharding mesh, put it on the mesh with the same PartitionSpec entry as x's batch axis"
    )


def length_mask(lengths: jax.Array, steps: int) -> tuple[jax.Array, jax.Array]:
  """Returns ``valid`` (T, B, 1): step t is within sequence b; and ``ok`` (B, 1): length in range.

  ``ok`` matters only for traced lengths, which :func:`check_lengths` cannot see: callers
  poison an out-of-range sequence's results with NaN rather than return wrong numbers.
  """
  t = jnp.arange(steps)[:, None, None]
  valid = t < lengths[None, :, None]
  ok = ((lengths >= 1) & (lengths <= steps))[:, None]
  return valid, ok


def check_resets(resets: Any, steps: int, batch: int | None, batch_first: bool) -> jax.Array:
  """Checks ``resets``: booleans shaped like ``x`` without its feature axis: (T, B), (B, T) with
  ``batch_first``, or (T,) for unbatched input. Returns them time-major, (T, B) or (T, 1)."""
  resets = as_array(resets, "resets")
  if batch is None:
    expected, layout = (steps,), "(T,) for unbatched x"
  else:
    expected = (batch, steps) if batch_first else (steps, batch)
    layout = "(B, T) with batch_first" if batch_first else "(T, B)"
  if tuple(resets.shape) != expected:
    raise ValueError(f"resets must have shape {layout} = {expected}, one flag per step of x; got {tuple(resets.shape)}")
  if resets.dtype != jnp.bool_:
    raise TypeError(
      f"resets must be a boolean array (True where an episode starts at that step), got dtype {resets.dtype}; "
      "e.g. pass resets.astype(bool)"
    )
  if batch is None:
    return resets[:, None]
  return jnp.swapaxes(resets, 0, 1) if batch_first else resets


def check_reset_state(
  reset_state: Any, layers: int, batch: int | None, hidden: int, dtype: Any, name: str = "reset_state"
) -> jax.Array:
  """Checks ``reset_state``: (L*D, H), one state per layer and direction shared by the batch, or
  (L*D, B, H) like ``h0`` (batched input only). Returns it as (L*D, B or 1, H)."""
  reset_state = as_array(reset_state, name)
  shared, per_row = (layers, hidden), (layers, batch, hidden)
  if tuple(reset_state.shape) == shared:
    _check_dtype(reset_state, dtype, name)
    return reset_state[:, None]
  if batch is not None and tuple(reset_state.shape) == per_row:
    _check_dtype(reset_state, dtype, name)
    return reset_state
  allowed = f"{shared} (one state per layer and direction)" + ("" if batch is None else f" or {per_row} (like h0)")
  raise ValueError(f"{name} must have shape {allowed}, got {tuple(reset_state.shape)}")
