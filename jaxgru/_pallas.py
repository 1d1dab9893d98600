r"""``impl="pallas"``: the whole time loop of one layer and direction in one Pallas kernel, for
every cell: the GRU (both variants), the LSTM (with ``proj_size``) and the RNN.

The input projection ``gi = x W_ih^T + b_ih`` is one large product outside the kernel (JAX
differentiates it); the recurrence runs in a ``pallas_call`` whose grid is (batch blocks, time
blocks): a program owns whole rows of the batch, so programs never synchronise, and it walks
its time blocks in order, the state carried in its last-state output blocks (one per part: h,
and an LSTM's c). ``W_hh`` (G, H, P), one (H, P) slab per gate, is one block: on TPU it is
copied to VMEM once and stays there for the whole call; on GPU (Triton blocks are views of HBM)
each step reads it again, through the caches. The cells' steps are in
:mod:`jaxgru._pallas_kernel` (``GRUSteps``, ``LSTMSteps``, ``RNNSteps``). The GRU's forward, per
step, ``variant="torch"`` (gates r, z, n):

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
over time and batch), as are the LSTM's and the RNN's (and the LSTM's ``W_hr``). A step at or past a sequence's length leaves
``h`` (and ``dh``) alone and outputs zero; x's padding is zeroed before the projection and the
kernels select, never multiply, with the mask: NaN padding cannot leak in.

Where it runs, decided per platform when XLA lowers the program (``lax.platform_dependent``):
interpret mode on CPU (verification: any size, slow); Triton on CUDA and ROCm GPUs for float32
and bfloat16 with H (and an LSTM's P) a power of two in [16, 256]; Mosaic on TPU for float32 and
bfloat16 with H (and P) a multiple of 128 whose blocks fit :data:`TPU_VMEM_BYTES`. Elsewhere the same step functions run
as a ``lax.scan``. Products are at full precision (``Precision.HIGHEST``: no TF32 passes); with
bfloat16 weights and input they take bfloat16 inputs, accumulate in float32, and the carry,
gates and residuals stay float32.

Higher-order autodiff: the kernels' own derivatives are those of their plain-JAX twins
(:func:`~jaxgru._pallas_kernel.forward_scan`, :func:`~jaxgru._pallas_kernel.backward_scan`), so
``jax.grad`` of ``jax.grad`` runs the kernels for the first derivative and XLA scans beyond it.

Axis legend: T time, B batch, I input size, H hidden size, P an LSTM's projection size (else
H), G gate blocks (GRU 3, LSTM 4, RNN 1).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxgru import _pallas_kernel as _k

Weights = tuple  # w_ih (G*H, I), w_hh (G*H, P), b_ih, b_hh (G*H,) and an LSTM's w_hr (P, H) when it projects
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
TPU_VMEM_BYTES = 16 * 2**20  # TPU's default scoped VMEM limit (v4, v5e)
_HIGHEST = lax.Precision.HIGHEST


def plan(platform: str, steps: int, batch: int, hidden: int, dtype, cell=None, out: int | None = None) -> _k.Plan | None:
  """The kernels' blocks on ``platform`` for ``cell``'s steps (:func:`jaxgru._pallas_kernel.steps_of`,
  default torch's GRU) with gate width ``hidden`` and output width ``out`` (default ``hidden``),
  or ``None`` where the plain-JAX scans run instead."""
  if platform == "cpu":  # interpret mode: several time blocks, so that the carry across them is tested
    return _k.Plan(platform, rows=8, steps=16, interpret=True)
  if jnp.dtype(dtype) not in (jnp.float32, jnp.bfloat16):
    return None
  cell = _k.GRUSteps() if cell is None else cell
  out = hidden if out is None else out
  widths = {hidden, out}
  if platform in ("cuda", "rocm"):  # Triton: power-of-two values, dot sides >= 16; blocks stay in HBM
    ok = all(16 <= w <= 256 and w & (w - 1) == 0 for w in widths)
    return _k.Plan(platform, rows=16, steps=None) if ok else None
  if platform == "tpu" and all(w % 128 == 0 for w in widths):  # Mosaic: whole lanes
    k = 8
    for rows in (64, 32, 16, 8):  # the most rows whose blocks fit
      if rows <= max(_k.round_up(batch, 8), 8) and _tpu_vmem_bytes(k, rows, cell, hidden, out) <= TPU_VMEM_BYTES:
        return _k.Plan(platform, rows=rows, steps=k)
  return None


def _tpu_vmem_bytes(k: int, rows: int, cell, hidden: int, out: int) -> int:
  """The forward kernel's double-buffered float32 blocks: the G gate inputs, the output and the
  residuals (K, R, ·), the state's parts in and out (R, ·), W_hh, b_hh (and W_hr)."""
  parts, residuals, _ = cell.widths(hidden, out)
  sequences = cell.gates * hidden + out + sum(residuals)
  weights = cell.gates * hidden * (out + 1) + (out * hidden if getattr(cell, "proj", False) else 0)
  return 2 * 4 * (k * rows * sequences + 2 * rows * sum(parts) + weights)


def _on_platforms(plans, kernel, reference, *args):
  """``kernel(plan)(*args)`` on each platform with a plan, ``reference(*args)`` elsewhere."""
  branches = {name: reference if p is None else kernel(p) for name, p in plans}
  return lax.platform_dependent(*args, default=reference, **branches)


def _twin(kernel, reference):
  """``kernel``'s values with ``reference``'s derivatives (the same maths in plain JAX)."""
  f = jax.custom_vjp(kernel)
  f.defvjp(lambda *args: (kernel(*args), args), lambda args, ct: jax.vjp(reference, *args)[1](ct))
  return f


def _forward(cell, reverse: bool, plans, save: bool):
  reference = functools.partial(_k.forward_scan, cell=cell, reverse=reverse, save=save)
  run = functools.partial(_on_platforms, plans, lambda p: _k.forward_kernel(p, cell, reverse, save), reference)
  return _twin(run, reference)


def _backward(cell, reverse: bool, plans):
  reference = functools.partial(_k.backward_scan, cell=cell, reverse=reverse)
  run = functools.partial(_on_platforms, plans, lambda p: _k.backward_kernel(p, cell, reverse), reference)
  return _twin(run, reference)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8))
