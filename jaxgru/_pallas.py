r"""``impl="pallas"``: the whole time loop of one layer and direction in one Pallas kernel.

The input projection ``gi = x W_ih^T + b_ih`` is one large product outside the kernel (JAX
differentiates it); the recurrence runs in a ``pallas_call`` whose grid is (batch blocks, time
blocks): a program owns whole rows of the batch, so programs never synchronise, and it walks
its time blocks in order, the state carried in its ``h_last`` output block. ``W_hh`` (3, H, H)
is one block: on TPU it is copied to VMEM once and stays there for the whole call; on GPU (Triton
blocks are views of HBM) each step reads it again, through the caches. Forward, per step,
``variant="torch"`` (gates r, z, n):

.. math::

  r &= \sigma(g_r + W_{hr} h + b_{hr}),\quad z = \sigma(g_z + W_{hz} h + b_{hz}) \\
  n &= \tanh(g_n + r \odot (W_{hn} h + b_{hn})),\quad h' = n + z \odot (h - n)

and ``variant="classic"``: r and z alike, :math:`c = \tanh(g_n + W_{hn} (r \odot h) + b_{hn})`,
:math:`h' = h + z \odot (c - h)`. The backward kernel (a ``jax.custom_vjp``) has the same shape
and walks time the other way, carrying only ``dh``; torch's variant:

.. math::

  g &= dh + do,\quad a_n = g (1 - z)(1 - n^2),\quad a_z = g (h - n) z (1 - z) \\
  a_r &= a_n (W_{hn} h + b_{hn}) r (1 - r),\quad \tilde g_n = a_n r \\
  dh_{prev} &= g z + a_r W_{hr} + a_z W_{hz} + \tilde g_n W_{hn}

(the classic one in :func:`~jaxgru._pallas_kernel.backward_step`). ``a_r, a_z, a_n`` are the
cotangents of the input gates; the ``W_hh`` gradient is one product per gate outside (``a^T h``
over time and batch). A step at or past a sequence's length leaves
``h`` (and ``dh``) alone and outputs zero; x's padding is zeroed before the projection and the
kernels select, never multiply, with the mask: NaN padding cannot leak in.

Where it runs, decided per platform when XLA lowers the program (``lax.platform_dependent``):
interpret mode on CPU (verification: any size, slow); Triton on CUDA and ROCm GPUs for float32
and bfloat16 with H a power of two in [16, 256]; Mosaic on TPU for float32 and bfloat16 with H
a multiple of 128 whose blocks fit :data:`TPU_VMEM_BYTES`. Elsewhere the same step functions run
as a ``lax.scan``. Products are at full precision (``Precision.HIGHEST``: no TF32 passes); with
bfloat16 weights and input they take bfloat16 inputs, accumulate in float32, and the carry,
gates and residuals stay float32.

Higher-order autodiff: the kernels' own derivatives are those of their plain-JAX twins
(:func:`~jaxgru._pallas_kernel.forward_scan`, :func:`~jaxgru._pallas_kernel.backward_scan`), so
``jax.grad`` of ``jax.grad`` runs the kernels for the first derivative and XLA scans beyond it.

Axis legend: T time, B batch, I input size, H hidden size.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxgru import _pallas_kernel as _k

Weights = tuple[jax.Array, jax.Array, jax.Array | None, jax.Array | None]  # w_ih (3H, I), w_hh (3H, H), b_ih, b_hh (3H,)
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
TPU_VMEM_BYTES = 16 * 2**20  # TPU's default scoped VMEM limit (v4, v5e)
_HIGHEST = lax.Precision.HIGHEST


def plan(platform: str, steps: int, batch: int, hidden: int, dtype) -> _k.Plan | None:
  """The kernels' blocks on ``platform``, or ``None`` where the plain-JAX scans run instead."""
  if platform == "cpu":  # interpret mode: several time blocks, so that the carry across them is tested
    return _k.Plan(platform, rows=8, steps=16, interpret=True)
  if jnp.dtype(dtype) not in (jnp.float32, jnp.bfloat16):
    return None
  if platform in ("cuda", "rocm"):  # Triton: power-of-two values, dot sides >= 16; blocks stay in HBM
    ok = 16 <= hidden <= 256 and hidden & (hidden - 1) == 0
    return _k.Plan(platform, rows=16, steps=None) if ok else None
  if platform == "tpu" and hidden % 128 == 0:  # Mosaic: whole lanes
    k = 8
    for rows in (64, 32, 16, 8):  # the most rows whose blocks fit
      if rows <= max(_k.round_up(batch, 8), 8) and _tpu_vmem_bytes(k, rows, hidden) <= TPU_VMEM_BYTES:
        return _k.Plan(platform, rows=rows, steps=k)
  return None


