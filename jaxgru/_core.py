r"""The functional GRU: torch's ``nn.GRU`` and ``nn.GRUCell`` as pure JAX functions.

The layer is :func:`jaxgru._engine.run` with the GRU's cell; the Flax modules only own
parameters and dtype policy.

Axis legend: T time, B batch, I input size, H hidden size, L layers, D directions.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jaxgru import _cell, _engine, _validate
from jaxgru._params import as_params, cell_spec, gru_spec


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
      variant (and the LSTM and RNN) the native kernel where it measured faster (CPU, hidden size up to
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
  params = as_params(params)
  output, (h_n,) = _engine.run(
    _cell.GRU(variant),
    params,
    gru_spec(params),
    x,
    (h0,),
    ("h0",),
    batch_first=batch_first,
    lengths=lengths,
    resets=resets,
    reset_state=(reset_state,),
    reset_names=("reset_state",),
    dropout=dropout,
    dropout_key=dropout_key,
    impl=impl,
    remat=remat,
  )
  return output, h_n


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
