r"""``impl="native"``: one layer of torch's GRU, LSTM or RNN, both directions when bidirectional,
through the C++ kernel in ``native/gru_kernel.cc``.

The kernel is an XLA FFI custom call (CPU only, float32 and float64); loading it, its targets,
what it serves and when ``impl="auto"`` takes it are :mod:`jaxgru._native_library`'s. This module
runs it as a layer: its calls as JAX primitives, their autodiff and their sharding.

The kernel carries a state of one row per batch member: h, or for the LSTM h and c side by side
(W = O + H wide, O the output size: P when projecting, else H); the functions below join a
cell's state parts into those rows and split them again.

Autodiff has the contract of :func:`jaxgru._fused.direction`: a ``jax.custom_vjp`` whose
backward pass is the kernel's. Higher orders: the kernel's backward pass is itself a
``custom_vjp`` whose derivative is that of the fused XLA path's backward pass (plain JAX), so
``grad`` of ``grad`` and ``hessian`` work and agree with the other paths. Forward mode falls
back like the fused path's (see :func:`jaxgru.gru`). Under ``vmap`` the kernel runs once per
member (``jax.custom_batching.sequential_vmap``).

Sharding: each device runs the kernel on its own rows of the batch and the weight gradients are
summed across devices. Under automatic sharding (``jax.jit`` with ``in_shardings``) the kernel's
calls are ``custom_partitioning``-ed (:mod:`jaxgru._partition`): XLA's partitioner keeps the
batch as it is sharded and replicates every other axis; under an explicit-sharding mesh a
``jax.shard_map`` over the batch's axes does the same. On one device the program is the bare
custom call.

A bidirectional layer is one call of the kernel: the reverse direction runs its loop from the
last step down and writes its half of the output in place (no flips, no concatenation).

Axis legend: T time, B batch, I input size, H hidden size, G = gates * H, O output size, W the
kernel's state width, D directions (1 or 2).
"""

from __future__ import annotations

import functools

import jax
import jax.extend
import jax.numpy as jnp
from jax.interpreters import mlir

from jaxgru import _cell, _fused, _partition
from jaxgru import _native_library as _library


def _batch_axes(x: jax.Array):
  """The mesh axes that x's batch axis (1) is explicitly sharded over, or None."""
  return (tuple(jax.typeof(x).sharding.spec) + (None, None))[1]


def _operands(x, h0, w, valid, starts, h_reset):
  """The kernel's inputs: zero biases for a bias-free layer, w_hr (D, P, H) or a (0,)-shaped
  placeholder, valid (T, B) all true when None, starts (T, B) and h_reset (D, B, W) (0,)-shaped
  placeholders without resets."""
  w_ih, w_hh, b_ih, b_hh = w[:4]
  w_hr = w[4] if len(w) > 4 and w[4] is not None else jnp.zeros((0,), x.dtype)
  zeros = jnp.zeros(w_hh.shape[:2], x.dtype)
  mask = jnp.ones(x.shape[:2], bool) if valid is None else valid.reshape(x.shape[:2])
  if starts is None:
    starts, h_reset = jnp.zeros((0,), bool), jnp.zeros((0,), x.dtype)
  else:
    starts = starts.reshape(x.shape[:2])
  b_ih, b_hh = (zeros if b is None else b for b in (b_ih, b_hh))
  return (x, h0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, starts, h_reset)


def _rows(starts) -> tuple[int | None, ...]:
  """The batch axis of the kernel's operands x, h0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, starts,
  h_reset: what a device's share of the batch is under sharding (_partition.per_batch_shard)."""
  resets = None if starts is None else 1
  return (1, 1, None, None, None, None, None, 1, resets, resets)


def _join(state: tuple) -> jax.Array:
  """A cell's state parts (·, B, ·) as the kernel's rows (·, B, W)."""
  return state[0] if len(state) == 1 else jnp.concatenate(state, -1)


def _split(cell: _cell.Cell, rows: jax.Array, out_size: int) -> tuple:
  """The kernel's state rows (·, W) as ``cell``'s parts: (h,), or LSTM's (h (·, O), c)."""
  return (rows[..., :out_size], rows[..., out_size:]) if isinstance(cell, _cell.LSTM) else (rows,)


