r"""The Pallas kernels of ``impl="pallas"`` and their plain-JAX twins (see :mod:`jaxgru._pallas`).

One step forward and one step back are written once (:func:`forward_step`, :func:`backward_step`)
and run two ways: inside a ``pallas_call`` time loop (:func:`forward_kernel`,
:func:`backward_kernel`) and inside a ``lax.scan`` (:func:`forward_scan`, :func:`backward_scan`:
the reference the kernels are tested against, the fallback where no kernel serves, and the
derivatives for higher-order autodiff).

Axis legend: T time, B batch, H hidden size; K steps per time block, R rows per batch block.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

_CONTRACT_IN = (((1,), (1,)), ((), ()))  # h (R, H) . W (H_out, H_in) -> (R, H_out): h W^T
_CONTRACT_OUT = (((1,), (0,)), ((), ()))  # a (R, H_out) . W (H_out, H_in) -> (R, H_in): a W


@dataclasses.dataclass(frozen=True)
class Plan:
  """How one platform runs the kernels: ``rows`` (R) per batch block, ``steps`` (K) per time
  block (``None``: the whole sequence), and whether Pallas interprets them (CPU)."""

  platform: str
  rows: int
  steps: int | None
  interpret: bool = False


def round_up(n: int, k: int) -> int:
  return -(-n // k) * k


def _dot(a: jax.Array, w: jax.Array, dims) -> jax.Array:
  """``a`` (the carry's dtype) times ``w``, rounded to ``w``'s dtype first (bfloat16 weights:
  bfloat16 inputs), accumulated in ``a``'s dtype at full precision."""
  return lax.dot_general(a.astype(w.dtype), w, dims, precision=lax.Precision.HIGHEST, preferred_element_type=a.dtype)


def forward_step(h, gi, w, b, valid, variant: str = "torch"):
  """One step: ``h`` (R, H), ``gi`` three (R, H), ``w`` (3, H, H), ``b`` (3, 1, H), ``valid`` (R, 1).

  Returns ``(h_next, (out, *residuals))``: the output and what the backward step needs,
  ``(h, r, z, n, W_hn h + b_hn)`` for torch's variant, ``(h, r, z, c)`` for the classic one.
  """
  r = jax.nn.sigmoid(gi[0] + _dot(h, w[0], _CONTRACT_IN) + b[0])
  z = jax.nn.sigmoid(gi[1] + _dot(h, w[1], _CONTRACT_IN) + b[1])
  if variant == "torch":  # n = tanh(g_n + r (W_hn h + b_hn)), h' = n + z (h - n)
    hn = _dot(h, w[2], _CONTRACT_IN) + b[2]
    n = jnp.tanh(gi[2] + r * hn)
    h_new, saved = n + z * (h - n), (h, r, z, n, hn)
  else:  # c = tanh(g_n + W_hn (r h) + b_hn), h' = h + z (c - h)
    c = jnp.tanh(gi[2] + _dot(r * h, w[2], _CONTRACT_IN) + b[2])
    h_new, saved = h + z * (c - h), (h, r, z, c)
  return jnp.where(valid, h_new, h), (jnp.where(valid, h_new, jnp.zeros_like(h)), *saved)


def backward_step(dh, seq, w, valid, variant: str = "torch"):
  """One step back: ``dh`` (R, H); ``seq`` = (do, *residuals), each (R, H); ``w`` (3, H, H).

  Returns ``(dh_prev, cotangents)``, zero where the step did not happen: torch's variant
  ``(a_r, a_z, a_n, g_n)``, the input gates' and ``W_hn h + b_hn``'s; classic ``(a_r, a_z, a_c)``,
  the input gates' (``a_c`` is also the cotangent of ``W_hn (r h) + b_hn``).
  """
  do, hp, r, z = seq[:4]
  zero = jnp.zeros_like(dh)
  g = jnp.where(valid, dh + do, zero)
  if variant == "torch":
    n, hn = seq[4:]
    a_n = g * (1 - z) * (1 - n * n)
    a_z = g * (hp - n) * z * (1 - z)
    a_r = a_n * hn * r * (1 - r)
    cts = tuple(jnp.where(valid, a, zero) for a in (a_r, a_z, a_n, a_n * r))
    dh_prev = g * z + _dot(cts[0], w[0], _CONTRACT_OUT) + _dot(cts[1], w[1], _CONTRACT_OUT) + _dot(cts[3], w[2], _CONTRACT_OUT)
  else:  # a_c = g z (1 - c^2), q = a_c W_hn, a_z = g (c - h) z (1 - z), a_r = q h r (1 - r)
    (c,) = seq[4:]
    a_c = jnp.where(valid, g * z * (1 - c * c), zero)
    q = _dot(a_c, w[2], _CONTRACT_OUT)  # d / d (r h)
    a_z = g * (c - hp) * z * (1 - z)
    a_r = q * hp * r * (1 - r)
    cts = tuple(jnp.where(valid, a, zero) for a in (a_r, a_z)) + (a_c,)
    dh_prev = g * (1 - z) + q * r + _dot(cts[0], w[0], _CONTRACT_OUT) + _dot(cts[1], w[1], _CONTRACT_OUT)
  return jnp.where(valid, dh_prev, dh), cts


def residual_count(variant: str) -> int:
  """How many (T, B, H) residuals the forward saves: (h, r, z, n, hn) or (h, r, z, c)."""
  return 5 if variant == "torch" else 4


# ---- the plain-JAX twins: the reference, the fallback and the derivatives ------------------------


def reset_forward_step(h, gi, w, b, valid, reset, h_reset, variant: str = "torch"):
  """:func:`forward_step` from ``h_reset`` (R, H) in the rows that ``reset`` (R, 1) flags (an
  episode starts there; ``reset`` None: no resets); the saved ``h`` is the state it started from."""
  if reset is not None:
    h = jnp.where(reset, h_reset, h)
  return forward_step(h, gi, w, b, valid, variant)


def reset_backward_step(dh, seq, w, valid, reset, variant: str = "torch"):
  """:func:`backward_step`; in the rows that ``reset`` flags, the gradient with respect to the state
  the step started from is ``h_reset``'s (returned after the cotangents), and none passes back."""
  dh_prev, cts = backward_step(dh, seq, w, valid, variant)
  if reset is None:
    return dh_prev, cts
  zero = jnp.zeros_like(dh_prev)
  return jnp.where(reset, zero, dh_prev), (*cts, jnp.where(reset, dh_prev, zero))


def _scan(step, carry, seqs, lengths, reverse, resets=None):
  """``step(carry, xs, valid, reset)`` over time, ``valid`` (B, 1) = ``t < lengths``, ``reset``
  (B, 1) the step's row of ``resets`` (T, B, 1) or None."""
  t = jnp.arange(seqs[0].shape[0])
  return lax.scan(lambda c, xs: step(c, xs[2:], xs[0] < lengths, xs[1]), carry, (t, resets, *seqs), reverse=reverse)


def forward_scan(gi_r, gi_z, gi_n, h0, w, b, lengths, resets, h_reset, *, reverse: bool, save: bool, variant: str):
  """(T, B, H) gates, (B, H), (3, H, H), (3, 1, H), (B, 1), resets (T, B, 1) and h_reset (B, H) or
  None -> ``(out, h_last, *residuals)``."""

  def step(h, gi, valid, reset):
    h, ys = reset_forward_step(h, gi, w, b, valid, reset, h_reset, variant)
    return h, ys if save else ys[:1]

  h_last, ys = _scan(step, h0, (gi_r, gi_z, gi_n), lengths, reverse, resets)
  return (ys[0], h_last, *ys[1:])


def backward_scan(d_out, d_last, w, lengths, resets, *saved, reverse: bool, variant: str):
  """The forward's cotangents and residuals -> ``(*cotangents, dh0)``, time the other way; with
  ``resets``, the last cotangent is h_reset's at each step (T, B, H)."""

  def step(dh, seq, valid, reset):
    return reset_backward_step(dh, seq, w, valid, reset, variant)

  dh0, ys = _scan(step, d_last, (d_out, *saved), lengths, not reverse, resets)
  return (*ys, dh0)


# ---- the kernels --------------------------------------------------------------------------------


def _loop_kernel(step, n_seq: int, n_const: int, steps: int, blocks: int, reverse: bool, resets: bool):
  """A kernel running ``step(carry, seq_t, consts, valid, reset) -> (carry, ys_t)`` over one time block.

  Refs: ``lengths`` (R, 1), ``init`` (R, H), with ``resets`` the flags (K, R, 1) (int32, nonzero
  where the step resets), ``n_seq`` (K, R, H) inputs, ``n_const`` whole-array inputs (the reset
  state (R, H) among them when the step needs it), then the (K, R, H) outputs and the carry
  (R, H), which stays put across time blocks.
  """

  def kernel(len_ref, init_ref, *refs):
    flag_ref, refs = (refs[0], refs[1:]) if resets else (None, refs)
    seq_in, consts = refs[:n_seq], refs[n_seq : n_seq + n_const]
    seq_out, carry_ref = refs[n_seq + n_const : -1], refs[-1]
    j = pl.program_id(1)
    first = (blocks - 1 - j if reverse else j) * steps  # this block's first time step
    lengths = len_ref[...]

    def body(s, carry):
      i = steps - 1 - s if reverse else s
      reset = None if flag_ref is None else flag_ref[i] != 0
      carry, ys = step(carry, tuple(ref[i] for ref in seq_in), consts, first + i < lengths, reset)
      for ref, y in zip(seq_out, ys, strict=True):
        ref[i] = y
      return carry

    if blocks == 1:  # the whole sequence in one block (GPU): nothing carried between blocks
      carry_ref[...] = lax.fori_loop(0, steps, body, init_ref[...])
      return

    @pl.when(j == 0)
    def _():
      carry_ref[...] = init_ref[...]

    carry_ref[...] = lax.fori_loop(0, steps, body, carry_ref[...])

  return kernel


def _compiler_params(p: Plan):
  """Mosaic's for TPU; Triton's for GPUs (without them jax 0.10 lowers for CUDA through Mosaic
  GPU, which cannot lower this kernel). Imported here: they cost ``import jaxgru`` 0.3 s."""
  if p.platform == "tpu":
    from jax.experimental.pallas import tpu as pltpu

    return pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary"))
  if p.platform in ("cuda", "rocm"):
    from jax.experimental.pallas import triton as pltriton

    return pltriton.CompilerParams(num_warps=4, num_stages=1)
  return None


def _pallas(step, p: Plan, reverse: bool, n_out: int, lengths, init, seqs, consts, resets=None, rows=()):
  """Pads (T, B) to whole blocks, runs ``step`` as a kernel, returns ``(*seq_outputs, carry)``.

  ``resets`` (T, B, 1) bool or None; ``rows``: (B, H) inputs blocked like the carry, handed to
  ``step`` after ``consts``."""
  steps, batch, hidden = seqs[0].shape
  k = steps if p.steps is None else min(p.steps, steps)
  t_pad, b_pad = round_up(steps, k) - steps, round_up(batch, p.rows) - batch
  seqs = [jnp.pad(a, ((0, t_pad), (0, b_pad), (0, 0))) for a in seqs]
  init, lengths = jnp.pad(init, ((0, b_pad), (0, 0))), jnp.pad(lengths, ((0, b_pad), (0, 0)))  # padded rows: length 0
  rows = [jnp.pad(a, ((0, b_pad), (0, 0))) for a in rows]
  blocks = (steps + t_pad) // k
  time_block = lambda i, j: (blocks - 1 - j if reverse else j, i, 0)  # noqa: E731
  seq_spec = pl.BlockSpec((k, p.rows, hidden), time_block)
  row_spec = pl.BlockSpec((p.rows, hidden), lambda i, j: (i, 0))
  const_specs = [pl.BlockSpec(c.shape, lambda i, j, nd=c.ndim: (0,) * nd) for c in consts]
  flags, flag_specs = [], []
  if resets is not None:  # int32 flags: a (K, R, 1) block like the sequences'
    flags = [jnp.pad(resets.astype(jnp.int32), ((0, t_pad), (0, b_pad), (0, 0)))]
    flag_specs = [pl.BlockSpec((k, p.rows, 1), time_block)]
  outs = pl.pallas_call(
    _loop_kernel(step, len(seqs), len(consts) + len(rows), k, blocks, reverse, resets is not None),
    grid=((batch + b_pad) // p.rows, blocks),
    in_specs=[
      pl.BlockSpec((p.rows, 1), lambda i, j: (i, 0)),
      row_spec,
      *flag_specs,
      *[seq_spec] * len(seqs),
      *const_specs,
      *[row_spec] * len(rows),
    ],
    out_specs=[*[seq_spec] * n_out, row_spec],
    out_shape=[*[jax.ShapeDtypeStruct(seqs[0].shape, init.dtype)] * n_out, jax.ShapeDtypeStruct(init.shape, init.dtype)],
    interpret=p.interpret,
    compiler_params=_compiler_params(p),
  )(lengths, init, *flags, *seqs, *consts, *rows)
  return (*(a[:steps, :batch] for a in outs[:-1]), outs[-1][:batch])


def forward_kernel(p: Plan, reverse: bool, save: bool, variant: str):
  def step(h, gi, consts, valid, reset):
    h_reset = None if reset is None else consts[2][...]
    h, ys = reset_forward_step(h, gi, consts[0], consts[1], valid, reset, h_reset, variant)
    return h, ys if save else ys[:1]

  def run(gi_r, gi_z, gi_n, h0, w, b, lengths, resets, h_reset):
    n_out = 1 + residual_count(variant) if save else 1
    rows = () if resets is None else (h_reset,)
    outs = _pallas(step, p, reverse, n_out, lengths, h0, (gi_r, gi_z, gi_n), (w, b), resets, rows)
    return (outs[0], outs[-1], *outs[1:-1])

  return run


def backward_kernel(p: Plan, reverse: bool, variant: str):
  def step(dh, seq, consts, valid, reset):
    return reset_backward_step(dh, seq, consts[0], valid, reset, variant)

  def run(d_out, d_last, w, lengths, resets, *saved):
    n_out = (4 if variant == "torch" else 3) + (resets is not None)
    return _pallas(step, p, not reverse, n_out, lengths, d_last, (d_out, *saved), (w,), resets)

  return run