def _tpu_vmem_bytes(k: int, rows: int, hidden: int) -> int:
  """Double-buffered float32 blocks: 3 gate inputs and 6 outputs of (K, R, H), h0, h_last, W_hh, b_hh."""
  return 2 * 4 * (9 * k * rows * hidden + 2 * rows * hidden + 3 * hidden * hidden + 3 * hidden)


def _on_platforms(plans, kernel, reference, *args):
  """``kernel(plan)(*args)`` on each platform with a plan, ``reference(*args)`` elsewhere."""
  branches = {name: reference if p is None else kernel(p) for name, p in plans}
  return lax.platform_dependent(*args, default=reference, **branches)


def _twin(kernel, reference):
  """``kernel``'s values with ``reference``'s derivatives (the same maths in plain JAX)."""
  f = jax.custom_vjp(kernel)
  f.defvjp(lambda *args: (kernel(*args), args), lambda args, ct: jax.vjp(reference, *args)[1](ct))
  return f


def _forward(reverse: bool, plans, save: bool, variant: str):
  reference = functools.partial(_k.forward_scan, reverse=reverse, save=save, variant=variant)
  run = functools.partial(_on_platforms, plans, lambda p: _k.forward_kernel(p, reverse, save, variant), reference)
  return _twin(run, reference)


def _backward(reverse: bool, plans, variant: str):
  reference = functools.partial(_k.backward_scan, reverse=reverse, variant=variant)
  run = functools.partial(_on_platforms, plans, lambda p: _k.backward_kernel(p, reverse, variant), reference)
  return _twin(run, reference)


@functools.partial(jax.custom_vjp, nondiff_argnums=(9, 10, 11))
def _recurrence(gi_r, gi_z, gi_n, h0, w, b, lengths, resets, h_reset, reverse, plans, variant):
  """(T, B, H) x3, (B, H), (3, H, H), (3, 1, H), (B, 1), resets (T, B, 1) and h_reset (B, H) or
  None -> (T, B, H) output, (B, H) last state."""
  return _forward(reverse, plans, False, variant)(gi_r, gi_z, gi_n, h0, w, b, lengths, resets, h_reset)


def _recurrence_fwd(gi_r, gi_z, gi_n, h0, w, b, lengths, resets, h_reset, reverse, plans, variant):
  out, h_last, *saved = _forward(reverse, plans, True, variant)(gi_r, gi_z, gi_n, h0, w, b, lengths, resets, h_reset)
  return (out, h_last), (saved, w, lengths, resets)


