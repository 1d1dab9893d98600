r"""The fast path: one direction of one layer of any cell (:mod:`jaxgru._cell`) with a hand-written
backward pass.

Why (``benchmarks/NOTES.md`` has the measurements):

- Time is cut into chunks of ``k`` steps. Each chunk's input projection is one gate-major
  matrix product per gate block before an inner scan; the products stay small enough to live in cache and the
  temporaries small enough that XLA:CPU does not map fresh pages for them on every call.
- Autodiff of a ``lax.scan`` carries and stores far more than the maths needs. The backward here
  carries only the state's gradient, runs one product per gate block and step, and computes the weight gradients
  as one product per gate and chunk, accumulated across chunks.
- ``remat=True`` stores nothing but the states (the outputs, which exist anyway) and recomputes
  the gates chunk by chunk in the backward pass: memory bounded by the input and output.

It is a ``jax.custom_vjp``: reverse mode of any order works (the backward pass is itself plain,
differentiable JAX); forward mode cannot go through a ``custom_vjp``, so :func:`jaxgru.gru`
falls back to the reference scan when it meets ``jax.jvp``.

Its pieces (:func:`forward`, :func:`output`, :func:`layer` and its backward pass
:func:`layer_bwd`) are also the native kernel's XLA twin (:mod:`jaxgru._native`): what its calls
lower to off the CPU, and its higher derivatives.

Axis legend: T time, B batch, I input size, H hidden size, K steps per chunk.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxgru import _cell

# w_ih (G*H, I), w_hh (G*H, H or P), b_ih, b_hh (G*H,) or None, and LSTM's w_hr (P, H) when projecting
Weights = tuple[jax.Array | None, ...]
State = tuple[jax.Array, ...]  # h, or LSTM's (h, c)


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


def forward(
  cell: _cell.Cell,
  x: jax.Array,
  state0: State,
  w: Weights,
  valid: jax.Array | None,
  save: bool,
  k: int,
  resets: jax.Array | None = None,
  reset_state: State | None = None,
):
  """Runs the recurrence; returns ``(last, states)``, or ``(last, (states, saved))``.

  ``states`` is the carried state after every step, each part (T, B, ·): its first part is the
  output where ``valid``; ``saved`` the cell's residuals for its backward step. With ``resets``
  (T, B, 1), a flagged step starts from ``reset_state`` instead of the carried state.
  """
  w_ih, b_ih = w[0], w[2]

  def step(state, inputs):
    gi, m, e = inputs
    new, saved = _cell.masked_step(cell, gi, state, w, m, e, reset_state)
    return new, ((new, saved) if save else new)

  def chunk(state, inputs):
    xc, mc, ec = inputs
    return lax.scan(step, state, (_cell.project(xc, w_ih, b_ih, cell.gates), mc, ec))

  return _over_chunks(chunk, state0, (x, valid, resets), k)


def output(states: jax.Array, valid: jax.Array | None) -> jax.Array:
  return states if valid is None else jnp.where(valid, states, jnp.zeros_like(states))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 5, 6))
def layer(cell, x, state0, w, valid, remat: bool, k: int, resets=None, reset_state=None):
  last, states = forward(cell, x, state0, w, valid, False, k, resets, reset_state)
  return output(states[0], valid), last


def layer_fwd(cell, x, state0, w, valid, remat, k, resets=None, reset_state=None):
  last, saved = forward(cell, x, state0, w, valid, not remat, k, resets, reset_state)
  states, gates = (saved, None) if remat else saved
  return (output(states[0], valid), last), (x, state0, w, valid, states, gates, resets, reset_state)


def layer_bwd(cell, remat, k, residuals, cotangents):
  """The backward pass. With resets, a flagged step's gradient with respect to the state it
  started from goes to ``reset_state`` (summed over the flagged steps), none to the state before."""
  x, state0, w, valid, states, saved, resets, reset_state = residuals
  d_out, d_last = cotangents
  w_ih, w_hh, b_ih, b_hh = w[:4]
  hidden = w_hh.shape[0] // cell.gates
  w_hh_blocks = _cell.gate_blocks(w_hh, hidden, cell.gates)
  w_ih_blocks = _cell.gate_blocks(w_ih, hidden, cell.gates)
  prev = tuple(jnp.concatenate([s0[None], s[:-1]]) for s0, s in zip(state0, states, strict=True))
  if resets is not None:  # the state each step started from
    prev = tuple(jnp.where(resets, r, p) for r, p in zip(reset_state, prev, strict=True))

  def step(carry, inputs):
    d_state, d_reset = carry
    do, m, e, sp, sv = inputs
    g = (d_state[0] + do, *d_state[1:])  # d loss / d state_t, before the mask decides whether step t happened
    if m is not None:
      g = tuple(jnp.where(m, a, jnp.zeros_like(a)) for a in g)
    direct, a_ih, a_hh, extra = cell.backward(g, sp, sv, w)
    dh_prev = (
      functools.reduce(lambda acc, pair: acc + jnp.dot(*pair), zip(a_hh, w_hh_blocks, strict=True), direct[0])
      if direct[0] is not None
      else _dots(a_hh, w_hh_blocks)
    )
    d_prev = (dh_prev, *direct[1:])
    if m is not None:  # a skipped step passes the state's gradient through
      d_prev = tuple(p + jnp.where(m, jnp.zeros_like(d), d) for p, d in zip(d_prev, d_state, strict=True))
    if e is not None:  # a reset step started from reset_state: its gradient goes there, none further back
      d_reset = tuple(r + jnp.where(e, p, jnp.zeros_like(p)) for r, p in zip(d_reset, d_prev, strict=True))
      d_prev = tuple(jnp.where(e, jnp.zeros_like(p), p) for p in d_prev)
    return (d_prev, d_reset), (a_ih, a_hh, extra)

  def outer(t, a):
    # Contracts time and batch; under an explicit-sharding mesh the batch axis may be sharded,
    # so say that the gradient is replicated (XLA inserts the reduction across devices).
    replicated = jax.sharding.NamedSharding(jax.typeof(t).sharding.mesh, jax.sharding.PartitionSpec())
    return jnp.einsum("tbi,tbj->ij", t, a, out_sharding=replicated)

  def chunk(carry, inputs):
    d_state, d_reset, acc = carry
    do, xc, mc, ec, sp, sv = inputs
    if sv is None:  # remat: the residuals again, from the states, as whole-chunk products
      gi = _cell.project(xc, w_ih, b_ih, cell.gates)
      sv = cell.saved_from(gi, _cell.project(sp[0], w_hh, b_hh, cell.gates), sp, w)
    (d_state, d_reset), (a_ih, a_hh, extra) = lax.scan(step, (d_state, d_reset), (do, mc, ec, sp, sv), reverse=True)
    grads = (
      jnp.concatenate([outer(a, xc) for a in a_ih]),
      jnp.concatenate([outer(a, sp[0]) for a in a_hh]),
      None if b_ih is None else jnp.concatenate([a.sum((0, 1)) for a in a_ih]),
      None if b_hh is None else jnp.concatenate([a.sum((0, 1)) for a in a_hh]),
      *(outer(u, v) for u, v in extra),
    )
    dx = _dots(a_ih, w_ih_blocks)
    return (d_state, d_reset, jax.tree.map(jnp.add, acc, grads)), dx

  d_reset = None if resets is None else tuple(jnp.zeros_like(r) for r in reset_state)
  carry = (d_last, d_reset, tuple(None if a is None else jnp.zeros_like(a) for a in w))
  (d_state0, d_reset, grads), dx = _over_chunks(chunk, carry, (d_out, x, valid, resets, prev, saved), k, reverse=True)
  return dx, d_state0, grads, None, None, d_reset


def _dots(a: tuple, blocks: tuple) -> jax.Array:
  """``sum_g a[g] @ blocks[g]``, gate by gate."""
  return functools.reduce(lambda acc, pair: acc + jnp.dot(*pair), zip(a[1:], blocks[1:], strict=True), jnp.dot(a[0], blocks[0]))


layer.defvjp(layer_fwd, layer_bwd)


def direction(
  cell: _cell.Cell,
  x: jax.Array,
  state0: State,
  w: Weights,
  valid: jax.Array | None,
  reverse: bool,
  remat: bool,
  resets: jax.Array | None = None,
  reset_state: State | None = None,
) -> tuple[jax.Array, State]:
  """One direction of one layer of ``cell``: (T, B, I), state (B, ·) parts -> (T, B, H or P), state.

  Same contract as the reference scan: with ``valid`` (T, B, 1), steps past a sequence's end
  keep the state and output zero; the reverse direction starts at each sequence's last step;
  with ``resets`` (T, B, 1) (this direction's, :func:`entering`), a flagged step starts from
  ``reset_state``.
  """
  if reverse:
    x, valid, resets = (None if a is None else jnp.flip(a, 0) for a in (x, valid, resets))
  out, last = layer(cell, x, state0, w, valid, remat, chunk_size(x.shape[0]), resets, reset_state)
  return (jnp.flip(out, 0) if reverse else out), last
