r"""The recurrence engine: torch's multi-layer recurrent layer for any cell (:mod:`jaxgru._cell`).

:func:`run` is the whole of ``gru``, ``lstm`` and ``rnn`` but the cell: argument checks, the
batch and time layout, ``lengths``, ``resets`` and ``reset_state``, layers, directions, dropout
between layers, ``impl`` dispatch and the eager-call cache. A state is a tuple of parts, each
(L*D, B, ·): a GRU's and an RNN's ``(h,)``, an LSTM's ``(h, c)``.

Axis legend: T time, B batch, I input size, H hidden size, L layers, D directions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxgru import _cell, _compat, _fused, _native, _native_library, _pallas, _validate
from jaxgru._params import RecurrentSpec, layer_key

State = tuple[jax.Array, ...]


def _scan_direction(
  cell: _cell.Cell,
  x: jax.Array,
  state0: State,
  w: _fused.Weights,
  valid: jax.Array | None,
  reverse: bool,
  remat: bool,
  resets: jax.Array | None = None,
  reset_state: State | None = None,
) -> tuple[jax.Array, State]:
  """The reference path for one direction of one layer: (T, B, I), state -> (T, B, H or P), state.

  A plain ``lax.scan`` over a whole-sequence input projection, differentiated by JAX. With
  ``valid`` (T, B, 1), steps past a sequence's length leave the state alone and output zero,
  so the forward direction ends on each sequence's last valid step and the reverse direction
  (scanning from T - 1 down) starts on it. With ``resets`` (T, B, 1) (this direction's, see
  :func:`jaxgru._fused.entering`), the state entering a flagged step is ``reset_state``.
  ``remat`` keeps only the state of each step for the backward pass.
  """
  w_ih, b_ih = w[0], w[2]

  def step(state, inputs):
    g, m, e = inputs
    new, _ = _cell.masked_step(cell, g, state, w, m, e, reset_state)
    return new, (new[0] if m is None else jnp.where(m, new[0], jnp.zeros_like(new[0])))

  if remat:
    step = jax.checkpoint(step)
  last, out = lax.scan(step, state0, (_cell.project(x, w_ih, b_ih, cell.gates), valid, resets), reverse=reverse)
  return out, last


def _dropout(x: jax.Array, rate: Any, key: jax.Array) -> jax.Array:
  """Zeroes each entry with probability ``rate`` and scales the rest by 1 / (1 - rate); ``rate``
  1 zeroes everything, with zero (not NaN) gradients, as torch's."""
  keep_prob = 1.0 - rate
  sharded = {"out_sharding": jax.typeof(x).sharding} if _compat.BERNOULLI_OUT_SHARDING else {}
  keep = jax.random.bernoulli(key, keep_prob, x.shape, **sharded)
  safe = jnp.where(keep_prob > 0, keep_prob, 1.0)  # no 1 / 0 in either branch of the where below
  return jnp.where(keep, x / safe, jnp.zeros_like(x)).astype(x.dtype)


