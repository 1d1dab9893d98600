"""One forward and backward pass on each side, in NumPy, ready to compare.

Both sides take the same inputs and the same output cotangents, so ``grads`` is the
gradient of ``sum(output * d_output) + sum(h_n * d_h_n)`` (``+ sum(c_n * d_c_n)`` for an LSTM)
with respect to every parameter (torch's names), the input ``x`` and the initial state ``h0``
(and an LSTM's ``c0``). For a cell, ``output`` and ``h_n`` are both the new ``h`` and only
``d_output`` is used for it (an LSTM cell's new ``c`` is ``c_n``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import jaxgru
from parity import _arrays

Run = dict[str, Any]  # {"output", "h_n", an LSTM's "c_n", and with cotangents "grads": {name: array}}
Cotangents = tuple[np.ndarray, ...]  # d_output, d_h_n and an LSTM's d_c_n
State = np.ndarray | tuple[np.ndarray, np.ndarray]  # h0, or an LSTM's (h0, c0)
TORCH_CELLS = (torch.nn.GRUCell, torch.nn.LSTMCell, torch.nn.RNNCell)
JAX_CELLS = (jaxgru.GRUCell, jaxgru.LSTMCell, jaxgru.RNNCell)


@contextlib.contextmanager
def exact_matmuls() -> Iterator[None]:
  """Full-precision matrix products on both sides: JAX's ``"highest"`` precision, torch's TF32 off."""
  flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
  try:
    with jax.default_matmul_precision("highest"):
      yield
  finally:
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def _tensor(array: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
  if array is None:
    return None
  return _arrays.to_tensor(array).to(device).requires_grad_(True)


def state_names(lstm: bool) -> tuple[str, ...]:
  """The initial state's parts by name: ``("h0",)``, or an LSTM's ``("h0", "c0")``."""
  return ("h0", "c0") if lstm else ("h0",)


def _parts(h0: State | None, lstm: bool) -> tuple[np.ndarray | None, ...]:
  """The initial state as one entry per part (None: zeros)."""
  if h0 is None:
    return (None,) * (2 if lstm else 1)
  return tuple(h0) if lstm else (h0,)


def run_torch(
  module: torch.nn.Module,
  x: np.ndarray,
  h0: State | None = None,
  *,
  lengths: np.ndarray | None = None,
  cotangents: Cotangents | None = None,
) -> Run:
  """Runs a ``torch.nn.GRU``, ``LSTM`` or ``RNN`` (through ``pack_padded_sequence`` when
  ``lengths`` is given) or one of their cells on the module's device, in the module's current
  mode. ``x``, ``h0`` and the cotangents must already have the module's dtype.

  Args:
    module: the torch layer or cell.
    x: the input, in the module's layout (``batch_first`` or not).
    h0: the initial state, an LSTM's pair ``(h0, c0)``, or None for zeros.
    lengths: (B,) valid steps per sequence, or None.
    cotangents: ``(d_output, d_h_n)`` (an LSTM's ``(d_output, d_h_n, d_c_n)``) to pull back;
      None runs forward only.

  Returns:
    ``{"output": ..., "h_n": ...}`` (an LSTM's ``"c_n"`` too) as NumPy arrays (a cell's
    ``h_n`` is its output) and, with ``cotangents``, ``"grads"``: every parameter's by name,
    ``"x"`` and, with ``h0``, ``"h0"`` (and ``"c0"``).

  Raises:
    RuntimeError: torch's own, for inputs that do not fit the module (:func:`compare` checks
      them first and names what is wrong).

  Example:
    >>> run = parity.run_torch(torch.nn.GRU(3, 4), np.ones((5, 2, 3), np.float32))
    >>> run["output"].shape, run["h_n"].shape
    ((5, 2, 4), (1, 2, 4))
  """
  device = next(module.parameters()).device
  lstm = isinstance(module, torch.nn.LSTM | torch.nn.LSTMCell)
  x_t = _tensor(x, device)
  parts = tuple(_tensor(p, device) for p in _parts(h0, lstm))
  hx = None if parts[0] is None else (parts if lstm else parts[0])
  cell = isinstance(module, TORCH_CELLS)
  if cell:
    final = module(x_t, hx)
    final = tuple(final) if lstm else (final,)
    out = final[0]
  elif lengths is None:
    out, final = module(x_t, hx)
  else:
    steps = x_t.shape[1] if module.batch_first else x_t.shape[0]
    lengths_t = torch.as_tensor(np.asarray(lengths), dtype=torch.int64)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x_t, lengths_t, batch_first=module.batch_first, enforce_sorted=False)
    out, final = module(packed, hx)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=module.batch_first, total_length=steps)
  final = tuple(final) if lstm else (final if cell else (final,))
  run: Run = {"output": _arrays.tensor_to_numpy(out)}
  run |= {name: _arrays.tensor_to_numpy(s) for name, s in zip(("h_n", "c_n"), final, strict=False)}
  if cotangents is not None:
    d_out, *d_final = (_arrays.to_tensor(c).to(device) for c in cotangents)
    loss = (out * d_out).sum()
    for k, (s, d) in enumerate(zip(final, d_final, strict=True)):
      if not (cell and k == 0):  # a cell's h_n is its output, pulled back once
        loss = loss + (s * d).sum()
    named = dict(module.named_parameters()) | {"x": x_t}
    named |= {name: p for name, p in zip(state_names(lstm), parts, strict=True) if p is not None}
    grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
    run["grads"] = {
      name: np.zeros(w.shape, run["output"].dtype) if g is None else _arrays.tensor_to_numpy(g)
      for (name, w), g in zip(named.items(), grads, strict=True)
    }
  return run


def run_jax(
  module: nnx.Module,
  x: np.ndarray,
  h0: State | None = None,
  *,
  lengths: np.ndarray | None = None,
  cotangents: Cotangents | None = None,
  device: jax.Device | None = None,
) -> Run:
  """The same run as :func:`run_torch` through a ``jaxgru`` NNX module's own ``__call__`` (dropout
  off), forward and backward in one compiled function.

  Args:
    module: a :class:`jaxgru.GRU`, :class:`jaxgru.LSTM`, :class:`jaxgru.RNN` or one of their cells.
    x: the input, in the module's layout.
    h0: the initial state, an LSTM's pair ``(h0, c0)``, or None for zeros.
    lengths: (B,) valid steps per sequence, or None.
    cotangents: as :func:`run_torch`'s; None runs forward only.
    device: where JAX runs (its default device when None).

  Returns:
    The dictionary :func:`run_torch` returns, NumPy arrays, gradients by torch's names.

  Raises:
    ValueError, TypeError: as :func:`jaxgru.gru`, for inputs that do not fit the module.

  Example:
    >>> run = parity.run_jax(jaxgru.GRU(3, 4, rngs=nnx.Rngs(0)), np.ones((5, 2, 3), np.float32))
    >>> run["output"].shape, run["h_n"].shape
    ((5, 2, 4), (1, 2, 4))
  """
  lstm = isinstance(module, jaxgru.LSTM | jaxgru.LSTMCell)
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  parts = _parts(h0, lstm)
  args = (
    params,
    rest,
    jnp.asarray(x),
    None if parts[0] is None else tuple(jnp.asarray(p) for p in parts),
    None if lengths is None else jnp.asarray(lengths),
    None if cotangents is None else tuple(jnp.asarray(c) for c in cotangents),
  )
  if device is not None:
    args = jax.device_put(args, device)
  out, final, grads = _forward_backward(graphdef, isinstance(module, JAX_CELLS), lstm, *args)
  run: Run = {"output": np.asarray(out)} | {name: np.asarray(s) for name, s in zip(("h_n", "c_n"), final, strict=False)}
  if grads is not None:
    d_params, inputs = grads
    run["grads"] = {k: np.asarray(v) for k, v in nnx.to_pure_dict(d_params).items()} | jax.tree.map(np.asarray, inputs)
  return run


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _forward_backward(graphdef, cell, lstm, params, rest, x, h0, lengths, cotangents):
  def forward(p, x_, h_):
    module = nnx.merge(graphdef, p, rest)
    if cell:
      carry = module.initialize_carry(x_.shape) if h_ is None else (h_ if lstm else h_[0])
      carry = jax.tree.map(lambda a: a.astype(x_.dtype), carry)
      new, out = module(carry, x_)
      return out, (new if lstm else (new,))
    out, final = module(x_, None if h_ is None else (h_ if lstm else h_[0]), lengths=lengths, deterministic=True)
    return out, (tuple(final) if lstm else (final,))

  (out, final), vjp = jax.vjp(forward, params, x, h0)
  if cotangents is None:
    return out, final, None
  d_out, *d_final = cotangents
  if cell:  # the new h is the output: pulled back once
    d_final[0] = jnp.zeros_like(final[0])
  d_p, d_x, d_h0 = vjp((d_out, tuple(d_final)))
  inputs = {"x": d_x} | ({} if h0 is None else dict(zip(state_names(lstm), d_h0, strict=True)))
  return out, final, (d_p, inputs)
