r"""The cells: torch's GRU, LSTM and RNN steps, each written once for every path.

A cell is all that differs between ``gru``, ``lstm`` and ``rnn``: how many gate blocks its
stacked weights hold, the state it carries (h, or h and c), one step forward from the input
projection and, for the fused path's hand-written backward pass, one step back. Everything
else (layers, directions, lengths, resets, dropout, the time loop) is the engine's
(:mod:`jaxgru._core`, :mod:`jaxgru._fused`).

A step's contract, for the engine:

- ``step(gi, state, w) -> (new_state, saved)``: ``gi`` the input projection per gate block
  (``W_ih x + b_ih``), ``state`` a tuple, ``w`` the layer's weights (``w_ih, w_hh, b_ih,
  b_hh`` and LSTM's ``w_hr`` when projecting); the output of the step is ``new_state[0]``;
  ``saved`` is what :meth:`backward` needs.
- ``saved_from(gi, gh, state, w)``: ``saved`` again from the whole-chunk products ``gh``
  (``W_hh h + b_hh`` per gate block), for rematerialisation.
- ``backward(g, state, saved, w) -> (direct, a_ih, a_hh, extra)``: from ``g``, the cotangent of
  the new state, the part of the previous state's cotangent that does not go through ``W_hh``
  (``None`` where nothing does), the cotangents of ``W_ih x + b_ih`` and of ``W_hh h + b_hh``
  per gate block, and ``extra``, one ``(u, v)`` pair per further weight whose gradient is
  ``u^T v`` (LSTM's ``w_hr``).

Axis legend: T time, B batch, I input size, H hidden size, P projection size.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

Gates = tuple[jax.Array, ...]


def linear(x: jax.Array, weight: jax.Array, bias: jax.Array | None) -> jax.Array:
  """``x @ weight.T + bias`` with torch's (out, in) weight layout."""
  y = jnp.dot(x, weight.T)
  return y if bias is None else y + bias


def gate_blocks(a: jax.Array | None, hidden: int, gates: int = 3) -> tuple:
  """The gate blocks of a stacked (G*H, ...) weight or (G*H,) bias; ``None`` stays ``None``s."""
  if a is None:
    return (None,) * gates
  return tuple(a[g * hidden : (g + 1) * hidden] for g in range(gates))


def project(x: jax.Array, weight: jax.Array, bias: jax.Array | None, gates: int = 3) -> Gates:
  """``x @ weight.T + bias`` split into its gates, one (..., H) product per gate block.

  Gate-major products rather than one (..., G*H) product: on XLA:CPU, slicing the gates out of
  the minor axis of a precomputed projection inside a scan costs more than the products
  (``benchmarks/NOTES.md``).
  """
  hidden = weight.shape[0] // gates
  return tuple(linear(x, w, b) for w, b in zip(gate_blocks(weight, hidden, gates), gate_blocks(bias, hidden, gates), strict=True))


# ---- the GRU ------------------------------------------------------------------------------------


def torch_gates(gi: Gates, h: jax.Array, w_hh: jax.Array, b_hh: jax.Array | None) -> tuple[jax.Array, Gates, jax.Array]:
  """torch's step; returns ``(h_new, (r, z, n), W_hn h + b_hn)``, the last two for a backward pass."""
  i_r, i_z, i_n = gi
  h_r, h_z, h_n = jnp.split(linear(h, w_hh, b_hh), 3, axis=-1)
  r = jax.nn.sigmoid(i_r + h_r)
  z = jax.nn.sigmoid(i_z + h_z)
  n = jnp.tanh(i_n + r * h_n)
  return n + z * (h - n), (r, z, n), h_n  # n + z * (h - n) == (1 - z) * n + z * h, in torch's order


def step(gi: Gates, h: jax.Array, w_hh: jax.Array, b_hh: jax.Array | None, variant: str) -> jax.Array:
  """One GRU step of either variant from the input projection ``gi`` (see :func:`jaxgru.gru_step`)."""
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


@dataclasses.dataclass(frozen=True)
class Cell:
  """What every cell shares: its name, gate blocks, carried state and torch's parameter kinds."""

  name: ClassVar[str]
  gates: ClassVar[int]

  def kinds(self, proj: bool = False) -> tuple[str, ...]:
    """The parameter kinds of one layer and direction, in torch's order (``w`` follows it)."""
    return ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

  def state_sizes(self, hidden: int, proj: int = 0) -> tuple[int, ...]:
    """The feature size of each part of the state: (H,), or LSTM's (P or H, H)."""
    return (hidden,)


@dataclasses.dataclass(frozen=True)
class GRU(Cell):
  r"""torch's GRU (``variant="torch"``) or the classic one (reference path only, see
  :func:`jaxgru.gru_step`); gates (r, z, n)."""

  variant: str = "torch"
  name: ClassVar[str] = "GRU"
  gates: ClassVar[int] = 3

  def step(self, gi, state, w):
    (h,), w_hh, b_hh = state, w[1], w[3]
    if self.variant != "torch":
      return (step(gi, h, w_hh, b_hh, self.variant),), ()
    h_new, gates, hidden_n = torch_gates(gi, h, w_hh, b_hh)
    return (h_new,), (*gates, hidden_n)

  def saved_from(self, gi, gh, state, w):
    (i_r, i_z, i_n), (h_r, h_z, h_n) = gi, gh
    r, z = jax.nn.sigmoid(i_r + h_r), jax.nn.sigmoid(i_z + h_z)
    return (r, z, jnp.tanh(i_n + r * h_n), h_n)

  def backward(self, g, state, saved, w):
    (g,), (hp,), (r, z, n, hidden_n) = g, state, saved
    a_n = g * (1 - z) * (1 - n * n)  # d / d (pre-activation of n)
    a_z = g * (hp - n) * z * (1 - z)
    a_r = a_n * hidden_n * r * (1 - r)
    g_n = a_n * r  # d / d (W_hn h + b_hn)
    return (g * z,), (a_r, a_z, a_n), (a_r, a_z, g_n), ()