def _stack(
  params: Mapping[str, jax.Array],
  spec: RecurrentSpec,
  cell: _cell.Cell,
  x: jax.Array,
  state0: State,
  valid: jax.Array | None,
  starts: jax.Array | None,
  reset: State | None,
  dropout: Any,
  dropout_key: jax.Array | None,
  impl: str,
  remat: bool,
) -> tuple[jax.Array, State]:
  """All layers, time-major: (T, B, I), state parts (L*D, B, ·) -> (T, B, D*out), state parts.

  ``starts`` (T, B, 1): the steps where an episode starts (inside its sequence), whose entering
  state every layer and direction replaces by its rows of ``reset`` (L*D, B, ·); None: no resets.
  """
  torch_gru = isinstance(cell, _cell.GRU) and cell.variant == "torch"
  fused = impl == "fused" or (impl == "auto" and (torch_gru or not isinstance(cell, _cell.GRU)))
  if impl == "native":
    _native_library.require(x)
  # auto: the native kernel where XLA lowers the program for the CPU, the fused path for any other
  # platform (a GPU, a TPU, jax.export for them): the kernel's calls lower per platform
  native_layers = impl == "native" or (
    impl == "auto" and _native_library.serves(cell) and _native_library.auto_picks(x, spec.hidden_size, cell)
  )
  kinds = cell.kinds(spec.proj_size > 0)

  def directions(layer_in, state, ws, valid, reset):
    """One layer, direction by direction: (T, B, I), parts (D, B, ·) -> (T, B, D*out), parts."""
    outputs, finals = [], []
    for direction, w in enumerate(ws):
      reverse = direction == 1
      resets = _fused.entering(starts, reverse)
      state_d = tuple(s[direction] for s in state)
      reset_d = None if reset is None else tuple(r[direction] for r in reset)
      if impl == "pallas":
        out, last = _pallas.direction(cell, layer_in, state_d, w, valid, reverse, remat, resets, reset_d)
      elif fused:
        out, last = _fused.direction(cell, layer_in, state_d, w, valid, reverse, remat, resets, reset_d)
      else:
        out, last = _scan_direction(cell, layer_in, state_d, w, valid, reverse, remat, resets, reset_d)
      outputs.append(out)
      finals.append(last)
    output = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
    return output, tuple(jnp.stack(parts) for parts in zip(*finals, strict=True))

  finals = []
  layer_in = x
  for layer in range(spec.num_layers):
    ws = tuple(tuple(params.get(layer_key(k, layer, d)) for k in kinds) for d in range(spec.num_directions))
    rows = slice(layer * spec.num_directions, (layer + 1) * spec.num_directions)
    state = tuple(s[rows] for s in state0)
    reset_layer = None if reset is None else tuple(r[rows] for r in reset)
    if native_layers:  # the layer, its directions in one call of the kernel
      layer_in, last = _native.layer(cell, layer_in, state, ws, valid, remat, starts, reset_layer)
    else:
      layer_in, last = directions(layer_in, state, ws, valid, reset_layer)
    finals.append(last)
    if dropout_key is not None and layer < spec.num_layers - 1 and not _is_zero(dropout):
      layer_in = _dropout(layer_in, dropout, jax.random.fold_in(dropout_key, layer))
  return layer_in, tuple(jnp.concatenate(parts) for parts in zip(*finals, strict=True))


# Called eagerly (outside jit, under an eager jax.grad or jax.vmap too), the layer runs _stack
# through jit, one program kept per shape and configuration: traced eagerly, a lax.scan or
# custom_vjp is traced anew at each call, and JAX compiles new programs for it every time and keeps
# them (a bare lax.scan under eager jax.grad: 2 programs and ~4 MB more a call, until LLVM ran out
# of memory; benchmarks/eager.py). Inside a user's jit, _stack is traced into the user's program
# directly: a nested jit there made XLA keep ~6 MB more temporaries in a remat backward pass.
_stack_at_rate = jax.jit(_stack, static_argnames=("spec", "cell", "dropout", "impl", "remat"))
_stack_at_traced_rate = jax.jit(_stack, static_argnames=("spec", "cell", "impl", "remat"))


def _compiled_stack(params, spec, cell, x, state0, valid, starts, reset, dropout, dropout_key, impl, remat):
  """:func:`_stack`, through its kept program when every operand's value is known (an eager
  call); a traced dropout rate is an operand of that program, not a constant."""
  args = (params, spec, cell, x, state0, valid, starts, reset, dropout, dropout_key, impl, remat)
  if not _compat.known_now(params, x, state0, valid, starts, reset, dropout, dropout_key):
    return _stack(*args)
  run = _stack_at_traced_rate if isinstance(dropout, jax.core.Tracer) else _stack_at_rate
  return run(*args)


def _is_zero(value: Any) -> bool:
  return not isinstance(value, jax.core.Tracer) and value == 0


