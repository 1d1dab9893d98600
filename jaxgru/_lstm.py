r"""The functional LSTM: torch's ``nn.LSTM`` (``proj_size`` included) and ``nn.LSTMCell`` as pure
JAX functions, on the engine every layer shares (:mod:`jaxgru._engine`).

Axis legend: T time, B batch, I input size, H hidden size, P projection size, L layers, D directions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxgru import _cell, _engine, _validate
from jaxgru._params import as_params, cell_spec, lstm_spec


def _pair(value: Any, name: str, parts: str) -> tuple[Any, Any]:
  """``value`` as a pair (torch's LSTM takes its state as one), or (None, None) for None."""
  if value is None:
    return (None, None)
  if not isinstance(value, (tuple, list)) or len(value) != 2:
    raise TypeError(
      f"{name} must be a pair {parts} (a tuple of two arrays, as torch's LSTM takes it), got {type(value).__name__}"
    )
  return tuple(value)


def lstm(
  params: Mapping[str, jax.Array],
  x: jax.Array,
  hx: tuple[jax.Array, jax.Array] | None = None,
  *,
  batch_first: bool = False,
  lengths: jax.Array | None = None,
  resets: jax.Array | None = None,
  reset_state: tuple[jax.Array | None, jax.Array | None] | None = None,
  dropout: float = 0.0,
  dropout_key: jax.Array | None = None,
  impl: str = "auto",
  remat: bool = False,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  r"""``torch.nn.LSTM``'s forward pass as a pure function, ``proj_size`` included.

  Per layer and direction, torch's equations (gates stacked i, f, g, o):

  .. math::

    i &= \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}),\quad
    f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
    g &= \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}),\quad
    o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
    c' &= f \odot c + i \odot g,\quad h' = o \odot \tanh(c')\quad (h' = W_{hr} (o \odot \tanh c') \text{ with } P > 0)

  Args:
    params: torch's ``LSTM.state_dict()`` layout: ``weight_ih_l{k}`` (4H, I or D*P),
      ``weight_hh_l{k}`` (4H, P), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (4H,) and, with a
      projection, ``weight_hr_l{k}`` (P, H), with ``_reverse`` twins when bidirectional (P is H
      without a projection). Layers, directions, bias and projection are read from the keys.
      Values may be JAX or NumPy arrays or torch tensors.
    x: (T, B, I), or (B, T, I) with ``batch_first``, or unbatched (T, I).
    hx: the pair ``(h0, c0)``: h0 (L*D, B, P), c0 (L*D, B, H), or (L*D, P) and (L*D, H) for
      unbatched input; zeros when None, or where one of the pair is None. Never batch-first.
    batch_first: whether ``x`` and the output put the batch axis first.
    lengths: (B,) integers in [1, T], any order: torch's ``pack_padded_sequence`` semantics, as
      :func:`jaxgru.gru`'s ``lengths`` (h and c both stop at each sequence's end).
    resets: booleans shaped like ``x`` without its feature axis, True where an episode starts:
      the state entering that step, h and c, is ``reset_state`` in every layer (see
      :func:`jaxgru.gru`'s ``resets``).
    reset_state: the pair ``(h, c)`` that a reset puts in, each (L*D, ·) shared by the batch or
      (L*D, B, ·) like ``hx``; zeros when None or where one of the pair is None. Needs ``resets``.
    dropout: probability in [0, 1] of zeroing each output of every layer but the last.
    dropout_key: PRNG key; required when ``dropout > 0``.
    impl: ``"fused"`` (chunked recurrence with a hand-written backward pass), ``"reference"`` (a
      plain ``lax.scan`` differentiated by JAX), ``"native"`` (the C++ CPU kernel, float32 and
      float64) or ``"auto"`` (default: the native kernel where it measured faster, as for
      :func:`jaxgru.gru`, else fused; the reference where forward-mode autodiff meets it), or
      ``"pallas"`` (the time loop in one Pallas kernel per layer and direction, for GPUs and TPUs;
      interpreted on the CPU).
    remat: keep only each step's state for the backward pass and recompute the gates.

  Returns:
    ``(output, (h_n, c_n))``: ``output`` (T, B, D*P) (batch-first or unbatched like ``x``), the
    reverse direction's half aligned to the input step; ``h_n`` (L*D, B, P) and ``c_n``
    (L*D, B, H), indexed ``layer * D + direction``.

  Raises:
    ValueError: a shape, size or value is wrong, or ``dropout > 0`` without ``dropout_key``.
    TypeError: a dtype or type is wrong (``hx`` not a pair among them).

  Example:
    >>> params = jaxgru.init_lstm_params(jax.random.key(0), input_size=3, hidden_size=4, proj_size=2)
    >>> out, (h_n, c_n) = jaxgru.lstm(params, jnp.ones((5, 2, 3)))
    >>> out.shape, h_n.shape, c_n.shape
    ((5, 2, 2), (1, 2, 2), (1, 2, 4))
  """
  impl = _validate.check_impl(impl, "torch")
  hx = _pair(hx, "hx", "(h0, c0)")
  reset_state = _pair(reset_state, "reset_state", "(h, c)")
  params = as_params(params)
  output, (h_n, c_n) = _engine.run(
    _cell.LSTM(),
    params,
    lstm_spec(params),
    x,
    hx,
    ("hx[0] (h0)", "hx[1] (c0)"),
    batch_first=batch_first,
    lengths=lengths,
    resets=resets,
    reset_state=reset_state,
    reset_names=("reset_state[0] (h)", "reset_state[1] (c)"),
    dropout=dropout,
    dropout_key=dropout_key,
    impl=impl,
    remat=remat,
  )
  return output, (h_n, c_n)


def lstm_cell(
  params: Mapping[str, jax.Array], x: jax.Array, hx: tuple[jax.Array, jax.Array] | None = None
) -> tuple[jax.Array, jax.Array]:
  """``torch.nn.LSTMCell``'s forward pass: one step, ``(h', c') = cell(x, (h, c))``.

  Args:
    params: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), and optionally ``bias_ih``, ``bias_hh`` (4H,).
    x: (B, I) or unbatched (I,).
    hx: the pair ``(h, c)``, each (B, H) or (H,) like ``x``; zeros when None.

  Returns:
    The pair ``(h', c')``, each (B, H) or (H,).

  Raises:
    ValueError: a key, size or shape is wrong.
    TypeError: a dtype is wrong (x and the params must share one floating dtype), or ``hx`` is not a pair.

  Example:
    >>> params = jaxgru.init_lstm_cell_params(jax.random.key(0), 3, 4)
    >>> h, c = jaxgru.lstm_cell(params, jnp.ones((2, 3)))
    >>> h.shape, c.shape
    ((2, 4), (2, 4))
  """
  params = as_params(params)
  spec = cell_spec(params, "LSTM")
  x = _validate.check_cell_input(x, spec)
  shape = x.shape[:-1] + (spec.hidden_size,)
  state = tuple(
    jnp.zeros(shape, x.dtype) if s is None else _validate.check_state(s, shape, x.dtype, name)
    for s, name in zip(_pair(hx, "hx", "(h, c)"), ("hx[0] (h)", "hx[1] (c)"), strict=True)
  )
  w = tuple(params.get(k) for k in _cell.LSTM().kinds())
  (h, c), _ = _cell.LSTM().step(_cell.project(x, w[0], w[2], 4), state, w)
  return h, c