def _recurrence(gis, state0, consts, lengths, resets, reset_state, cell, reverse, plans):
  """G x (T, B, H) gates, the state's parts (B, ·), consts (``w`` (G, H, P), ``b`` (G, 1, H),
  an LSTM's ``w_hr``), lengths (B, 1), resets (T, B, 1) and the reset state's parts (B, ·) or
  None -> (T, B, P) output, the last state's parts."""
  out, last, _ = _forward(cell, reverse, plans, False)(gis, state0, consts, lengths, resets, reset_state)
  return out, last


def _recurrence_fwd(gis, state0, consts, lengths, resets, reset_state, cell, reverse, plans):
  out, last, saved = _forward(cell, reverse, plans, True)(gis, state0, consts, lengths, resets, reset_state)
  return (out, last), (saved, consts, lengths, resets)


def _recurrence_bwd(cell, reverse, plans, residuals, cotangents):
  saved, consts, lengths, resets = residuals
  d_out, d_last = cotangents
  cts, d_state0 = _backward(cell, reverse, plans)(d_out, d_last, consts, lengths, resets, saved)
  d_reset = None
  if resets is not None:  # the reset state's cotangent at each step, summed
    cts, d_reset_steps = cts[: -len(d_state0)], cts[-len(d_state0) :]
    d_reset = tuple(d.sum(0) for d in d_reset_steps)
  d_gis, d_consts = cell.weight_grads(cts, saved, consts)
  d_consts = tuple(d.astype(c.dtype) for d, c in zip(d_consts, consts, strict=True))
  return d_gis, d_state0, d_consts, None, None, d_reset


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def _per_shard(run, x: jax.Array, n_gates: int, n_parts: int, n_consts: int, resets: bool = False):
  """Under an explicit-sharding mesh, ``run`` per shard of the batch (``jax.shard_map``): Pallas
  refs cannot carry sharding types, and a block owns whole rows anyway. Else ``run`` itself."""
  sharding = jax.typeof(x).sharding
  mesh = getattr(sharding, "mesh", None)
  if mesh is None or jax.sharding.AxisType.Explicit not in getattr(mesh, "axis_types", ()):
    return run
  spec = tuple(getattr(sharding, "spec", ())) + (None,) * 3
  P = jax.sharding.PartitionSpec
  seq, row = P(None, spec[1], None), P(spec[1], None)
  reset_specs = (seq, (row,) * n_parts) if resets else (None, None)
  in_specs = ((seq,) * n_gates, (row,) * n_parts, (P(),) * n_consts, row, *reset_specs)
  return jax.shard_map(run, mesh=mesh, in_specs=in_specs, out_specs=(seq, (row,) * n_parts), check_vma=False)