def run(
  cell: _cell.Cell,
  params: Mapping[str, jax.Array],
  spec: RecurrentSpec,
  x: Any,
  state0: tuple[Any, ...] | None,
  state_names: tuple[str, ...],
  *,
  batch_first: Any,
  lengths: Any,
  resets: Any,
  reset_state: tuple[Any, ...] | None,
  reset_names: tuple[str, ...],
  dropout: Any,
  dropout_key: Any,
  impl: str,
  remat: Any,
) -> tuple[jax.Array, State]:
  """The layer ``cell`` over checked ``params`` (their ``spec``): ``(output, state parts)`` as torch
  lays them out. ``state0`` and ``reset_state``: one value (or None) per part, named for errors."""
  remat = _validate.check_flag(remat, "remat")
  batch_first = _validate.check_flag(batch_first, "batch_first")
  dropout = _validate.check_dropout(dropout)
  _validate.check_dropout_key(dropout, dropout_key)
  x = _validate.check_input(x, spec)
  given, batched = x.shape, x.ndim == 3
  if not batched:
    x = x[:, None]
  elif batch_first:
    x = jnp.swapaxes(x, 0, 1)
  steps, batch = x.shape[0], x.shape[1]
  if steps == 0:
    raise ValueError(f"x must have at least one time step (torch: sequence length > 0), got shape {given}")
  rows = spec.num_layers * spec.num_directions
  sizes = cell.state_sizes(spec.hidden_size, spec.proj_size)
  like_x = jnp.zeros_like(x[0, :, :1])  # (B, 1), laid out like x's batch axis (it matters under an explicit-sharding mesh)
  parts = []
  for size, given_part, name in zip(sizes, state0 or (None,) * len(sizes), state_names, strict=True):
    if given_part is None:  # zeros laid out like x's batch axis
      parts.append(jnp.zeros((rows, 1, size), x.dtype) + like_x)
      continue
    part = _validate.check_state(given_part, (rows, batch, size) if batched else (rows, size), x.dtype, name)
    part = part if batched else part[:, None]
    _validate.check_batch_sharding(part, 1, x, name)
    parts.append(part)
  state0 = tuple(parts)

  valid = ok = None
  if lengths is not None:
    if batch == 0:
      raise ValueError(
        f"lengths cannot describe an empty batch (x of shape {given}): torch's pack_padded_sequence refuses it "
        "('Cannot pack empty tensors'); leave lengths out for B = 0"
      )
    lengths = _validate.check_lengths(lengths, batch if batched else None, steps)
    _validate.check_batch_sharding(lengths, 0, x, "lengths")
    valid, ok = _validate.length_mask(lengths, steps)
    # No implementation reads x past a length, but a masked-out branch of a `where` still
    # carries NaN or inf into the backward pass (0 * NaN): zero the padding for all of them.
    x = jnp.where(valid, x, jnp.zeros_like(x))

  starts = reset = None
  if resets is not None:
    starts = _validate.check_resets(resets, steps, batch if batched else None, batch_first)[..., None]
    _validate.check_batch_sharding(starts, 1, x, "resets")
    starts = starts if valid is None else starts & valid
    parts = []
    for size, given_part, name in zip(sizes, reset_state or (None,) * len(sizes), reset_names, strict=True):
      if given_part is None:
        parts.append(jnp.zeros((rows, 1, size), x.dtype) + like_x)
        continue
      part = _validate.check_reset_state(given_part, rows, batch if batched else None, size, x.dtype, name)
      if part.shape[1] == 1:
        part = part + like_x
      else:
        _validate.check_batch_sharding(part, 1, x, name)
      parts.append(part)
    reset = tuple(parts)
  elif reset_state is not None and any(r is not None for r in reset_state):
    raise ValueError(
      f"{reset_names[0].split('[')[0]} is the state that resets put in: it needs resets (True where an episode starts)"
    )

  args = (params, spec, cell, x, state0, valid, starts, reset, dropout, dropout_key)
  if batch == 0:  # an empty batch: nothing to compute, for any implementation
    output, last = jnp.zeros((steps, 0, spec.num_directions * spec.output_size), x.dtype), state0
  else:
    if impl == "auto" and _compat.forward_mode(params, x, state0, reset):  # no custom_vjp under jvp
      impl = "reference"
    output, last = _compiled_stack(*args, impl, remat)

  if ok is not None and isinstance(lengths, jax.core.Tracer):
    output = jnp.where(ok, output, jnp.nan)
    last = tuple(jnp.where(ok, s, jnp.nan) for s in last)
  if not batched:
    return output[:, 0], tuple(s[:, 0] for s in last)
  return (jnp.swapaxes(output, 0, 1) if batch_first else output), last
