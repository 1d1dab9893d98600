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


def _scan(step, carry, seqs, lengths, reverse):
  """``step(carry, xs, valid)`` over time, ``valid`` (B, 1) = ``t < lengths``."""
  t = jnp.arange(seqs[0].shape[0])
  return lax.scan(lambda c, xs: step(c, xs[1:], xs[0] < lengths), carry, (t, *seqs), reverse=reverse)


def forward_scan(gi_r, gi_z, gi_n, h0, w, b, lengths, *, reverse: bool, save: bool, variant: str):
  """(T, B, H) gates, (B, H), (3, H, H), (3, 1, H), (B, 1) -> ``(out, h_last, *residuals)``."""

  def step(h, gi, valid):
    h, ys = forward_step(h, gi, w, b, valid, variant)
    return h, ys if save else ys[:1]

  h_last, ys = _scan(step, h0, (gi_r, gi_z, gi_n), lengths, reverse)
  return (ys[0], h_last, *ys[1:])


def backward_scan(d_out, d_last, w, lengths, *saved, reverse: bool, variant: str):
  """The forward's cotangents and residuals -> ``(*cotangents, dh0)``, time the other way."""
  dh0, ys = _scan(lambda dh, seq, valid: backward_step(dh, seq, w, valid, variant), d_last, (d_out, *saved), lengths, not reverse)
  return (*ys, dh0)


# ---- the kernels --------------------------------------------------------------------------------


def _loop_kernel(step, n_seq: int, n_const: int, steps: int, blocks: int, reverse: bool):
  """A kernel running ``step(carry, seq_t, consts, valid) -> (carry, ys_t)`` over one time block.

  Refs: ``lengths`` (R, 1), ``init`` (R, H), ``n_seq`` (K, R, H) inputs, ``n_const`` whole-array
  inputs, then the (K, R, H) outputs and the carry (R, H), which stays put across time blocks.
  """

  def kernel(len_ref, init_ref, *refs):
    seq_in, consts = refs[:n_seq], refs[n_seq : n_seq + n_const]
    seq_out, carry_ref = refs[n_seq + n_const : -1], refs[-1]
    j = pl.program_id(1)
    first = (blocks - 1 - j if reverse else j) * steps  # this block's first time step
    lengths = len_ref[...]

    def body(s, carry):
      i = steps - 1 - s if reverse else s
      carry, ys = step(carry, tuple(ref[i] for ref in seq_in), consts, first + i < lengths)
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


def _pallas(step, p: Plan, reverse: bool, n_out: int, lengths, init, seqs, consts):
  """Pads (T, B) to whole blocks, runs ``step`` as a kernel, returns ``(*seq_outputs, carry)``."""
  steps, batch, hidden = seqs[0].shape
  k = steps if p.steps is None else min(p.steps, steps)
  t_pad, b_pad = round_up(steps, k) - steps, round_up(batch, p.rows) - batch
  seqs = [jnp.pad(a, ((0, t_pad), (0, b_pad), (0, 0))) for a in seqs]
  init, lengths = jnp.pad(init, ((0, b_pad), (0, 0))), jnp.pad(lengths, ((0, b_pad), (0, 0)))  # padded rows: length 0
  blocks = (steps + t_pad) // k
  seq_spec = pl.BlockSpec((k, p.rows, hidden), lambda i, j: (blocks - 1 - j if reverse else j, i, 0))
  row_spec = pl.BlockSpec((p.rows, hidden), lambda i, j: (i, 0))
  const_specs = [pl.BlockSpec(c.shape, lambda i, j, nd=c.ndim: (0,) * nd) for c in consts]
  outs = pl.pallas_call(
    _loop_kernel(step, len(seqs), len(consts), k, blocks, reverse),
    grid=((batch + b_pad) // p.rows, blocks),
    in_specs=[pl.BlockSpec((p.rows, 1), lambda i, j: (i, 0)), row_spec, *[seq_spec] * len(seqs), *const_specs],
    out_specs=[*[seq_spec] * n_out, row_spec],
    out_shape=[*[jax.ShapeDtypeStruct(seqs[0].shape, init.dtype)] * n_out, jax.ShapeDtypeStruct(init.shape, init.dtype)],
    interpret=p.interpret,
    compiler_params=_compiler_params(p),
  )(lengths, init, *seqs, *consts)
  return (*(a[:steps, :batch] for a in outs[:-1]), outs[-1][:batch])


def forward_kernel(p: Plan, reverse: bool, save: bool, variant: str):
  def step(h, gi, consts, valid):
    h, ys = forward_step(h, gi, *consts, valid, variant)
    return h, ys if save else ys[:1]

  def run(gi_r, gi_z, gi_n, h0, w, b, lengths):
    n_out = 1 + residual_count(variant) if save else 1
    outs = _pallas(step, p, reverse, n_out, lengths, h0, (gi_r, gi_z, gi_n), (w, b))
    return (outs[0], outs[-1], *outs[1:-1])

  return run


def backward_kernel(p: Plan, reverse: bool, variant: str):
  def step(dh, seq, consts, valid):
    return backward_step(dh, seq, consts[0], valid, variant)

  def run(d_out, d_last, w, lengths, *saved):
    return _pallas(step, p, not reverse, 4 if variant == "torch" else 3, lengths, d_last, (d_out, *saved), (w,))

  return run