def _recurrence_bwd(reverse, plans, variant, residuals, cotangents):
  saved, w, lengths, resets = residuals
  d_out, d_last = cotangents
  *cts, dh0 = _backward(reverse, plans, variant)(d_out, d_last, w, lengths, resets, *saved)
  d_reset = None
  if resets is not None:  # h_reset's cotangent at each step, summed
    *cts, d_reset_steps = cts
    d_reset = d_reset_steps.sum(0)
  hp, r = saved[:2]
  if variant == "torch":  # W_hn multiplies h: its cotangent is g_n = a_n r
    a_r, a_z, a_n, u_n = cts
    v_n = hp
  else:  # W_hn multiplies r h: its cotangent is a_c
    a_r, a_z, a_n = cts
    u_n, v_n = a_n, r * hp
  dw = jnp.stack([jnp.einsum("tbi,tbj->ij", u, v, precision=_HIGHEST) for u, v in ((a_r, hp), (a_z, hp), (u_n, v_n))])
  db = jnp.stack([a.sum((0, 1)) for a in (a_r, a_z, u_n)])[:, None]
  return a_r, a_z, a_n, dh0, dw.astype(w.dtype), db, None, None, d_reset


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def _per_shard(run, x: jax.Array, resets: bool = False):
  """Under an explicit-sharding mesh, ``run`` per shard of the batch (``jax.shard_map``): Pallas
  refs cannot carry sharding types, and a block owns whole rows anyway. Else ``run`` itself."""
  sharding = jax.typeof(x).sharding
  mesh = getattr(sharding, "mesh", None)
  if mesh is None or jax.sharding.AxisType.Explicit not in getattr(mesh, "axis_types", ()):
    return run
  spec = tuple(getattr(sharding, "spec", ())) + (None,) * 3
  P = jax.sharding.PartitionSpec
  seq, row = P(None, spec[1], None), P(spec[1], None)
  reset_specs = (seq, row) if resets else (None, None)
  in_specs = (seq, seq, seq, row, P(), P(), row, *reset_specs)
  return jax.shard_map(run, mesh=mesh, in_specs=in_specs, out_specs=(seq, row), check_vma=False)


def direction(
  x: jax.Array,
  h0: jax.Array,
  w: Weights,
  valid: jax.Array | None,
  reverse: bool,
  remat: bool,
  variant: str = "torch",
  resets: jax.Array | None = None,
  h_reset: jax.Array | None = None,
  *,
  cpu_blocks: tuple[int, int] | None = None,
) -> tuple[jax.Array, jax.Array]:
  """One direction of one layer, either variant: (T, B, I), (B, H) -> (T, B, H), (B, H).

  Same contract as the reference scan: with ``valid`` (T, B, 1), steps past a sequence's end
  keep the state and output zero; the reverse direction starts at each sequence's last step;
  with ``resets`` (T, B, 1) (this direction's, :func:`jaxgru._fused.entering`), a flagged step
  starts from ``h_reset`` (B, H). ``cpu_blocks`` = (rows, steps) overrides the interpret-mode
  blocks (tests).
  """
  if remat:
    raise ValueError("remat=True is not supported by impl='pallas' (its kernels store the gates); use impl='fused'")
  w_ih, w_hh, b_ih, b_hh = w
  steps, batch, _ = x.shape
  hidden = h0.shape[-1]
  if valid is None:
    lengths = jnp.full((batch, 1), steps, jnp.int32) + jnp.zeros_like(x[0, :, :1], jnp.int32)  # laid out like x's rows
  else:
    lengths = jnp.sum(valid, axis=0, dtype=jnp.int32)
    x = jnp.where(valid, x, jnp.zeros_like(x))
  carry = jnp.float32 if x.dtype == jnp.bfloat16 else x.dtype  # bfloat16: float32 accumulation and carry
  gi = jnp.einsum("tbi,gi->tbg", x, w_ih, precision=_HIGHEST, preferred_element_type=carry)
  gi = gi if b_ih is None else gi + b_ih.astype(carry)
  w3 = w_hh.reshape(3, hidden, hidden)
  b3 = jnp.zeros((3, 1, hidden), carry) if b_hh is None else b_hh.reshape(3, 1, hidden).astype(carry)
  plans = tuple((p, plan(p, steps, batch, hidden, x.dtype) if batch else None) for p in PLATFORMS)  # B = 0: the scans
  if cpu_blocks is not None:
    plans = (("cpu", _k.Plan("cpu", *cpu_blocks, interpret=True)), *plans[1:])
  run = functools.partial(_recurrence, reverse=reverse, plans=plans, variant=variant)
  run = _per_shard(run, x, resets is not None)
  h_reset = None if h_reset is None else h_reset.astype(carry)
  out, h_last = run(*jnp.split(gi, 3, axis=-1), h0.astype(carry), w3, b3, lengths, resets, h_reset)
  return out.astype(x.dtype), h_last.astype(x.dtype)
