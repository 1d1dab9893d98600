r"""The GRU step: the gate equations, written once for every path.

Axis legend: T time, B batch, I input size, H hidden size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Gates = tuple[jax.Array, jax.Array, jax.Array]


def linear(x: jax.Array, weight: jax.Array, bias: jax.Array | None) -> jax.Array:
  """``x @ weight.T + bias`` with torch's (out, in) weight layout."""
  y = jnp.dot(x, weight.T)
  return y if bias is None else y + bias


def gate_blocks(a: jax.Array | None, hidden: int) -> tuple:
  """The (r, z, n) blocks of a stacked (3H, ...) weight or (3H,) bias; ``None`` stays ``None``."""
  if a is None:
    return (None, None, None)
  return tuple(a[g * hidden : (g + 1) * hidden] for g in range(3))


def project(x: jax.Array, weight: jax.Array, bias: jax.Array | None) -> Gates:
  """``x @ weight.T + bias`` split into its (r, z, n) gates, one (..., H) product per gate.

  Three gate-major products rather than one (..., 3H) product: on XLA:CPU, slicing the
  gates out of the minor axis of a precomputed projection inside a scan costs more than the
  products (``benchmarks/NOTES.md``).
  """
  hidden = weight.shape[0] // 3
  return tuple(linear(x, w, b) for w, b in zip(gate_blocks(weight, hidden), gate_blocks(bias, hidden), strict=True))


def torch_gates(gi: Gates, h: jax.Array, w_hh: jax.Array, b_hh: jax.Array | None) -> tuple[jax.Array, Gates, jax.Array]:
  """torch's step; returns ``(h_new, (r, z, n), W_hn h + b_hn)``, the last two for a backward pass."""
  i_r, i_z, i_n = gi
  h_r, h_z, h_n = jnp.split(linear(h, w_hh, b_hh), 3, axis=-1)
  r = jax.nn.sigmoid(i_r + h_r)
  z = jax.nn.sigmoid(i_z + h_z)
  n = jnp.tanh(i_n + r * h_n)
  return n + z * (h - n), (r, z, n), h_n  # n + z * (h - n) == (1 - z) * n + z * h, in torch's order


def step(gi: Gates, h: jax.Array, w_hh: jax.Array, b_hh: jax.Array | None, variant: str) -> jax.Array:
  """One step of either variant from the input projection ``gi`` (see :func:`jaxgru.gru_step`)."""
  if variant == "torch":
    return torch_gates(gi, h, w_hh, b_hh)[0]
  i_r, i_z, i_n = gi
  hidden = h.shape[-1]
  b_rz, b_n = (None, None) if b_hh is None else (b_hh[: 2 * hidden], b_hh[2 * hidden :])
  h_r, h_z = jnp.split(linear(h, w_hh[: 2 * hidden], b_rz), 2, axis=-1)
  r = jax.nn.sigmoid(i_r + h_r)
  z = jax.nn.sigmoid(i_z + h_z)
  candidate = jnp.tanh(i_n + linear(r * h, w_hh[2 * hidden :], b_n))
  return h + z * (candidate - h)  # == (1 - z) * h + z * candidate
