r"""The fast path: one direction of one layer of torch's GRU with a hand-written backward pass.

Why (``benchmarks/NOTES.md`` has the measurements):

- Time is cut into chunks of ``k`` steps. Each chunk's input projection is three gate-major
  matrix products before an inner scan; the products stay small enough to live in cache and the
  temporaries small enough that XLA:CPU does not map fresh pages for them on every call.
- Autodiff of a ``lax.scan`` carries and stores far more than the maths needs. The backward here
  carries only ``dh``, runs three per-gate products per step, and computes the weight gradients
  as one product per gate and chunk, accumulated across chunks.
- ``remat=True`` stores nothing but the states (the outputs, which exist anyway) and recomputes
  the gates chunk by chunk in the backward pass: memory bounded by the input and output.

It is a ``jax.custom_vjp``: reverse mode of any order works (the backward pass is itself plain,
differentiable JAX); forward mode cannot go through a ``custom_vjp``, so :func:`jaxgru.gru`
falls back to the reference scan when it meets ``jax.jvp``.

Axis legend: T time, B batch, I input size, H hidden size, K steps per chunk.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxgru import _cell

Weights = tuple[jax.Array, jax.Array, jax.Array, jax.Array]  # w_ih (3H, I), w_hh (3H, H), b_ih, b_hh (3H,)


def chunk_size(steps: int) -> int:
  """Steps per chunk: all of a short sequence, else a divisor of T near 16 (16 when none)."""
  if steps <= 32:
    return steps
  divisors = [k for k in range(8, 33) if steps % k == 0]
  return min(divisors, key=lambda k: abs(k - 16)) if divisors else 16


def _split(xs: Any, k: int) -> tuple[Any, Any]:
  """Every (T, ...) array of the tree ``xs`` -> ((T // k, k, ...), (T % k, ...)); ``None`` stays ``None``."""
  leaves, treedef = jax.tree.flatten(xs)
  steps = leaves[0].shape[0]
  whole = steps // k * k
  main = [a[:whole].reshape((steps // k, k) + a.shape[1:]) for a in leaves]
  return treedef.unflatten(main), treedef.unflatten([a[whole:] for a in leaves])


def _over_chunks(run, carry: Any, xs: Any, k: int, reverse: bool = False) -> tuple[Any, Any]:
  """``run(carry, chunk) -> (carry, ys)`` over ``xs`` in chunks of ``k`` steps, time-ordered ys.

  The whole chunks go through one ``lax.scan``, the leftover ``T % k`` steps through one more
  call of ``run``: after the scan, or before it when ``reverse`` (the backward pass).
  """
  main, tail = _split(xs, k)
  steps = jax.tree.leaves(xs)[0].shape[0]
  ys = ys_tail = None
  if reverse and steps % k:
    carry, ys_tail = run(carry, tail)
  if steps >= k:
    carry, ys = lax.scan(run, carry, main, reverse=reverse)
    ys = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), ys)
  if not reverse and steps % k:
    carry, ys_tail = run(carry, tail)
  if ys is None or ys_tail is None:
    return carry, ys_tail if ys is None else ys
  return carry, jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ys, ys_tail)


def entering(starts: jax.Array | None, reverse: bool) -> jax.Array | None:
  """The steps (T, B, 1), in input order, whose entering state a direction replaces by the reset
  state, from ``starts``, the steps where an episode starts: those steps themselves for the
  forward direction; for the reverse direction, which reads an episode from its last step, the
  step before each start (the last step of the episode before it)."""
  if starts is None or not reverse:
    return starts
  return jnp.concatenate([starts[1:], jnp.zeros_like(starts[:1])])


def _forward(
  x: jax.Array,
  h0: jax.Array,
  w: Weights,
  valid: jax.Array | None,
  save: bool,
  k: int,
  resets: jax.Array | None = None,
  h_reset: jax.Array | None = None,
):
  """Runs the recurrence; returns ``(h_last, states)``, or ``(h_last, (states, r, z, n, W_hn h + b_hn))``.

  ``states`` (T, B, H) is the carried state after every step: the output where ``valid``. With
  ``resets`` (T, B, 1), a flagged step starts from ``h_reset`` (B, H) instead of the carried state.
  """
  w_ih, w_hh, b_ih, b_hh = w

  def step(h, inputs):
    gi, m, e = inputs
    if e is not None:
      h = jnp.where(e, h_reset, h)
    h_new, gates, hidden_n = _cell.torch_gates(gi, h, w_hh, b_hh)
    if m is not None:
      h_new = jnp.where(m, h_new, h)
    return h_new, ((h_new, *gates, hidden_n) if save else h_new)

  def chunk(h, inputs):
    xc, mc, ec = inputs
    return lax.scan(step, h, (_cell.project(xc, w_ih, b_ih), mc, ec))

  return _over_chunks(chunk, h0, (x, valid, resets), k)


def _output(states: jax.Array, valid: jax.Array | None) -> jax.Array:
  return states if valid is None else jnp.where(valid, states, jnp.zeros_like(states))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _layer(x: jax.Array, h0: jax.Array, w: Weights, valid: jax.Array | None, remat: bool, k: int, resets=None, h_reset=None):
  h_last, states = _forward(x, h0, w, valid, False, k, resets, h_reset)
  return _output(states, valid), h_last


def _layer_fwd(x, h0, w, valid, remat, k, resets=None, h_reset=None):
  h_last, saved = _forward(x, h0, w, valid, not remat, k, resets, h_reset)
  states = saved if remat else saved[0]
  gates = None if remat else saved[1:]
  return (_output(states, valid), h_last), (x, h0, w, valid, states, gates, resets, h_reset)


def _layer_bwd(remat, k, residuals, cotangents):
  """The backward pass. With resets, a flagged step's gradient with respect to the state it
  started from goes to ``h_reset`` (summed over the flagged steps), none to the state before."""
  x, h0, w, valid, states, gates, resets, h_reset = residuals
  d_out, d_last = cotangents
  w_ih, w_hh, b_ih, b_hh = w
  hidden = h0.shape[-1]
  w_hr, w_hz, w_hn = _cell.gate_blocks(w_hh, hidden)
  w_ir, w_iz, w_in = _cell.gate_blocks(w_ih, hidden)
  h_prev = jnp.concatenate([h0[None], states[:-1]])
  if resets is not None:  # the state each step started from
    h_prev = jnp.where(resets, h_reset, h_prev)

  def step(carry, inputs):
    dh, d_reset = carry
    do, m, e, hp, r, z, n, hidden_n = inputs
    g = dh + do  # d loss / d h_t, before the mask decides whether step t happened
    if m is not None:
      g = jnp.where(m, g, jnp.zeros_like(g))
    a_n = g * (1 - z) * (1 - n * n)  # d / d (pre-activation of n)
    a_z = g * (hp - n) * z * (1 - z)
    a_r = a_n * hidden_n * r * (1 - r)
    g_n = a_n * r  # d / d (W_hn h + b_hn)
    dh_prev = g * z + jnp.dot(a_r, w_hr) + jnp.dot(a_z, w_hz) + jnp.dot(g_n, w_hn)
    if m is not None:
      dh_prev = dh_prev + jnp.where(m, jnp.zeros_like(dh), dh)  # a skipped step passes dh through
    if e is not None:  # a reset step started from h_reset: its gradient goes there, none further back
      d_reset = d_reset + jnp.where(e, dh_prev, jnp.zeros_like(dh_prev))
      dh_prev = jnp.where(e, jnp.zeros_like(dh_prev), dh_prev)
    return (dh_prev, d_reset), (a_r, a_z, a_n, g_n)

  def outer(t, a):
    # Contracts time and batch; under an explicit-sharding mesh the batch axis may be sharded,
    # so say that the gradient is replicated (XLA inserts the reduction across devices).
    replicated = jax.sharding.NamedSharding(jax.typeof(t).sharding.mesh, jax.sharding.PartitionSpec())
    return jnp.einsum("tbi,tbj->ij", t, a, out_sharding=replicated)

  def chunk(carry, inputs):
    dh, d_reset, acc = carry
    do, xc, mc, ec, hp, saved = inputs
    if saved is None:  # remat: the gates again, from the states, as whole-chunk products
      (i_r, i_z, i_n), (h_r, h_z, h_n) = _cell.project(xc, w_ih, b_ih), _cell.project(hp, w_hh, b_hh)
      r, z = jax.nn.sigmoid(i_r + h_r), jax.nn.sigmoid(i_z + h_z)
      saved = (r, z, jnp.tanh(i_n + r * h_n), h_n)
    (dh, d_reset), (a_r, a_z, a_n, g_n) = lax.scan(step, (dh, d_reset), (do, mc, ec, hp, *saved), reverse=True)
    grads = (
      jnp.concatenate([outer(a_r, xc), outer(a_z, xc), outer(a_n, xc)]),
      jnp.concatenate([outer(a_r, hp), outer(a_z, hp), outer(g_n, hp)]),
      None if b_ih is None else jnp.concatenate([a_r.sum((0, 1)), a_z.sum((0, 1)), a_n.sum((0, 1))]),
      None if b_hh is None else jnp.concatenate([a_r.sum((0, 1)), a_z.sum((0, 1)), g_n.sum((0, 1))]),
    )
    dx = jnp.dot(a_r, w_ir) + jnp.dot(a_z, w_iz) + jnp.dot(a_n, w_in)
    return (dh, d_reset, jax.tree.map(jnp.add, acc, grads)), dx

  d_reset = None if resets is None else jnp.zeros_like(h_reset)
  carry = (d_last, d_reset, tuple(None if a is None else jnp.zeros_like(a) for a in w))
  (dh0, d_reset, grads), dx = _over_chunks(chunk, carry, (d_out, x, valid, resets, h_prev, gates), k, reverse=True)
  return dx, dh0, grads, None, None, d_reset


_layer.defvjp(_layer_fwd, _layer_bwd)


def direction(
  x: jax.Array,
  h0: jax.Array,
  w: Weights,
  valid: jax.Array | None,
  reverse: bool,
  remat: bool,
  resets: jax.Array | None = None,
  h_reset: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """One direction of one layer, torch's equations: (T, B, I), (B, H) -> (T, B, H), (B, H).

  Same contract as the reference scan: with ``valid`` (T, B, 1), steps past a sequence's end
  keep the state and output zero; the reverse direction starts at each sequence's last step;
  with ``resets`` (T, B, 1) (this direction's, :func:`entering`), a flagged step starts from
  ``h_reset`` (B, H).
  """
  if reverse:
    x, valid, resets = (None if a is None else jnp.flip(a, 0) for a in (x, valid, resets))
  out, h_last = _layer(x, h0, w, valid, remat, chunk_size(x.shape[0]), resets, h_reset)
  return (jnp.flip(out, 0) if reverse else out), h_last
