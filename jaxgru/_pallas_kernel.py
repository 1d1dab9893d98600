r"""The Pallas kernels of ``impl="pallas"`` and their plain-JAX twins (see :mod:`jaxgru._pallas`).

Each cell's step forward and step back are written once (:class:`GRUSteps` over
:func:`forward_step` and :func:`backward_step`, :class:`LSTMSteps`, :class:`RNNSteps`) and run two
ways: inside a ``pallas_call`` time loop (:func:`forward_kernel`, :func:`backward_kernel`, one loop
for every cell, its carry a tuple of state parts) and inside a ``lax.scan`` (:func:`forward_scan`,
:func:`backward_scan`: the reference the kernels are tested against, the fallback where no kernel
serves, and the derivatives for higher-order autodiff).

Axis legend: T time, B batch, H hidden size, P an LSTM's projection size (else H), G gate blocks;
K steps per time block, R rows per batch block.
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


# ---- the cells, as the kernels run them ---------------------------------------------------------
#
# Each cell's step for the kernels: weights per gate block (G, H, P) so that every product is of
# one gate (Triton's sides are powers of two: 3H is not), and the state a tuple of parts, each
# its own width. ``forward(state, gi, consts, valid) -> (state, (out, *residuals))``,
# ``backward(d_state, (d_out, *residuals), consts, valid) -> (d_state, cotangents)`` (zero where the
# step did not happen), and ``weight_grads``, outside the kernels, the gates' and the weights'
# cotangents from those. ``consts``: ``(w (G, H, P), b (G, 1, H))`` and an LSTM's ``w_hr`` (P, H)
# when it projects; refs in a kernel, arrays in a scan (both read with ``[...]``).


def _einsum_blocks(a, v) -> jax.Array:
  """``sum over t, b of a[t, b, i] v[t, b, j]``: (T, B, H) x (T, B, P) -> (H, P), at full precision."""
  return jnp.einsum("tbi,tbj->ij", a, v, precision=lax.Precision.HIGHEST)


@dataclasses.dataclass(frozen=True)
class GRUSteps:
  """torch's GRU (``variant="torch"``) or the classic one: :func:`forward_step`, :func:`backward_step`."""

  variant: str = "torch"
  gates = 3

  def widths(self, hidden: int, out: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(state parts, residuals, cotangents): the feature width of each (T, B, ·) or (B, ·) array."""
    return (hidden,), (hidden,) * (5 if self.variant == "torch" else 4), (hidden,) * (4 if self.variant == "torch" else 3)

  def forward(self, state, gi, consts, valid):
    h, ys = forward_step(state[0], gi, consts[0], consts[1], valid, self.variant)
    return (h,), ys

  def backward(self, d, seq, consts, valid):
    dh, cts = backward_step(d[0], seq, consts[0], valid, self.variant)
    return (dh,), cts

  def weight_grads(self, cts, saved, consts):
    hp, r = saved[:2]
    if self.variant == "torch":  # W_hn multiplies h: its cotangent is g_n = a_n r
      a_r, a_z, a_n, u_n = cts
      v_n = hp
    else:  # W_hn multiplies r h: its cotangent is a_c
      a_r, a_z, a_n = cts
      u_n, v_n = a_n, r * hp
    dw = jnp.stack([_einsum_blocks(u, v) for u, v in ((a_r, hp), (a_z, hp), (u_n, v_n))])
    db = jnp.stack([a.sum((0, 1)) for a in (a_r, a_z, u_n)])[:, None]
    return (a_r, a_z, a_n), (dw, db)


@dataclasses.dataclass(frozen=True)
class RNNSteps:
  """torch's Elman RNN: ``h' = act(g + W_hh h + b_hh)``, act tanh or ReLU; saves ``(h, h')``."""

  nonlinearity: str = "tanh"
  gates = 1

  def widths(self, hidden: int, out: int):
    return (hidden,), (hidden, hidden), (hidden,)

  def forward(self, state, gi, consts, valid):
    (h,), (w, b) = state, consts[:2]
    pre = gi[0] + _dot(h, w[0], _CONTRACT_IN) + b[0]
    y = jnp.tanh(pre) if self.nonlinearity == "tanh" else jnp.maximum(pre, 0)
    return (jnp.where(valid, y, h),), (jnp.where(valid, y, jnp.zeros_like(h)), h, y)

  def backward(self, d, seq, consts, valid):
    (dh,), (do, _, y) = d, seq
    zero = jnp.zeros_like(dh)
    g = jnp.where(valid, dh + do, zero)
    a = g * (1 - y * y) if self.nonlinearity == "tanh" else jnp.where(y > 0, g, zero)
    a = jnp.where(valid, a, zero)
    return (jnp.where(valid, _dot(a, consts[0][0], _CONTRACT_OUT), dh),), (a,)

  def weight_grads(self, cts, saved, consts):
    (a,), (hp, _) = cts, saved
    return (a,), (_einsum_blocks(a, hp)[None], a.sum((0, 1))[None, None])


@dataclasses.dataclass(frozen=True)
class LSTMSteps:
  r"""torch's LSTM, gates (i, f, g, o), state ``(h, c)``; with ``proj`` h = W_hr (o tanh c), of
  width P. Saves ``(h, c, i, f, g, o, tanh c')``; back, from ``dh`` (P) and ``dc`` (H):

  .. math::

    \delta &= dh + do,\quad m = W_{hr}^T \delta \text{ (or } \delta\text{)},\quad
    \gamma = dc + m\, o (1 - \tanh^2 c') \\
    a_i &= \gamma\, g\, i (1 - i),\ a_f = \gamma\, c\, f (1 - f),\ a_g = \gamma\, i (1 - g^2),\
    a_o = m \tanh c'\, o (1 - o) \\
    dc_{prev} &= \gamma f,\quad dh_{prev} = \textstyle\sum_k a_k W_{hk}

  and ``W_hr``'s cotangent is :math:`\delta^T (o \tanh c')` over time and batch.
  """

  proj: bool = False
  gates = 4

  def widths(self, hidden: int, out: int):
    return (out, hidden), (out, hidden) + (hidden,) * 5, (hidden,) * 4 + ((out,) if self.proj else ())

  def forward(self, state, gi, consts, valid):
    (h, c), (w, b) = state, consts[:2]
    pre = [gi[k] + _dot(h, w[k], _CONTRACT_IN) + b[k] for k in range(4)]
    i, f, o = (jax.nn.sigmoid(pre[k]) for k in (0, 1, 3))
    g = jnp.tanh(pre[2])
    c_new = f * c + i * g
    tc = jnp.tanh(c_new)
    h_new = o * tc
    if self.proj:
      h_new = _dot(h_new, consts[2][...], _CONTRACT_IN)
    new = (jnp.where(valid, h_new, h), jnp.where(valid, c_new, c))
    return new, (jnp.where(valid, h_new, jnp.zeros_like(h)), h, c, i, f, g, o, tc)

  def backward(self, d, seq, consts, valid):
    (dh, dc), (do, _, cp, i, f, g, o, tc) = d, seq
    zero_h, zero_c = jnp.zeros_like(dh), jnp.zeros_like(dc)
    delta = jnp.where(valid, dh + do, zero_h)
    m = _dot(delta, consts[2][...], _CONTRACT_OUT) if self.proj else delta
    gamma = jnp.where(valid, dc, zero_c) + m * o * (1 - tc * tc)
    a = (gamma * g * i * (1 - i), gamma * cp * f * (1 - f), gamma * i * (1 - g * g), m * tc * o * (1 - o))
    cts = tuple(jnp.where(valid, a_k, zero_c) for a_k in a)
    w = consts[0]
    dh_prev = sum(_dot(cts[k], w[k], _CONTRACT_OUT) for k in range(4))
    new = (jnp.where(valid, dh_prev, dh), jnp.where(valid, gamma * f, dc))
    return new, cts + ((delta,) if self.proj else ())

  def weight_grads(self, cts, saved, consts):
    hp, o, tc = saved[0], saved[5], saved[6]
    dw = jnp.stack([_einsum_blocks(a, hp) for a in cts[:4]])
    db = jnp.stack([a.sum((0, 1)) for a in cts[:4]])[:, None]
    extra = (_einsum_blocks(cts[4], o * tc),) if self.proj else ()
    return cts[:4], (dw, db, *extra)


def steps_of(cell, proj: bool = False):
  """The kernels' steps of a :mod:`jaxgru._cell` cell (``proj``: an LSTM with ``weight_hr``)."""
  if cell.name == "GRU":
    return GRUSteps(cell.variant)
  if cell.name == "LSTM":
    return LSTMSteps(proj)
  return RNNSteps(cell.nonlinearity)


# ---- the plain-JAX twins: the reference, the fallback and the derivatives ------------------------


def reset_forward_step(cell, state, gi, consts, valid, reset, reset_state):
  """``cell.forward`` from ``reset_state`` (its parts (R, ·)) in the rows that ``reset`` (R, 1)
  flags (an episode starts there; ``reset`` None: no resets); the saved state is the one it
  started from."""
  if reset is not None:
    state = tuple(jnp.where(reset, r, s) for r, s in zip(reset_state, state, strict=True))
  return cell.forward(state, gi, consts, valid)


def reset_backward_step(cell, d, seq, consts, valid, reset):
  """``cell.backward``; in the rows that ``reset`` flags, the gradient with respect to the state
  the step started from is the reset state's (its parts returned after the cotangents), and none
  passes back."""
  d_prev, cts = cell.backward(d, seq, consts, valid)
  if reset is None:
    return d_prev, cts
  kept = tuple(jnp.where(reset, jnp.zeros_like(p), p) for p in d_prev)
  return kept, (*cts, *(jnp.where(reset, p, jnp.zeros_like(p)) for p in d_prev))


def _scan(step, carry, seqs, lengths, reverse, resets=None):
  """``step(carry, xs, valid, reset)`` over time, ``valid`` (B, 1) = ``t < lengths``, ``reset``
  (B, 1) the step's row of ``resets`` (T, B, 1) or None."""
  t = jnp.arange(seqs[0].shape[0])
  return lax.scan(lambda c, xs: step(c, xs[2:], xs[0] < lengths, xs[1]), carry, (t, resets, *seqs), reverse=reverse)


def forward_scan(gis, state0, consts, lengths, resets, reset_state, *, cell, reverse: bool, save: bool):
  """Gates G x (T, B, H), state parts (B, ·), consts, lengths (B, 1), resets (T, B, 1) and the
  reset state's parts (B, ·) or None -> ``(out, last state, residuals)`` (residuals empty
  unless ``save``)."""

  def step(state, gi, valid, reset):
    state, ys = reset_forward_step(cell, state, gi, consts, valid, reset, reset_state)
    return state, ys if save else ys[:1]

  last, ys = _scan(step, tuple(state0), tuple(gis), lengths, reverse, resets)
  return ys[0], last, tuple(ys[1:])


def backward_scan(d_out, d_last, consts, lengths, resets, saved, *, cell, reverse: bool):
  """The forward's cotangents and residuals -> ``(cotangents, d_state0)``, time the other way;
  with ``resets``, the cotangents end with the reset state's parts at each step (T, B, ·)."""

  def step(d, seq, valid, reset):
    return reset_backward_step(cell, d, seq, consts, valid, reset)

  d0, ys = _scan(step, tuple(d_last), (d_out, *saved), lengths, not reverse, resets)
  return tuple(ys), d0


# ---- the kernels --------------------------------------------------------------------------------


def _loop_kernel(step, n_carry: int, n_seq: int, n_const: int, steps: int, blocks: int, reverse: bool, resets: bool):
  """A kernel running ``step(carry, seq_t, consts, valid, reset) -> (carry, ys_t)`` over one time block.

  Refs: ``lengths`` (R, 1), the carry's ``n_carry`` initial parts (R, ·), with ``resets`` the
  flags (K, R, 1) (int32, nonzero where the step resets), ``n_seq`` (K, R, ·) inputs,
  ``n_const`` whole-array inputs (the reset state's parts (R, ·) among them when the step needs
  them), then the (K, R, ·) outputs and the carry's parts, which stay put across time blocks.
  """

  def kernel(len_ref, *refs):
    init_refs, refs = refs[:n_carry], refs[n_carry:]
    flag_ref, refs = (refs[0], refs[1:]) if resets else (None, refs)
    seq_in, consts = refs[:n_seq], refs[n_seq : n_seq + n_const]
    seq_out, carry_refs = refs[n_seq + n_const : -n_carry], refs[-n_carry:]
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

    def run(start_refs):
      carry = lax.fori_loop(0, steps, body, tuple(ref[...] for ref in start_refs))
      for ref, part in zip(carry_refs, carry, strict=True):
        ref[...] = part

    if blocks == 1:  # the whole sequence in one block (GPU): nothing carried between blocks
      run(init_refs)
      return

    @pl.when(j == 0)
    def _():
      for ref, init in zip(carry_refs, init_refs, strict=True):
        ref[...] = init[...]

    run(carry_refs)

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


def _pallas(step, p: Plan, reverse: bool, out_widths, lengths, inits, seqs, consts, resets=None, rows=()):
  """Pads (T, B) to whole blocks, runs ``step`` as a kernel, returns ``(seq_outputs, carry)``.

  ``inits``: the carry's parts (B, ·); ``out_widths``: the width of each (T, B, ·) output;
  ``resets`` (T, B, 1) bool or None; ``rows``: (B, ·) inputs blocked like the carry, handed to
  ``step`` after ``consts``."""
  steps, batch = seqs[0].shape[:2]
  k = steps if p.steps is None else min(p.steps, steps)
  t_pad, b_pad = round_up(steps, k) - steps, round_up(batch, p.rows) - batch
  seqs = [jnp.pad(a, ((0, t_pad), (0, b_pad), (0, 0))) for a in seqs]
  pad_rows = lambda arrays: [jnp.pad(a, ((0, b_pad), (0, 0))) for a in arrays]  # noqa: E731
  inits, rows, (lengths,) = pad_rows(inits), pad_rows(rows), pad_rows([lengths])  # padded rows: length 0
  blocks = (steps + t_pad) // k
  time_block = lambda i, j: (blocks - 1 - j if reverse else j, i, 0)  # noqa: E731
  seq_spec = lambda width: pl.BlockSpec((k, p.rows, width), time_block)  # noqa: E731
  row_spec = lambda width: pl.BlockSpec((p.rows, width), lambda i, j: (i, 0))  # noqa: E731
  const_specs = [pl.BlockSpec(c.shape, lambda i, j, nd=c.ndim: (0,) * nd) for c in consts]
  flags, flag_specs = [], []
  if resets is not None:  # int32 flags: a (K, R, 1) block like the sequences'
    flags = [jnp.pad(resets.astype(jnp.int32), ((0, t_pad), (0, b_pad), (0, 0)))]
    flag_specs = [pl.BlockSpec((k, p.rows, 1), time_block)]
  dtype = inits[0].dtype
  outs = pl.pallas_call(
    _loop_kernel(step, len(inits), len(seqs), len(consts) + len(rows), k, blocks, reverse, resets is not None),
    grid=((batch + b_pad) // p.rows, blocks),
    in_specs=[
      row_spec(1),
      *[row_spec(a.shape[-1]) for a in inits],
      *flag_specs,
      *[seq_spec(a.shape[-1]) for a in seqs],
      *const_specs,
      *[row_spec(a.shape[-1]) for a in rows],
    ],
    out_specs=[*[seq_spec(w) for w in out_widths], *[row_spec(a.shape[-1]) for a in inits]],
    out_shape=[
      *[jax.ShapeDtypeStruct((steps + t_pad, batch + b_pad, w), dtype) for w in out_widths],
      *[jax.ShapeDtypeStruct(a.shape, a.dtype) for a in inits],
    ],
    interpret=p.interpret,
    compiler_params=_compiler_params(p),
  )(lengths, *inits, *flags, *seqs, *consts, *rows)
  n = len(out_widths)
  return tuple(a[:steps, :batch] for a in outs[:n]), tuple(a[:batch] for a in outs[n:])


def forward_kernel(p: Plan, cell, reverse: bool, save: bool):
  """:func:`forward_scan` as a kernel on ``p``."""

  def run(gis, state0, consts, lengths, resets, reset_state):
    n_const = len(consts)

    def step(state, gi, refs, valid, reset):
      reset_state = None if reset is None else tuple(ref[...] for ref in refs[n_const:])
      state, ys = reset_forward_step(cell, state, gi, refs[:n_const], valid, reset, reset_state)
      return state, ys if save else ys[:1]

    parts, residuals, _ = cell.widths(gis[0].shape[-1], state0[0].shape[-1])
    widths = (parts[0], *residuals) if save else (parts[0],)
    rows = () if resets is None else tuple(reset_state)
    ys, last = _pallas(step, p, reverse, widths, lengths, tuple(state0), tuple(gis), consts, resets, rows)
    return ys[0], last, ys[1:]

  return run


def backward_kernel(p: Plan, cell, reverse: bool):
  """:func:`backward_scan` as a kernel on ``p``."""

  def run(d_out, d_last, consts, lengths, resets, saved):
    def step(d, seq, refs, valid, reset):
      return reset_backward_step(cell, d, seq, refs, valid, reset)

    parts, _, cts = cell.widths(saved[-1].shape[-1], d_out.shape[-1])
    widths = cts + (parts if resets is not None else ())
    return _pallas(step, p, not reverse, widths, lengths, tuple(d_last), (d_out, *saved), consts, resets)

  return run
