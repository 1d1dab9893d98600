r"""The functional GRU: torch's ``nn.GRU`` and ``nn.GRUCell`` as pure JAX functions.

The maths lives here once; the Flax modules only own parameters and dtype policy.

Axis legend: T time, B batch, I input size, H hidden size, L layers, D directions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxgru import _cell, _compat, _fused, _native, _pallas, _validate
from jaxgru._params import GRUSpec, as_params, cell_spec, gru_spec, layer_key


def gru_step(gi: jax.Array, h: jax.Array, w_hh: jax.Array, b_hh: jax.Array | None, variant: str = "torch") -> jax.Array:
  r"""One GRU step from a precomputed input projection ``gi = W_ih x + b_ih``.

  ``variant="torch"`` (``torch.nn.GRU``; the reset gate acts after the recurrent product):

  .. math::

    r &= \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \\
    z &= \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
    n &= \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \\
    h' &= (1 - z) \odot n + z \odot h

  ``variant="classic"`` (Cho et al. 2014, "reset before"; ``hk.GRU``): r and z as above and

  .. math::

    \tilde h &= \tanh(W_{in} x + b_{in} + W_{hn} (r \odot h) + b_{hn}) \\
    h' &= (1 - z) \odot h + z \odot \tilde h

  Args:
    gi: (..., 3H) input projection, gates stacked (r, z, n).
    h: (..., H) previous state.
    w_hh: (3H, H) recurrent weight.
    b_hh: (3H,) recurrent bias, or None.
    variant: ``"torch"`` or ``"classic"``.

  Returns:
    The next state, (..., H).

  Raises:
    ValueError: ``variant`` is neither ``"torch"`` nor ``"classic"``.

  Example:
    >>> params = jaxgru.init_gru_cell_params(jax.random.key(0), 3, 4)
    >>> gi = jnp.ones((2, 3)) @ params["weight_ih"].T + params["bias_ih"]
    >>> jaxgru.gru_step(gi, jnp.zeros((2, 4)), params["weight_hh"], params["bias_hh"]).shape
    (2, 4)
  """
  _validate.check_variant(variant)
  return _cell.step(tuple(jnp.split(gi, 3, axis=-1)), h, w_hh, b_hh, variant)


def _scan_direction(
  x: jax.Array,
  h0: jax.Array,
  w: _fused.Weights,
  valid: jax.Array | None,
  reverse: bool,
  remat: bool,
  variant: str,
  resets: jax.Array | None = None,
  h_reset: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """The reference path for one direction of one layer: (T, B, I), (B, H) -> (T, B, H), (B, H).

  A plain ``lax.scan`` over a whole-sequence input projection, differentiated by JAX. With
  ``valid`` (T, B, 1), steps past a sequence's length leave the state alone and output zero,
  so the forward direction ends on each sequence's last valid step and the reverse direction
  (scanning from T - 1 down) starts on it. With ``resets`` (T, B, 1) (this direction's, see
  :func:`jaxgru._fused.entering`), the state entering a flagged step is ``h_reset`` (B, H).
  ``remat`` keeps only the state of each step for the backward pass.
  """
  w_ih, w_hh, b_ih, b_hh = w

  def step(h, inputs):
    g, m, e = inputs
    if e is not None:
      h = jnp.where(e, h_reset, h)
    h_new = _cell.step(g, h, w_hh, b_hh, variant)
    if m is None:
      return h_new, h_new
    return jnp.where(m, h_new, h), jnp.where(m, h_new, jnp.zeros_like(h_new))

  if remat:
    step = jax.checkpoint(step)
  h_last, out = lax.scan(step, h0, (_cell.project(x, w_ih, b_ih), valid, resets), reverse=reverse)
  return out, h_last


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
  spec: GRUSpec,
  x: jax.Array,
  h0: jax.Array,
  valid: jax.Array | None,
  starts: jax.Array | None,
  h_reset: jax.Array | None,
  dropout: Any,
  dropout_key: jax.Array | None,
  variant: str,
  impl: str,
  remat: bool,
) -> tuple[jax.Array, jax.Array]:
  """All layers, time-major: (T, B, I), (L*D, B, H) -> (T, B, D*H), (L*D, B, H).

  ``starts`` (T, B, 1): the steps where an episode starts (inside its sequence), whose entering
  state every layer and direction replaces by its ``h_reset`` (L*D, B, H); None: no resets.
  """
  fused = impl == "fused" or (impl == "auto" and variant == "torch")
  if impl == "native":
    _native.require(x)
  # auto: the native kernel where XLA lowers the program for the CPU, the fused path for any other
  # platform (a GPU, a TPU, jax.export for them): the kernel's calls lower per platform
  native_layers = impl == "native" or (fused and impl == "auto" and _native.auto_picks(x, spec.hidden_size))

  def directions(layer_in, h0, ws, valid, h_reset):
    """One layer, direction by direction: (T, B, I), (D, B, H) -> (T, B, D*H), (D, B, H)."""
    outputs, finals = [], []
    for direction, w in enumerate(ws):
      reverse = direction == 1
      resets = _fused.entering(starts, reverse)
      h_r = None if h_reset is None else h_reset[direction]
      if impl == "pallas":
        out, h_last = _pallas.direction(layer_in, h0[direction], w, valid, reverse, remat, variant, resets, h_r)
      elif fused:
        out, h_last = _fused.direction(layer_in, h0[direction], w, valid, reverse, remat, resets, h_r)
      else:
        out, h_last = _scan_direction(layer_in, h0[direction], w, valid, reverse, remat, variant, resets, h_r)
      outputs.append(out)
      finals.append(h_last)
    return (outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)), jnp.stack(finals)

  finals = []
  layer_in = x
  for layer in range(spec.num_layers):
    ws = tuple(
      tuple(params.get(layer_key(k, layer, direction)) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
      for direction in range(spec.num_directions)
    )
    rows = slice(layer * spec.num_directions, (layer + 1) * spec.num_directions)
    h_reset_layer = None if h_reset is None else h_reset[rows]
    if native_layers:  # the layer's directions in one call of the kernel
      layer_in, h_last = _native.layer(layer_in, h0[rows], ws, valid, remat, starts, h_reset_layer)
    else:
      layer_in, h_last = directions(layer_in, h0[rows], ws, valid, h_reset_layer)
    finals.append(h_last)
    if dropout_key is not None and layer < spec.num_layers - 1 and not _is_zero(dropout):
      layer_in = _dropout(layer_in, dropout, jax.random.fold_in(dropout_key, layer))
  return layer_in, jnp.concatenate(finals)


# Called eagerly (outside jit, under an eager jax.grad or jax.vmap too), gru() runs _stack through
# jit, one program kept per shape and configuration: traced eagerly, a lax.scan or custom_vjp is
# traced anew at each call, and JAX compiles new programs for it every time and keeps them (a bare
# lax.scan under eager jax.grad: 2 programs and ~4 MB more a call, until LLVM ran out of memory;
# benchmarks/eager.py). Inside a user's jit, _stack is traced into the user's program directly:
# a nested jit there made XLA keep ~6 MB more temporaries in a remat backward pass.
_stack_at_rate = jax.jit(_stack, static_argnames=("spec", "dropout", "variant", "impl", "remat"))
_stack_at_traced_rate = jax.jit(_stack, static_argnames=("spec", "variant", "impl", "remat"))


def _compiled_stack(params, spec, x, h0, valid, starts, h_reset, dropout, dropout_key, variant, impl, remat):
  """:func:`_stack`, through its kept program when every operand's value is known (an eager
  call); a traced dropout rate is an operand of that program, not a constant."""
  args = (params, spec, x, h0, valid, starts, h_reset, dropout, dropout_key, variant, impl, remat)
  if not _compat.known_now(params, x, h0, valid, starts, h_reset, dropout, dropout_key):
    return _stack(*args)
  run = _stack_at_traced_rate if isinstance(dropout, jax.core.Tracer) else _stack_at_rate
  return run(*args)


def _is_zero(value: Any) -> bool:
  return not isinstance(value, jax.core.Tracer) and value == 0


def gru(
  params: Mapping[str, jax.Array],
  x: jax.Array,
  h0: jax.Array | None = None,
  *,
  batch_first: bool = False,
  lengths: jax.Array | None = None,
  resets: jax.Array | None = None,
  reset_state: jax.Array | None = None,
  dropout: float = 0.0,
  dropout_key: jax.Array | None = None,
  variant: str = "torch",
  impl: str = "auto",
  remat: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """``torch.nn.GRU``'s forward pass as a pure function.

  Args:
    params: torch's ``GRU.state_dict()`` layout: ``weight_ih_l{k}`` (3H, I or D*H),
      ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (3H,), with ``_reverse``
      twins when bidirectional. Layers, directions and bias are read from the keys. Values
      may be JAX or NumPy arrays or torch tensors (read through DLPack; torch is not imported).
    x: (T, B, I), or (B, T, I) with ``batch_first``, or unbatched (T, I).
    h0: (L*D, B, H), or (L*D, H) for unbatched input; zeros when None. Never batch-first.
    batch_first: whether ``x`` and the output put the batch axis first.
    lengths: (B,) integers in [1, T], any order: the result equals torch's
      ``pack_padded_sequence(x, lengths, enforce_sorted=False)`` -> GRU ->
      ``pad_packed_sequence(..., total_length=T)``, gradients included. ``x`` past each length
      is never read, so NaN or inf padding is harmless. Under tracing the values cannot be
      checked; a sequence whose length is out of range then gets NaN outputs and final state.
    resets: booleans shaped like ``x`` without its feature axis, (T, B), (B, T) with
      ``batch_first``, or (T,) unbatched: True where a new episode starts at that step (a
      rollout of concatenated episodes, as reinforcement learning collects them; torchrl's
      ``is_init``). The state entering a flagged step is replaced by ``reset_state`` in every
      layer, so no output depends on an earlier episode and no gradient flows across a reset
      (it reaches ``reset_state`` instead). Step 0 flagged: ``h0`` is not used by the forward
      direction. A reverse direction reads each episode from its last step to its first: it
      starts every episode from ``reset_state`` except the sequence's last one, which starts
      from ``h0`` as without resets (with ``h0`` equal to the reset state, e.g. both zero,
      each episode is run on its own in both directions, as torchrl's ``GRUModule`` does).
      With ``lengths``, flags past a sequence's length are ignored.
    reset_state: the state a reset puts in: (L*D, H), one per layer and direction shared by
      the batch (e.g. a learned parameter), or (L*D, B, H) like ``h0``; zeros when None.
      Needs ``resets``.
    dropout: probability in [0, 1] of zeroing each output of every layer but the last.
    dropout_key: PRNG key; required when ``dropout > 0`` (a ValueError otherwise, as Flax's
      ``Dropout`` without randomness): pass ``dropout=0.0`` for evaluation.
    variant: ``"torch"`` (default) or ``"classic"``; see :func:`gru_step`.
    impl: ``"fused"``: chunked recurrence with a hand-written backward pass (a
      ``jax.custom_vjp``; torch variant only); ``"reference"``: a plain ``lax.scan``
      differentiated by JAX; ``"native"``: the C++ CPU kernel (torch variant, float32 and
      float64; see :func:`jaxgru.native_available`); ``"auto"`` (default): for the torch
      variant the native kernel where it measured faster (CPU, hidden size up to
      1024 in float32 on an AVX-512 CPU, else 512;
      sharded, each device runs it on its own rows), else fused; the kernel's calls lower per
      platform, so a program lowered for a GPU or TPU (``jax.export`` from a CPU host
      included) holds the fused path there, and one for several platforms both; the reference wherever
      forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``) meets it directly. All give the
      same numbers up to float rounding. ``"pallas"``: the time loop
      in one Pallas kernel per layer and direction, for GPUs and TPUs, interpreted on the CPU
      (the guide :doc:`/guides/implementations`); ``"auto"`` never picks it.
    remat: keep only each step's state for the backward pass and recompute the gates
      (rematerialisation): memory for long sequences bounded by the input and output.

  Returns:
    The pair ``(output, h_n)``. ``output`` is (T, B, D*H) (batch-first or unbatched like ``x``), with the
    reverse direction's half aligned to the input step; ``h_n`` is (L*D, B, H), indexed
    ``layer * D + direction``. An empty batch (B = 0) gives empty results, as torch's; with
    ``lengths`` it is a ValueError, as torch's ``pack_padded_sequence`` refuses it.

  Raises:
    ValueError: a shape, size or value is wrong (``x`` with T = 0 among them, ``lengths`` for
      an empty batch), or ``dropout > 0`` without ``dropout_key``.
    TypeError: a dtype or type is wrong (a flag that is not a bool among them).

  Example:
    >>> params = jaxgru.init_gru_params(jax.random.key(0), input_size=3, hidden_size=4)
    >>> out, h_n = jaxgru.gru(params, jnp.ones((5, 2, 3)))
    >>> out.shape, h_n.shape
    ((5, 2, 4), (1, 2, 4))
  """
  variant = _validate.check_variant(variant)
  impl = _validate.check_impl(impl, variant)
  remat = _validate.check_flag(remat, "remat")
  batch_first = _validate.check_flag(batch_first, "batch_first")
  dropout = _validate.check_dropout(dropout)
  _validate.check_dropout_key(dropout, dropout_key)
  params = as_params(params)
  spec = gru_spec(params)
  x = _validate.check_input(x, spec)
  given, batched = x.shape, x.ndim == 3
  if not batched:
    x = x[:, None]
  elif batch_first:
    x = jnp.swapaxes(x, 0, 1)
  steps, batch = x.shape[0], x.shape[1]
  if steps == 0:
    raise ValueError(f"x must have at least one time step (torch: sequence length > 0), got shape {given}")
  state_shape = (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
  if h0 is None:  # zeros laid out like x's batch axis (it matters under an explicit-sharding mesh)
    h0 = jnp.zeros((state_shape[0], 1, state_shape[2]), x.dtype) + jnp.zeros_like(x[0, :, :1])
  else:
    h0 = _validate.check_state(h0, state_shape if batched else (state_shape[0], state_shape[2]), x.dtype, "h0")
    h0 = h0 if batched else h0[:, None]
    _validate.check_batch_sharding(h0, 1, x, "h0")
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

  starts = h_reset = None
  if resets is not None:
    starts = _validate.check_resets(resets, steps, batch if batched else None, batch_first)[..., None]
    _validate.check_batch_sharding(starts, 1, x, "resets")
    starts = starts if valid is None else starts & valid
    like_x = jnp.zeros_like(x[0, :, :1])  # (B, 1), laid out like x's batch axis
    if reset_state is None:
      h_reset = jnp.zeros((state_shape[0], 1, state_shape[2]), x.dtype) + like_x
    else:
      h_reset = _validate.check_reset_state(reset_state, state_shape[0], batch if batched else None, spec.hidden_size, x.dtype)
      if h_reset.shape[1] == 1:
        h_reset = h_reset + like_x
      else:
        _validate.check_batch_sharding(h_reset, 1, x, "reset_state")
  elif reset_state is not None:
    raise ValueError("reset_state is the state that resets put in: it needs resets (True where an episode starts)")

  args = (params, spec, x, h0, valid, starts, h_reset, dropout, dropout_key, variant)
  if batch == 0:  # an empty batch: nothing to compute, for any implementation
    output, h_n = jnp.zeros((steps, 0, spec.num_directions * spec.hidden_size), x.dtype), h0
  else:
    try:
      output, h_n = _compiled_stack(*args, impl, remat)
    except TypeError as error:  # jax.jvp / jacfwd straight through the custom_vjp
      if impl != "auto" or "custom_vjp" not in str(error):
        raise
      output, h_n = _compiled_stack(*args, "reference", remat)

  if ok is not None and isinstance(lengths, jax.core.Tracer):
    output = jnp.where(ok, output, jnp.nan)
    h_n = jnp.where(ok, h_n, jnp.nan)
  if not batched:
    return output[:, 0], h_n[:, 0]
  return (jnp.swapaxes(output, 0, 1) if batch_first else output), h_n


def gru_cell(params: Mapping[str, jax.Array], x: jax.Array, h: jax.Array | None = None, *, variant: str = "torch") -> jax.Array:
  """``torch.nn.GRUCell``'s forward pass: one step, ``h_new = cell(x, h)``.

  Args:
    params: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), and optionally ``bias_ih``, ``bias_hh`` (3H,).
    x: (B, I) or unbatched (I,).
    h: (B, H) or (H,) like ``x``; zeros when None.
    variant: ``"torch"`` or ``"classic"``; see :func:`gru_step`.

  Returns:
    The next state, (B, H) or (H,).

  Raises:
    ValueError: a key, size or shape is wrong, or ``variant`` is unknown.
    TypeError: a dtype is wrong (x and the params must share one floating dtype).

  Example:
    >>> params = jaxgru.init_gru_cell_params(jax.random.key(0), 3, 4)
    >>> jaxgru.gru_cell(params, jnp.ones((2, 3)), jnp.zeros((2, 4))).shape
    (2, 4)
  """
  variant = _validate.check_variant(variant)
  params = as_params(params)
  spec = cell_spec(params)
  x = _validate.check_cell_input(x, spec)
  shape = x.shape[:-1] + (spec.hidden_size,)
  h = jnp.zeros(shape, x.dtype) if h is None else _validate.check_state(h, shape, x.dtype, "h")
  gi = _cell.project(x, params["weight_ih"], params.get("bias_ih"))
  return _cell.step(gi, h, params["weight_hh"], params.get("bias_hh"), variant)