def _forward(cell, x, h0, w, valid, starts, h_reset, save: bool, remat: bool):
  """(out (T, B, D*O), h_last (D, B, W), states, gates): states (D, T, B, W) and gates
  (D, T, B, S*H), the cell's residuals, when saved, else (0,)-shaped placeholders; both in each
  direction's own order of steps (the reverse direction's first is the input's last)."""

  def kernel(x, h0, w_ih, w_hh, *rest):
    (steps, batch), (directions, width) = x.shape[:2], (h0.shape[0], h0.shape[-1])
    out_size, hidden = w_hh.shape[-1], w_hh.shape[1] // cell.gates
    states = (directions, steps, batch, width) if save else (0,)
    gates = (directions, steps, batch, _library.SAVED[cell.name] * hidden) if save and not remat else (0,)
    shapes = [(steps, batch, directions * out_size), (directions, batch, width), states, gates]
    return _call(cell, "forward_save" if save else "forward", (x, h0, w_ih, w_hh, *rest), shapes)

  saved = (2 if save else None, 2 if save and not remat else None)
  run = _partition.per_batch_shard(kernel, _partition.Layout(_rows(starts), (1, 1, *saved)))
  return run(*_operands(x, h0, w, valid, starts, h_reset))


def _directions(cell, x, h0, w, valid, starts, h_reset):
  """Each direction's (x, state, w, valid, resets, reset state) for the fused path, in its own
  order of steps: the reverse one's x, valid and resets flipped; ``starts`` (T, B, 1) or None;
  h0 and h_reset the kernel's rows (D, B, W), the yielded states the cell's parts."""
  out_size = w[1].shape[-1]
  for d in range(h0.shape[0]):
    w_d = tuple(None if a is None else a[d] for a in w)
    resets = _fused.entering(starts, d == 1)
    h_reset_d = None if h_reset is None else _split(cell, h_reset[d], out_size)
    if d == 1:
      x, valid, resets = (None if a is None else jnp.flip(a, 0) for a in (x, valid, resets))
    yield x, _split(cell, h0[d], out_size), w_d, valid, resets, h_reset_d


def _reference_forward(cell, x, h0, w, valid, starts, h_reset):
  """(out, h_last, states) by the fused path's forward scans: plain JAX, differentiable both ways."""
  outs, lasts, states = [], [], []
  for d, (x_d, h0_d, w_d, valid_d, e_d, r_d) in enumerate(_directions(cell, x, h0, w, valid, starts, h_reset)):
    last, states_d = _fused.forward(cell, x_d, h0_d, w_d, valid_d, False, _fused.chunk_size(x.shape[0]), e_d, r_d)
    out = _fused.output(states_d[0], valid_d)
    outs.append(jnp.flip(out, 0) if d else out)
    lasts.append(_join(last))
    states.append(_join(states_d))
  return jnp.concatenate(outs, -1), jnp.stack(lasts), jnp.stack(states)


def _reference_layer(cell, x, h0, w, valid, starts, h_reset):
  """(out, h_last) by the fused path's custom_vjp, one direction at a time."""
  outs, lasts = [], []
  for d, (x_d, h0_d, w_d, valid_d, e_d, r_d) in enumerate(_directions(cell, x, h0, w, valid, starts, h_reset)):
    out, last = _fused.layer(cell, x_d, h0_d, w_d, valid_d, False, _fused.chunk_size(x.shape[0]), e_d, r_d)
    outs.append(jnp.flip(out, 0) if d else out)
    lasts.append(_join(last))
  return jnp.concatenate(outs, -1), jnp.stack(lasts)


def _reference_grads(cell, x, h0, w, valid, starts, h_reset, d_out, d_last):
  """The fused path's VJP, plain JAX: what the kernel's backward pass computes, (dx, dh0, dw,
  dh_reset) (dh_reset None without resets)."""
  if starts is None:
    _, pull = jax.vjp(lambda x, h0, w: _reference_layer(cell, x, h0, w, valid, None, None), x, h0, w)
    return (*pull((d_out, d_last)), None)
  _, pull = jax.vjp(lambda x, h0, w, h_reset: _reference_layer(cell, x, h0, w, valid, starts, h_reset), x, h0, w, h_reset)
  return pull((d_out, d_last))


# The kernel's calls, one primitive per FFI target, lowered per platform: on the CPU to the custom
# call, on any other platform (a GPU, a TPU, jax.export for them) to the fused XLA path computing
# the same results from the same operands (below). So impl="auto" runs the kernel wherever XLA
# lowers for the CPU and the fused path elsewhere, in one program, chosen when XLA lowers it, and
# the fused path is traced only when a program is lowered for another platform
# (benchmarks/NOTES.md, entry 12d). Attributes (input_grad, remat) go to the FFI handler.


def _weights(w_ih, w_hh, b_ih, b_hh, w_hr):
  """The fused path's weights from the kernel's operands (w_hr's placeholder dropped)."""
  return (w_ih, w_hh, b_ih, b_hh) + (() if w_hr.shape == (0,) else (w_hr,))