@dataclasses.dataclass(frozen=True)
class LSTM(Cell):
  r"""torch's LSTM; gates (i, f, g, o), state (h, c), with ``proj_size`` P > 0 h = W_hr (o tanh c):

  .. math::

    i, f, o &= \sigma(W_{i\cdot} x + b_{i\cdot} + W_{h\cdot} h + b_{h\cdot}),\quad
    g = \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \\
    c' &= f \odot c + i \odot g,\quad h' = W_{hr} (o \odot \tanh c')
  """

  name: ClassVar[str] = "LSTM"
  gates: ClassVar[int] = 4

  def kinds(self, proj: bool = False) -> tuple[str, ...]:
    return ("weight_ih", "weight_hh", "bias_ih", "bias_hh") + (("weight_hr",) if proj else ())

  def state_sizes(self, hidden: int, proj: int = 0) -> tuple[int, ...]:
    return (proj or hidden, hidden)

  def _finish(self, i, f, g, o, c, w):
    c_new = f * c + i * g
    tc = jnp.tanh(c_new)
    h_new = o * tc
    if len(w) > 4 and w[4] is not None:
      h_new = jnp.dot(h_new, w[4].T)
    return (h_new, c_new), (i, f, g, o, tc)

  def step(self, gi, state, w):
    (h, c), w_hh, b_hh = state, w[1], w[3]
    h_i, h_f, h_g, h_o = jnp.split(linear(h, w_hh, b_hh), 4, axis=-1)
    i, f = jax.nn.sigmoid(gi[0] + h_i), jax.nn.sigmoid(gi[1] + h_f)
    g, o = jnp.tanh(gi[2] + h_g), jax.nn.sigmoid(gi[3] + h_o)
    return self._finish(i, f, g, o, c, w)

  def saved_from(self, gi, gh, state, w):
    i, f = jax.nn.sigmoid(gi[0] + gh[0]), jax.nn.sigmoid(gi[1] + gh[1])
    g, o = jnp.tanh(gi[2] + gh[2]), jax.nn.sigmoid(gi[3] + gh[3])
    return self._finish(i, f, g, o, state[1], w)[1]

  def backward(self, g, state, saved, w):
    (g_h, g_c), (_, cp), (i, f, gg, o, tc) = g, state, saved
    extra = ()
    if len(w) > 4 and w[4] is not None:  # h = W_hr (o tanh c)
      extra = ((g_h, o * tc),)
      g_h = jnp.dot(g_h, w[4])
    dc = g_c + g_h * o * (1 - tc * tc)
    a_i = dc * gg * i * (1 - i)
    a_f = dc * cp * f * (1 - f)
    a_g = dc * i * (1 - gg * gg)
    a_o = g_h * tc * o * (1 - o)
    a = (a_i, a_f, a_g, a_o)
    return (None, dc * f), a, a, extra


@dataclasses.dataclass(frozen=True)
class RNN(Cell):
  r"""torch's Elman RNN: :math:`h' = \tanh(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})`, or ReLU."""

  nonlinearity: str = "tanh"
  name: ClassVar[str] = "RNN"
  gates: ClassVar[int] = 1

  def _act(self, pre):
    return jnp.tanh(pre) if self.nonlinearity == "tanh" else jax.nn.relu(pre)

  def step(self, gi, state, w):
    h_new = self._act(gi[0] + linear(state[0], w[1], w[3]))
    return (h_new,), (h_new,)

  def saved_from(self, gi, gh, state, w):
    return (self._act(gi[0] + gh[0]),)

  def backward(self, g, state, saved, w):
    (g,), (h_new,) = g, saved
    a = g * (1 - h_new * h_new) if self.nonlinearity == "tanh" else jnp.where(h_new > 0, g, jnp.zeros_like(g))
    return (None,), (a,), (a,), ()


def masked_step(cell: Cell, gi: Gates, state: tuple, w: tuple, valid: Any, reset: Any, reset_state: Any) -> tuple:
  """``cell.step`` under the engine's contract, for every implementation written in JAX: a step
  flagged by ``reset`` (B, 1) starts from ``reset_state`` instead of ``state``, and a step outside
  ``valid`` (B, 1) leaves the state as it was (either None: no such steps). Returns
  ``(new_state, saved)``."""
  if reset is not None:
    state = tuple(jnp.where(reset, r, s) for r, s in zip(reset_state, state, strict=True))
  new, saved = cell.step(gi, state, w)
  if valid is not None:
    new = tuple(jnp.where(valid, a, b) for a, b in zip(new, state, strict=True))
  return new, saved
