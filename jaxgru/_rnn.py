r"""The functional Elman RNN: torch's ``nn.RNN`` and ``nn.RNNCell`` (tanh or ReLU) as pure JAX
functions, on the engine every layer shares (:mod:`jaxgru._engine`).

Axis legend: T time, B batch, I input size, H hidden size, L layers, D directions.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jaxgru import _cell, _engine, _validate
from jaxgru._params import as_params, cell_spec, rnn_spec


def rnn(
  params: Mapping[str, jax.Array],
  x: jax.Array,
  h0: jax.Array | None = None,
  *,
  nonlinearity: str = "tanh",
  batch_first: bool = False,
  lengths: jax.Array | None = None,
  resets: jax.Array | None = None,
  reset_state: jax.Array | None = None,
  dropout: float = 0.0,
  dropout_key: jax.Array | None = None,
  impl: str = "auto",
  remat: bool = False,
) -> tuple[jax.Array, jax.Array]:
  r"""``torch.nn.RNN``'s forward pass as a pure function:

  .. math::

    h' = \tanh(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})\quad (\mathrm{ReLU} \text{ with } nonlinearity="relu")

  Args:
    params: torch's ``RNN.state_dict()`` layout: ``weight_ih_l{k}`` (H, I or D*H),
      ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (H,), with ``_reverse``
      twins when bidirectional. Values may be JAX or NumPy arrays or torch tensors.
    x: (T, B, I), or (B, T, I) with ``batch_first``, or unbatched (T, I).
    h0: (L*D, B, H), or (L*D, H) for unbatched input; zeros when None.
    nonlinearity: ``"tanh"`` or ``"relu"``, torch's argument of the same name (a state dict
      does not record it).
    batch_first: whether ``x`` and the output put the batch axis first.
    lengths: (B,) integers in [1, T], any order: torch's ``pack_padded_sequence`` semantics (see
      :func:`jaxgru.gru`).
    resets: booleans shaped like ``x`` without its feature axis, True where an episode starts
      (see :func:`jaxgru.gru`).
    reset_state: the state a reset puts in, (L*D, H) or (L*D, B, H); zeros when None. Needs ``resets``.
    dropout: probability in [0, 1] of zeroing each output of every layer but the last.
    dropout_key: PRNG key; required when ``dropout > 0``.
    impl: ``"fused"``, ``"reference"``, ``"native"``, ``"pallas"`` or ``"auto"``, as :func:`jaxgru.lstm`'s.
    remat: keep only each step's state for the backward pass.

  Returns:
    ``(output, h_n)``: ``output`` (T, B, D*H) (batch-first or unbatched like ``x``) and ``h_n``
    (L*D, B, H), as :func:`jaxgru.gru`'s.

  Raises:
    ValueError: a shape, size or value is wrong, ``nonlinearity`` is unknown, or ``dropout > 0``
      without ``dropout_key``.
    TypeError: a dtype or type is wrong.

  Example:
    >>> params = jaxgru.init_rnn_params(jax.random.key(0), input_size=3, hidden_size=4, num_layers=2)
    >>> out, h_n = jaxgru.rnn(params, jnp.ones((5, 2, 3)), nonlinearity="relu")
    >>> out.shape, h_n.shape
    ((5, 2, 4), (2, 2, 4))
  """
  cell = _cell.RNN(_validate.check_nonlinearity(nonlinearity))
  impl = _validate.check_impl(impl, "torch")
  params = as_params(params)
  output, (h_n,) = _engine.run(
    cell,
    params,
    rnn_spec(params),
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


def rnn_cell(
  params: Mapping[str, jax.Array], x: jax.Array, h: jax.Array | None = None, *, nonlinearity: str = "tanh"
) -> jax.Array:
  """``torch.nn.RNNCell``'s forward pass: one step, ``h' = cell(x, h)``.

  Args:
    params: ``weight_ih`` (H, I), ``weight_hh`` (H, H), and optionally ``bias_ih``, ``bias_hh`` (H,).
    x: (B, I) or unbatched (I,).
    h: (B, H) or (H,) like ``x``; zeros when None.
    nonlinearity: ``"tanh"`` or ``"relu"``.

  Returns:
    The next state, (B, H) or (H,).

  Raises:
    ValueError: a key, size or shape is wrong, or ``nonlinearity`` is unknown.
    TypeError: a dtype is wrong (x and the params must share one floating dtype).

  Example:
    >>> params = jaxgru.init_rnn_cell_params(jax.random.key(0), 3, 4)
    >>> jaxgru.rnn_cell(params, jnp.ones((2, 3)), nonlinearity="relu").shape
    (2, 4)
  """
  cell = _cell.RNN(_validate.check_nonlinearity(nonlinearity))
  params = as_params(params)
  spec = cell_spec(params, "RNN")
  x = _validate.check_cell_input(x, spec)
  shape = x.shape[:-1] + (spec.hidden_size,)
  h = jnp.zeros(shape, x.dtype) if h is None else _validate.check_state(h, shape, x.dtype, "h")
  w = tuple(params.get(k) for k in cell.kinds())
  (h_new,), _ = cell.step(_cell.project(x, w[0], w[2], 1), (h,), w)
  return h_new