def _resets(starts, h_reset):
  """The kernel's (starts, h_reset) operands as the fused path takes them: (T, B, 1) and
  (D, B, W), or None, None for the (0,)-shaped placeholders."""
  return (None, None) if starts.shape == (0,) else (starts[..., None], h_reset)


def _fused_forward_kernel(x, h0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, starts, h_reset, *, cell, shapes):
  """The forward targets' results by the fused path: (out, h_last, states, gates), states and
  gates (0,)-shaped where ``shapes`` says they are not kept."""
  save, gates_kept = shapes[2] != (0,), shapes[3] != (0,)
  k = _fused.chunk_size(x.shape[0])
  outs, lasts, states, gates = [], [], [], []
  w = _weights(w_ih, w_hh, b_ih, b_hh, w_hr)
  for d, (x_d, h0_d, w_d, valid_d, e_d, r_d) in enumerate(
    _directions(cell, x, h0, w, mask[..., None], *_resets(starts, h_reset))
  ):
    last, saved = _fused.forward(cell, x_d, h0_d, w_d, valid_d, gates_kept, k, e_d, r_d)
    states_d, saved = saved if gates_kept else (saved, None)
    out = _fused.output(states_d[0], valid_d)
    outs.append(jnp.flip(out, 0) if d else out)
    lasts.append(_join(last))
    states.append(_join(states_d))
    gates.append(jnp.concatenate(saved, -1) if gates_kept else None)
  none = jnp.zeros((0,), x.dtype)
  return (
    jnp.concatenate(outs, -1),
    jnp.stack(lasts),
    jnp.stack(states) if save else none,
    jnp.stack(gates) if gates_kept else none,
  )


def _fused_backward_kernel(
  x, h0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, starts, h_reset, states, gates, d_out, d_last, *, cell, shapes, input_grad, remat
):
  """The backward target's results by the fused path's backward pass, from the same residuals:
  (dx or (0,), dh0, dw_ih, dw_hh, db_ih, db_hh, dw_hr or (0,), dh_reset or (0,))."""
  out_size, k = w_hh.shape[-1], _fused.chunk_size(x.shape[0])
  w = _weights(w_ih, w_hh, b_ih, b_hh, w_hr)
  dxs, dh0s, dws, d_resets = [], [], [], []
  for d, (x_d, h0_d, w_d, valid_d, e_d, r_d) in enumerate(
    _directions(cell, x, h0, w, mask[..., None], *_resets(starts, h_reset))
  ):
    d_out_d = d_out[..., d * out_size : (d + 1) * out_size]
    saved = None if remat else tuple(jnp.split(gates[d], _library.SAVED[cell.name], axis=-1))
    residuals = (x_d, h0_d, w_d, valid_d, _split(cell, states[d], out_size), saved, e_d, r_d)
    cotangents = (jnp.flip(d_out_d, 0) if d else d_out_d, _split(cell, d_last[d], out_size))
    dx_d, dh0_d, dw_d, _, _, d_reset_d = _fused.layer_bwd(cell, remat, k, residuals, cotangents)
    dxs.append(jnp.flip(dx_d, 0) if d else dx_d)
    dh0s.append(_join(dh0_d))
    dws.append(dw_d)
    d_resets.append(None if d_reset_d is None else _join(d_reset_d))
  dx = sum(dxs[1:], dxs[0]) if input_grad else jnp.zeros((0,), x.dtype)
  d_reset = jnp.zeros((0,), x.dtype) if d_resets[0] is None else jnp.stack(d_resets)
  dw = [jnp.stack(parts) for parts in zip(*dws, strict=True)]
  dw_hr = dw[4] if len(dw) > 4 else jnp.zeros((0,), x.dtype)
  return (dx, jnp.stack(dh0s), *dw[:4], dw_hr, d_reset)


def _kernel_primitive(cell: _cell.Cell, target: str, fused):
  """A primitive for ``cell``'s ``target`` calls: ``bind(*operands, shapes=..., dtype=..., **attributes)``."""
  name = f"{_library.prefix(cell)}_{target}"
  primitive = jax.extend.core.Primitive(name)
  primitive.multiple_results = True
  primitive.def_abstract_eval(lambda *_, shapes, dtype, **__: [jax.core.ShapedArray(s, dtype) for s in shapes])
  compiled = functools.cache(lambda params: jax.jit(functools.partial(primitive.bind, **dict(params))))
  primitive.def_impl(lambda *operands, **params: compiled(tuple(sorted(params.items())))(*operands))  # eager calls

  def on_cpu(ctx, *operands, shapes, dtype, **attributes):
    return jax.ffi.ffi_lowering(f"{name}_{_library.SUFFIX[dtype]}")(ctx, *operands, **attributes)

  def elsewhere(ctx, *operands, shapes, dtype, **attributes):
    run = functools.partial(fused, cell=cell, shapes=shapes, **attributes)
    return mlir.lower_fun(run, multiple_results=True)(ctx, *operands)

  mlir.register_lowering(primitive, on_cpu, platform="cpu")
  mlir.register_lowering(primitive, elsewhere)
  return primitive


