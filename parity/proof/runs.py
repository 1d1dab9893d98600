"""One forward and backward pass on each side, in NumPy, ready to compare.

Both sides take the same inputs and the same output cotangents, so ``grads`` is the
gradient of ``sum(output * d_output) + sum(h_n * d_h_n)`` with respect to every parameter
(torch's names), the input ``x`` and the initial state ``h0``. For a cell, ``output`` and
``h_n`` are both the new state and only ``d_output`` is used.
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

Run = dict[str, Any]  # {"output", "h_n", and with cotangents "grads": {name: array}}
Cotangents = tuple[np.ndarray, np.ndarray]


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


def run_torch(
  module: torch.nn.GRU | torch.nn.GRUCell,
  x: np.ndarray,
  h0: np.ndarray | None = None,
  *,
  lengths: np.ndarray | None = None,
  cotangents: Cotangents | None = None,
) -> Run:
  """Runs a ``torch.nn.GRU`` (through ``pack_padded_sequence`` when ``lengths`` is given) or a
  ``torch.nn.GRUCell`` on the module's device, in the module's current mode. ``x``, ``h0`` and
  the cotangents must already have the module's dtype.

  Args:
    module: the torch GRU or cell.
    x: the input, in the module's layout (``batch_first`` or not).
    h0: the initial state, or None for zeros.
    lengths: (B,) valid steps per sequence, or None.
    cotangents: ``(d_output, d_h_n)`` to pull back; None runs forward only.

  Returns:
    ``{"output": ..., "h_n": ...}`` as NumPy arrays (a cell's ``h_n`` is its output) and, with
    ``cotangents``, ``"grads"``: every parameter's by name, ``"x"`` and, with ``h0``, ``"h0"``.

  Raises:
    RuntimeError: torch's own, for inputs that do not fit the module (:func:`compare` checks
      them first and names what is wrong).

  Example:
    >>> run = parity.run_torch(torch.nn.GRU(3, 4), np.ones((5, 2, 3), np.float32))
    >>> run["output"].shape, run["h_n"].shape
    ((5, 2, 4), (1, 2, 4))
  """
  device = next(module.parameters()).device
  x_t, h0_t = _tensor(x, device), _tensor(h0, device)
  cell = isinstance(module, torch.nn.GRUCell)
  if cell:
    out = h_n = module(x_t, h0_t)
  elif lengths is None:
    out, h_n = module(x_t, h0_t)
  else:
    steps = x_t.shape[1] if module.batch_first else x_t.shape[0]
    lengths_t = torch.as_tensor(np.asarray(lengths), dtype=torch.int64)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x_t, lengths_t, batch_first=module.batch_first, enforce_sorted=False)
    out, h_n = module(packed, h0_t)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=module.batch_first, total_length=steps)
  run: Run = {"output": _arrays.tensor_to_numpy(out), "h_n": _arrays.tensor_to_numpy(h_n)}
  if cotangents is not None:
    d_out, d_h = (_arrays.to_tensor(c).to(device) for c in cotangents)
    loss = (out * d_out).sum() if cell else (out * d_out).sum() + (h_n * d_h).sum()
    named = dict(module.named_parameters()) | {"x": x_t} | ({} if h0_t is None else {"h0": h0_t})
    grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
    run["grads"] = {
      name: np.zeros(w.shape, run["output"].dtype) if g is None else _arrays.tensor_to_numpy(g)
      for (name, w), g in zip(named.items(), grads, strict=True)
    }
  return run


def run_jax(
  module: jaxgru.GRU | jaxgru.GRUCell,
  x: np.ndarray,
  h0: np.ndarray | None = None,
  *,
  lengths: np.ndarray | None = None,
  cotangents: Cotangents | None = None,
  device: jax.Device | None = None,
) -> Run:
  """The same run as :func:`run_torch` through a ``jaxgru`` NNX module's own ``__call__`` (dropout
  off), forward and backward in one compiled function.

  Args:
    module: a :class:`jaxgru.GRU` or :class:`jaxgru.GRUCell`.
    x: the input, in the module's layout.
    h0: the initial state, or None for zeros.
    lengths: (B,) valid steps per sequence, or None.
    cotangents: ``(d_output, d_h_n)`` to pull back; None runs forward only.
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
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  args = (
    params,
    rest,
    jnp.asarray(x),
    None if h0 is None else jnp.asarray(h0),
    None if lengths is None else jnp.asarray(lengths),
    None if cotangents is None else tuple(jnp.asarray(c) for c in cotangents),
  )
  if device is not None:
    args = jax.device_put(args, device)
  out, h_n, grads = _forward_backward(graphdef, isinstance(module, jaxgru.GRUCell), *args)
  run: Run = {"output": np.asarray(out), "h_n": np.asarray(h_n)}
  if grads is not None:
    d_params, inputs = grads
    run["grads"] = {k: np.asarray(v) for k, v in nnx.to_pure_dict(d_params).items()} | jax.tree.map(np.asarray, inputs)
  return run


@functools.partial(jax.jit, static_argnums=(0, 1))
def _forward_backward(graphdef, cell, params, rest, x, h0, lengths, cotangents):
  def forward(p, x_, h_):
    module = nnx.merge(graphdef, p, rest)
    if cell:
      carry = jnp.zeros(x_.shape[:-1] + (module.hidden_size,), x_.dtype) if h_ is None else h_
      h_new, _ = module(carry, x_)
      return h_new, h_new
    return module(x_, h_, lengths=lengths, deterministic=True)

  (out, h_n), vjp = jax.vjp(forward, params, x, h0)
  if cotangents is None:
    return out, h_n, None
  d_out, d_h = cotangents
  d_p, d_x, d_h0 = vjp((d_out, jnp.zeros_like(h_n) if cell else d_h))
  return out, h_n, (d_p, {"x": d_x} | ({} if h0 is None else {"h0": d_h0}))