def direction(
  cell,
  x: jax.Array,
  state0: tuple,
  w: Weights,
  valid: jax.Array | None,
  reverse: bool,
  remat: bool,
  resets: jax.Array | None = None,
  reset_state: tuple | None = None,
  *,
  cpu_blocks: tuple[int, int] | None = None,
) -> tuple[jax.Array, tuple]:
  """One direction of one layer of ``cell`` (a :mod:`jaxgru._cell` cell): (T, B, I), the
  state's parts (B, ·) -> (T, B, H or P), the last state's parts.

  Same contract as the reference scan: with ``valid`` (T, B, 1), steps past a sequence's end
  keep the state and output zero; the reverse direction starts at each sequence's last step;
  with ``resets`` (T, B, 1) (this direction's, :func:`jaxgru._fused.entering`), a flagged step
  starts from ``reset_state``. ``cpu_blocks`` = (rows, steps) overrides the interpret-mode
  blocks (tests).
  """
  if remat:
    raise ValueError("remat=True is not supported by impl='pallas' (its kernels store the gates); use impl='fused'")
  w_ih, w_hh, b_ih, b_hh = w[:4]
  w_hr = w[4] if len(w) > 4 else None
  steps_of_cell = _k.steps_of(cell, w_hr is not None)
  steps, batch, _ = x.shape
  gates = cell.gates
  hidden = w_hh.shape[0] // gates
  out = state0[0].shape[-1]
  if valid is None:
    lengths = jnp.full((batch, 1), steps, jnp.int32) + jnp.zeros_like(x[0, :, :1], jnp.int32)  # laid out like x's rows
  else:
    lengths = jnp.sum(valid, axis=0, dtype=jnp.int32)
    x = jnp.where(valid, x, jnp.zeros_like(x))
  carry = jnp.float32 if x.dtype == jnp.bfloat16 else x.dtype  # bfloat16: float32 accumulation and carry
  gi = jnp.einsum("tbi,gi->tbg", x, w_ih, precision=_HIGHEST, preferred_element_type=carry)
  gi = gi if b_ih is None else gi + b_ih.astype(carry)
  w_g = w_hh.reshape(gates, hidden, w_hh.shape[1])
  b_g = jnp.zeros((gates, 1, hidden), carry) if b_hh is None else b_hh.reshape(gates, 1, hidden).astype(carry)
  consts = (w_g, b_g) + (() if w_hr is None else (w_hr,))
  # B = 0: the scans on every platform
  plans = tuple((p, plan(p, steps, batch, hidden, x.dtype, steps_of_cell, out) if batch else None) for p in PLATFORMS)
  if cpu_blocks is not None:
    plans = (("cpu", _k.Plan("cpu", *cpu_blocks, interpret=True)), *plans[1:])
  run = functools.partial(_recurrence, cell=steps_of_cell, reverse=reverse, plans=plans)
  run = _per_shard(run, x, gates, len(state0), len(consts), resets is not None)
  to_carry = lambda parts: None if parts is None else tuple(a.astype(carry) for a in parts)  # noqa: E731
  gis = tuple(jnp.split(gi, gates, axis=-1))
  out, last = run(gis, to_carry(state0), consts, lengths, resets, to_carry(reset_state))
  return out.astype(x.dtype), tuple(a.astype(x.dtype) for a in last)