_KERNELS = {
  (cell, target): _kernel_primitive(cell, target, _fused_backward_kernel if target == "backward" else _fused_forward_kernel)
  for cell in _library.CELLS
  for target in _library.TARGETS
}


def _call(cell: _cell.Cell, target: str, operands, shapes, **attributes):
  """``cell``'s kernel ``target`` on ``operands``, its results of ``shapes`` in x's dtype."""
  dtype = jnp.dtype(operands[0].dtype)
  return _KERNELS[cell, target].bind(*operands, shapes=tuple(map(tuple, shapes)), dtype=dtype, **attributes)


# The kernel's two calls that the custom_vjp below is made of are custom_jvp functions whose
# derivatives are the fused XLA path's: so the gradient (the custom_vjp's backward pass) can be
# differentiated again in either mode, for grad of grad, hessian (forward over reverse), ...
# The saved states and gates are functions of (x, h0, w); _grads' derivative is taken through
# (x, h0, w) alone, so the tangents that _saved gives them are never used (the gates' are zero).


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 7))
def _saved(cell, x, h0, w, valid, starts, h_reset, remat):
  """The forward pass that keeps what the backward pass needs: (out, h_last, states, gates)."""
  return _forward(cell, x, h0, w, valid, starts, h_reset, True, remat)


@_saved.defjvp
def _saved_jvp(cell, remat, primals, tangents):
  x, h0, w, valid, starts, h_reset = primals
  results = _saved(cell, x, h0, w, valid, starts, h_reset, remat)
  if starts is None:
    forward = lambda x, h0, w, h_reset: _reference_forward(cell, x, h0, w, valid, None, None)  # noqa: E731
  else:
    forward = lambda x, h0, w, h_reset: _reference_forward(cell, x, h0, w, valid, starts, h_reset)  # noqa: E731
  _, (d_out, d_last, d_states) = jax.jvp(forward, (x, h0, w, h_reset), (*tangents[:3], tangents[5]))
  return results, (d_out, d_last, d_states, jnp.zeros_like(results[3]))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 11, 12))
def _grads(cell, x, h0, w, valid, starts, h_reset, states, gates, d_out, d_last, remat, input_grad):
  """(dx, dh0, dw, dh_reset) from the kernel's backward pass (dh_reset None without resets);
  without ``input_grad`` (nothing asks for x's gradient) the kernel skips dx's product and dx is
  zeros."""

  def kernel(x, h0, w_ih, w_hh, b_ih, b_hh, w_hr, *rest):
    dx = x.shape if input_grad else (0,)
    d_reset = (0,) if starts is None else h0.shape
    shapes = [dx, h0.shape, w_ih.shape, w_hh.shape, b_ih.shape, b_hh.shape, w_hr.shape, d_reset]
    operands = (x, h0, w_ih, w_hh, b_ih, b_hh, w_hr, *rest)
    return _call(cell, "backward", operands, shapes, input_grad=input_grad, remat=remat)

  saved = (2 if states.ndim == 4 else None, 2 if gates.ndim == 4 else None)
  layout = _partition.Layout(
    _rows(starts) + saved + (1, 1),
    (1 if input_grad else None, 1, None, None, None, None, None, None if starts is None else 1),
    summed=(False, False, True, True, True, True, True, False),
  )
  dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, d_reset = _partition.per_batch_shard(kernel, layout)(
    *_operands(x, h0, w, valid, starts, h_reset), states, gates, d_out, d_last
  )
  dx = dx if input_grad else jnp.zeros_like(x)
  dw = (dw_ih, dw_hh, None if w[2] is None else db_ih, None if w[3] is None else db_hh)
  dw += (dw_hr,) if len(w) > 4 else ()
  return dx, dh0, dw, None if starts is None else d_reset


