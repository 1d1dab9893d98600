"""One forward and backward pass on each side, in NumPy, ready to compare.

Both sides take the same inputs and the same output cotangents, so ``grads`` is the
gradient of ``sum(output * d_output) + sum(h_n * d_h_n)`` with respect to every parameter
(torch's names), the input ``x`` and the initial state ``h0``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jaxgru

Run = dict[str, Any]  # {"output", "h_n", "grads": {name: array}}


def _is_cell(module: Any) -> bool:
  return isinstance(module, torch.nn.GRUCell)


def run_torch(
  module: torch.nn.Module,
  x: np.ndarray,
  h0: np.ndarray | None = None,
  *,
  lengths: np.ndarray | None = None,
  cotangents: tuple[np.ndarray, np.ndarray] | None = None,
) -> Run:
  """Runs a ``torch.nn.GRU`` (through ``pack_padded_sequence`` when ``lengths`` is given) or a
  ``torch.nn.GRUCell`` (``h_n`` is then the new state, ``output`` the same)."""
  dtype = next(module.parameters()).dtype
  x_t = torch.tensor(np.asarray(x), dtype=dtype, requires_grad=True)
  h0_t = None if h0 is None else torch.tensor(np.asarray(h0), dtype=dtype, requires_grad=True)
  if _is_cell(module):
    out = h_n = module(x_t, h0_t)
  elif lengths is None:
    out, h_n = module(x_t, h0_t)
  else:
    batch_first = module.batch_first
    steps = x_t.shape[1] if batch_first else x_t.shape[0]
    packed = torch.nn.utils.rnn.pack_padded_sequence(
      x_t, torch.as_tensor(np.asarray(lengths), dtype=torch.int64), batch_first=batch_first, enforce_sorted=False
    )
    out, h_n = module(packed, h0_t)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first, total_length=steps)
  run: Run = {"output": out.detach().numpy(), "h_n": h_n.detach().numpy()}
  if cotangents is not None:
    d_out, d_h = (torch.as_tensor(np.asarray(c), dtype=dtype) for c in cotangents)
    loss = (out * d_out).sum() + (h_n * d_h).sum() if not _is_cell(module) else (out * d_out).sum()
    names = [name for name, _ in module.named_parameters()]
    wrt = [p for _, p in module.named_parameters()] + [x_t] + ([h0_t] if h0_t is not None else [])
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    names += ["x"] + (["h0"] if h0_t is not None else [])
    run["grads"] = {n: (np.zeros(w.shape) if g is None else g.numpy()) for n, w, g in zip(names, wrt, grads, strict=True)}
  return run


def run_jax(
  params: Mapping[str, Any],
  x: np.ndarray,
  h0: np.ndarray | None = None,
  *,
  cell: bool = False,
  batch_first: bool = False,
  lengths: np.ndarray | None = None,
  cotangents: tuple[np.ndarray, np.ndarray] | None = None,
  variant: str = "torch",
) -> Run:
  """The same run through :func:`jaxgru.gru` (or :func:`jaxgru.gru_cell` with ``cell=True``),
  forward and backward in one compiled function."""
  params = {k: jnp.asarray(v) for k, v in params.items()}
  x = jnp.asarray(x)
  h0 = None if h0 is None else jnp.asarray(h0, x.dtype)
  out, h_n, grads = _forward_backward(
    params,
    x,
    h0,
    None if lengths is None else jnp.asarray(lengths),
    None if cotangents is None else tuple(jnp.asarray(c, x.dtype) for c in cotangents),
    cell=cell,
    batch_first=batch_first,
    variant=variant,
  )
  run: Run = {"output": np.asarray(out), "h_n": np.asarray(h_n)}
  if grads is not None:
    run["grads"] = jax.tree.map(np.asarray, grads)
  return run


@functools.partial(jax.jit, static_argnames=("cell", "batch_first", "variant"))
def _forward_backward(params, x, h0, lengths, cotangents, *, cell, batch_first, variant):
  def forward(p, x_, h_):
    if cell:
      h_new = jaxgru.gru_cell(p, x_, h_, variant=variant)
      return h_new, h_new
    return jaxgru.gru(p, x_, h_, batch_first=batch_first, lengths=lengths, variant=variant)

  (out, h_n), vjp = jax.vjp(forward, params, x, h0)
  if cotangents is None:
    return out, h_n, None
  d_out, d_h = cotangents
  d_p, d_x, d_h0 = vjp((d_out, jnp.zeros_like(h_n) if cell else d_h))
  grads = dict(d_p) | {"x": d_x}
  if h0 is not None:
    grads["h0"] = d_h0
  return out, h_n, grads