@_grads.defjvp
def _grads_jvp(cell, remat, input_grad, primals, tangents):
  x, h0, w, valid, starts, h_reset, _, _, d_out, d_last = primals
  t_x, t_h0, t_w, _, _, t_reset, _, _, t_out, t_last = tangents
  if starts is None:
    grads = lambda x, h0, w, h_reset, d_out, d_last: _reference_grads(cell, x, h0, w, valid, None, None, d_out, d_last)  # noqa: E731
  else:
    grads = lambda x, h0, w, h_reset, d_out, d_last: _reference_grads(cell, x, h0, w, valid, starts, h_reset, d_out, d_last)  # noqa: E731
  _, t_grads = jax.jvp(grads, (x, h0, w, h_reset, d_out, d_last), (t_x, t_h0, t_w, t_reset, t_out, t_last))
  return _grads(cell, *primals, remat, input_grad), t_grads


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 7))
def _layer(cell, x, h0, w, valid, starts, h_reset, remat):
  out, h_last, _, _ = _forward(cell, x, h0, w, valid, starts, h_reset, False, remat)
  return out, h_last


def _layer_fwd(cell, x, h0, w, valid, starts, h_reset, remat):
  # symbolic_zeros: each input comes with whether it is differentiated (`perturbed`). A training
  # step differentiates the weights alone: then the first layer's x needs no gradient, and the
  # kernel skips its product (its backward pass cannot know which of its results are used).
  input_grad = x.perturbed
  x, h0, w, valid, starts, h_reset = jax.custom_derivatives.custom_vjp_primal_tree_values((x, h0, w, valid, starts, h_reset))
  out, h_last, states, gates = _saved(cell, x, h0, w, valid, starts, h_reset, remat)
  residuals = (x, h0, w, valid, starts, h_reset, states, gates, () if input_grad else None)  # the flag as a tree
  return (out, h_last), residuals


def _layer_bwd(cell, remat, residuals, cotangents):
  x, h0, w, valid, starts, h_reset, states, gates, input_grad = residuals
  d_out, d_last = (
    jnp.zeros(c.aval.shape, c.aval.dtype) if isinstance(c, jax.custom_derivatives.SymbolicZero) else c for c in cotangents
  )
  grads = _grads(cell, x, h0, w, valid, starts, h_reset, states, gates, d_out, d_last, remat, input_grad is not None)
  dx, dh0, dw, d_reset = grads
  return dx if input_grad is not None else None, dh0, dw, None, None, d_reset


_layer.defvjp(_layer_fwd, _layer_bwd, symbolic_zeros=True)


def layer(
  cell: _cell.Cell,
  x: jax.Array,
  state: tuple[jax.Array, ...],
  weights: tuple[_fused.Weights, ...],
  valid: jax.Array | None,
  remat: bool,
  starts: jax.Array | None = None,
  reset_state: tuple[jax.Array, ...] | None = None,
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
  """One layer of ``cell`` on the kernel, its D directions in one call: (T, B, I), state parts
  (D, B, ·) -> (T, B, D*O), state parts; ``weights`` holds each direction's weights in torch's
  order of kinds (``w_ih, w_hh, b_ih, b_hh`` and LSTM's ``w_hr``), the second direction reverse.

  The contract of :func:`jaxgru._fused.direction` for each direction, the outputs side by side:
  with ``valid`` (T, B, 1), steps past a sequence's end keep the state and output zero; the
  reverse direction starts at each sequence's last step. With ``starts`` (T, B, 1), the steps
  where an episode starts, each direction restarts from its ``reset_state`` (parts (D, B, ·)) on
  the steps :func:`jaxgru._fused.entering` names. ``remat`` keeps only the states for the
  backward pass, which recomputes the gates chunk by chunk. Sharded, each device runs the kernel
  on its own rows (see above).
  """
  w = tuple(None if ws[0] is None else jnp.stack(ws) for ws in zip(*weights, strict=True))
  h0, h_reset = _join(state), None if reset_state is None else _join(reset_state)
  run = functools.partial(_layer, cell, remat=remat)
  sharding, batch_axes = jax.typeof(x).sharding, _batch_axes(x)
  if batch_axes is not None:  # an explicit-sharding mesh; automatic sharding is _partition's
    rows_t, P = jax.sharding.PartitionSpec(None, batch_axes), jax.sharding.PartitionSpec()
    resets = None if starts is None else rows_t
    run = jax.shard_map(
      run,
      mesh=sharding.mesh,
      in_specs=(rows_t, rows_t, P, None if valid is None else rows_t, resets, resets),
      out_specs=(rows_t, rows_t),
      check_vma=False,  # the custom call does not track which axes vary; the weights come back psummed
    )
  out, h_last = run(x, h0, w, valid, starts, h_reset)
  return out, _split(cell, h_last, w[1].shape[-1])
