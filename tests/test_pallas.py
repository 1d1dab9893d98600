"""impl="pallas": the kernels of every cell (the GRU's two variants, the LSTM with and without a
projection, the tanh and ReLU RNN) in Pallas interpret mode against the reference scan and torch,
and lowered for CUDA, ROCm and TPU without a device (so that a kernel the lowering rejects fails
here).

Interpret mode is slow to trace: shapes stay small, and every case goes through a few shared
jitted functions.
"""

from __future__ import annotations

import functools
import pathlib
import re
import subprocess
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from _helpers import assert_close, compare_with_torch, needs_set_mesh, random_torch, xla_env

import jaxgru
from jaxgru import _cell, _engine, _pallas
from jaxgru import _pallas_kernel as _kernel

I, H, P = 3, 4, 2
# The cells by the names the tests give them: "gru" (torch's), "classic" (the GRU's other
# variant), "lstm", "lstm_proj" (projected to P, or to H / 2 at hardware sizes), "rnn_tanh",
# "rnn_relu".


def _random_params(key, layers=1, bias=True, bidirectional=False, hidden=H, inputs=I, dtype=jnp.float64, cell="gru"):
  if cell.startswith("lstm"):
    proj = {"proj_size": P if hidden < 16 else hidden // 2} if cell == "lstm_proj" else {}
    params = jaxgru.init_lstm_params(key, inputs, hidden, layers, bias, bidirectional, dtype=dtype, **proj)
  elif cell.startswith("rnn"):
    params = jaxgru.init_rnn_params(key, inputs, hidden, layers, bias, bidirectional, dtype=dtype)
  else:
    params = jaxgru.init_gru_params(key, inputs, hidden, layers, bias, bidirectional, dtype=dtype)
  return {k: 0.5 * jax.random.normal(jax.random.fold_in(key, i), v.shape, v.dtype) for i, (k, v) in enumerate(params.items())}


def _run(cell, params, x, state=None, **options):
  """``(output, state parts)`` of ``cell``'s layer; ``state`` one array per part, or None."""
  if cell.startswith("lstm"):
    out, hc = jaxgru.lstm(params, x, None if state is None else tuple(state), **options)
    return out, hc
  if cell.startswith("rnn"):
    nonlinearity = cell.split("_")[1]
    out, h = jaxgru.rnn(params, x, None if state is None else state[0], nonlinearity=nonlinearity, **options)
    return out, (h,)
  variant = "classic" if cell == "classic" else "torch"
  out, h = jaxgru.gru(params, x, None if state is None else state[0], variant=variant, **options)
  return out, (h,)


def _state(cell, params, key, batch, dtype=jnp.float64):
  """A random initial state for ``params``' layers: one array per part (h, and an LSTM's c)."""
  spec = {"l": jaxgru.lstm_spec, "r": jaxgru.rnn_spec}.get(cell[0], jaxgru.gru_spec)(params)
  widths = (spec.output_size, spec.hidden_size) if cell.startswith("lstm") else (spec.hidden_size,)
  rows = spec.num_layers * spec.num_directions
  return [jax.random.normal(jax.random.fold_in(key, k), (rows, batch, w), dtype) for k, w in enumerate(widths)]


def _loss(out, h_n):
  return jnp.sum(jnp.sin(out) * jnp.arange(1, out.shape[-1] + 1)) + sum(jnp.sum(s * jnp.cos(s)) for s in jax.tree.leaves(h_n))


@functools.partial(jax.jit, static_argnames=("impl", "variant", "cell"))
def _value_and_grads(params, x, h0, lengths, *, impl, variant="torch", cell=None):
  """With ``cell`` (a cell's name), ``h0`` is a list of state parts; else a GRU's h0 (``variant``)."""

  def loss(p, x, h0):
    if cell is not None:
      out, state = _run(cell, p, x, h0, lengths=lengths, impl=impl)
      return _loss(out, state)
    return _loss(*jaxgru.gru(p, x, h0, lengths=lengths, impl=impl, variant=variant))

  return jax.value_and_grad(loss, argnums=(0, 1, 2))(params, x, h0)


@pytest.mark.parametrize(
  "steps, batch, layers, bidirectional, bias, lengths, variant",
  [
    (37, 3, 2, True, True, [37, 1, 20], "torch"),  # 3 time blocks of 16 (the last padded), ragged, 2 layers, both directions
    (16, 10, 1, False, True, None, "torch"),  # 2 batch blocks of 8 (the last padded), one whole time block
    (5, 2, 1, True, False, [2, 5], "torch"),  # no biases, one short block
    (19, 10, 2, True, True, [19, 4, 1, 16, 17, 2, 3, 5, 8, 9], "classic"),  # "reset before": 2 x 2 blocks
  ],
)
def test_matches_reference(x64, steps, batch, layers, bidirectional, bias, lengths, variant):
  """Outputs, h_n and every gradient (params, x, h0) within float64 rounding of the reference scan."""
  keys = jax.random.split(jax.random.key(steps), 3)
  params = _random_params(keys[0], layers, bias, bidirectional)
  x = jax.random.normal(keys[1], (steps, batch, I), jnp.float64)
  h0 = jax.random.normal(keys[2], (layers * (1 + bidirectional), batch, H), jnp.float64)
  lengths = None if lengths is None else jnp.array(lengths)
  want = _value_and_grads(params, x, h0, lengths, impl="reference", variant=variant)
  got = _value_and_grads(params, x, h0, lengths, impl="pallas", variant=variant)
  assert_close(got, want, 1e-11)


@pytest.mark.parametrize(
  "cell, layers, bidirectional, bias, lengths",
  [
    ("lstm_proj", 2, True, True, [19, 4, 1, 16, 17, 2, 3, 5, 8, 9]),  # h of width P, c of width H: 2 x 2 blocks
    ("lstm", 1, False, False, None),  # no projection, no biases
    ("rnn_relu", 2, True, True, [19, 4, 1, 16, 17, 2, 3, 5, 8, 9]),
    ("rnn_tanh", 1, True, False, None),
  ],
)
def test_other_cells_match_reference(x64, cell, layers, bidirectional, bias, lengths):
  """The LSTM's and the RNN's kernels: outputs, every part of the final state and every gradient
  (params, x, h0 and c0) within float64 rounding of the reference scan."""
  keys = jax.random.split(jax.random.key(19), 3)
  params = _random_params(keys[0], layers, bias, bidirectional, hidden=5, cell=cell)
  x = jax.random.normal(keys[1], (19, 10, I), jnp.float64)
  state = _state(cell, params, keys[2], 10)
  lengths = None if lengths is None else jnp.array(lengths)
  want = _value_and_grads(params, x, state, lengths, impl="reference", cell=cell)
  got = _value_and_grads(params, x, state, lengths, impl="pallas", cell=cell)
  assert_close(got, want, 1e-11)


_CELL_OF = {
  "gru": _cell.GRU("torch"),
  "classic": _cell.GRU("classic"),
  "lstm": _cell.LSTM(),
  "lstm_proj": _cell.LSTM(),
  "rnn_tanh": _cell.RNN("tanh"),
  "rnn_relu": _cell.RNN("relu"),
}


@functools.partial(jax.jit, static_argnames=("reverse", "blocks", "cell"))
def _direction_grads(x, state, w, valid, *, reverse, blocks, cell):
  def loss(x, state, w):
    if blocks is None:
      out, last = _engine._scan_direction(_CELL_OF[cell], x, state, w, valid, reverse, False)
    else:
      out, last = _pallas.direction(_CELL_OF[cell], x, state, w, valid, reverse, False, cpu_blocks=blocks)
    return _loss(out, last)

  return jax.value_and_grad(loss, argnums=(0, 1, 2))(x, state, w)


# (rows, steps): many batch and time blocks; one of each
@pytest.mark.parametrize(
  "blocks, cell",
  [((2, 3), "gru"), ((1, 1), "gru"), ((4, 64), "gru"), ((2, 3), "classic"), ((2, 3), "lstm_proj"), ((1, 1), "rnn_tanh")],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_blocks_match_reference(x64, blocks, cell, reverse):
  """One direction under several block sizes: the carry (every part of it) crosses batch and
  time blocks intact."""
  key = jax.random.key(1)
  p = _random_params(key, hidden=5 if cell.startswith("lstm") else H, cell=cell)
  w = tuple(p[k + "_l0"] for k in _CELL_OF[cell].kinds("weight_hr_l0" in p))
  x = jax.random.normal(jax.random.fold_in(key, 7), (11, 5, I), jnp.float64)
  state = tuple(s[0] for s in _state(cell, p, jax.random.fold_in(key, 8), 5))
  valid = jnp.arange(11)[:, None, None] < jnp.array([11, 4, 1, 9, 6])[None, :, None]
  want = _direction_grads(x, state, w, valid, reverse=reverse, blocks=None, cell=cell)
  got = _direction_grads(x, state, w, valid, reverse=reverse, blocks=blocks, cell=cell)
  assert_close(got, want, 1e-11)


def test_matches_torch(precision):
  """Against torch directly: 2 layers, both directions, several time blocks, ragged lengths."""
  module = random_torch(torch.nn.GRU(I, H, 2, bidirectional=True), seed=3, dtype=precision.torch_dtype)
  rng = np.random.default_rng(4)
  x = rng.standard_normal((19, 4, I)).astype(precision.np_dtype)
  h0 = rng.standard_normal((4, 4, H)).astype(precision.np_dtype)
  compare_with_torch(module, x, h0, lengths=np.array([19, 16, 1, 7]), tol=precision.tol, impl="pallas")


def test_nan_padding_stays_out():
  """NaN in x past each length changes nothing: outputs, h_n and gradients equal zero padding's."""
  params = _random_params(jax.random.key(2), bidirectional=True, dtype=jnp.float32)
  x = jax.random.normal(jax.random.key(3), (6, 3, I))
  lengths = jnp.array([6, 2, 4])
  pad = jnp.arange(6)[:, None, None] >= lengths[None, :, None]
  h0 = jnp.zeros((2, 3, H))
  clean = _value_and_grads(params, jnp.where(pad, 0.0, x), h0, lengths, impl="pallas")
  dirty = _value_and_grads(params, jnp.where(pad, jnp.nan, x), h0, lengths, impl="pallas")
  assert all(np.isfinite(a).all() for a in jax.tree.leaves(dirty))
  assert_close(dirty, clean, 0)


def test_vmap_is_an_ensemble():
  """vmap over stacked parameters and inputs equals one call per member."""
  keys = jax.random.split(jax.random.key(5), 3)
  stacked = jax.vmap(lambda k: _random_params(k, dtype=jnp.float32))(keys)
  xs = jax.random.normal(jax.random.key(6), (3, 7, 2, I))
  lengths = jnp.array([7, 3])

  def run(p, x):
    return jax.value_and_grad(lambda p: _loss(*jaxgru.gru(p, x, lengths=lengths, impl="pallas")))(p)

  got = jax.jit(jax.vmap(run))(stacked, xs)
  one = jax.jit(run)
  for m in range(3):
    member = jax.tree.map(lambda a, m=m: a[m], stacked)
    assert_close(jax.tree.map(lambda a, m=m: a[m], got), one(member, xs[m]), 1e-6)


@pytest.mark.parametrize("variant", ["torch", "classic"])
def test_second_order_matches_reference(x64, variant):
  """grad of grad: the kernels give the first derivative, their plain-JAX twins the second."""
  params = _random_params(jax.random.key(7), bidirectional=True)
  x = jax.random.normal(jax.random.key(8), (5, 2, I), jnp.float64)
  lengths = jnp.array([5, 3])

  def outer(impl):
    def loss(p):
      return _loss(*jaxgru.gru(p, x, lengths=lengths, impl=impl, variant=variant))

    return jax.jit(jax.grad(lambda p: sum(jnp.sum(g**2) for g in jax.tree.leaves(jax.grad(loss)(p)))))(params)

  assert_close(outer("pallas"), outer("reference"), 1e-10)


# The LSTM's weights drawn smaller: at the GRU's scale its gradients grow ~300x over the sequence
# and every bfloat16 path drifts from float32 maths by more than a tenth.
@pytest.mark.parametrize("cell, scale, factor", [("gru", 1.0, 3), ("lstm_proj", 0.3, 2)])
def test_bfloat16_carries_float32(cell, scale, factor):
  """bfloat16 params and input: bfloat16 products accumulated in float32, float32 carry. Against
  float32 maths on the same (rounded) numbers it is far closer than the all-bfloat16 reference
  (``factor`` times closer, at least: the LSTM carries c besides h in bfloat16 there)."""
  params = _random_params(jax.random.key(9), bidirectional=True, hidden=32, inputs=8, dtype=jnp.float32, cell=cell)
  params = jax.tree.map(lambda a: (scale * a).astype(jnp.bfloat16), params)
  x = jax.random.normal(jax.random.key(10), (30, 4, 8)).astype(jnp.bfloat16)
  h0 = [jnp.zeros((2, 4, w), jnp.bfloat16) for w in ((16, 32) if cell == "lstm_proj" else (32,))]
  lengths = jnp.array([30, 7, 1, 22])
  with jax.default_matmul_precision("highest"):
    as_float32 = jax.tree.map(lambda a: a.astype(jnp.float32), (params, x, h0))
    exact = _value_and_grads(*as_float32, lengths, impl="reference", cell=cell)
    errors = {}
    for impl in ("pallas", "reference"):
      got = _value_and_grads(params, x, h0, lengths, impl=impl, cell=cell)
      assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(got[1]))
      errors[impl] = max(
        float(jnp.max(jnp.abs(a.astype(jnp.float32) - b)) / jnp.max(jnp.abs(b)))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(exact), strict=True)
      )
  assert errors["pallas"] < 2e-2 and errors["pallas"] < errors["reference"] / factor, errors


def test_empty_batch_like_reference():
  params = _random_params(jax.random.key(0), bidirectional=True, dtype=jnp.float32)
  x = jnp.ones((3, 0, I))
  for got, want in zip(jaxgru.gru(params, x, impl="pallas"), jaxgru.gru(params, x, impl="reference"), strict=True):
    assert got.shape == want.shape and got.shape[1] == 0


_TWO_DEVICES = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
import jaxgru
params = {k: v + 0.1 for k, v in jaxgru.init_gru_params(jax.random.key(0), 3, 4, bidirectional=True).items()}
x, lengths = jax.random.normal(jax.random.key(1), (5, 4, 3)), jnp.array([5, 2, 4, 1])
def loss(p, x, lengths, impl):
  out, h_n = jaxgru.gru(p, x, lengths=lengths, impl=impl)
  return jnp.sum(out**2) + jnp.sum(h_n * jnp.arange(2.0)[:, None, None])
want = jax.grad(loss)(params, x, lengths, "reference")
mesh = jax.make_mesh((2,), ("data",), axis_types=(AxisType.Explicit,))
with jax.set_mesh(mesh), jax.default_matmul_precision("highest"):
  x = jax.device_put(x, NamedSharding(mesh, P(None, "data")))
  lengths = jax.device_put(lengths, NamedSharding(mesh, P("data")))
  got = jax.jit(jax.grad(loss), static_argnums=3)(params, x, lengths, "pallas")
for k in params:
  np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)
"""


@needs_set_mesh
def test_two_devices_sum_the_weight_gradients():
  """An explicit 2-device mesh (forced CPU devices, in a fresh process): each device runs its own
  rows and the weight gradients are summed across them, as the reference computes them whole."""
  env = xla_env(2)
  root = pathlib.Path(__file__).parent.parent
  subprocess.run([sys.executable, "-c", _TWO_DEVICES], check=True, env=env, cwd=root, timeout=600)


def test_rejects_remat_and_auto_never_picks_it():
  params = _random_params(jax.random.key(0), dtype=jnp.float32)
  x = jnp.ones((4, 2, I))
  with pytest.raises(ValueError, match="remat=True is not supported by impl='pallas'"):
    jaxgru.gru(params, x, impl="pallas", remat=True)
  assert "pallas_call" not in str(jax.make_jaxpr(lambda p: jaxgru.gru(p, x))(params))
  assert "pallas_call" in str(jax.make_jaxpr(lambda p: jaxgru.gru(p, x, impl="pallas"))(params))


_TRITON = "__gpu$xla.gpu.triton"


def _exported_kernels(platform, hidden, layers=1, steps=20, batch=5, dtype=jnp.float32, cell="gru", resets=False):
  """The custom calls of a jitted forward+backward through a bidirectional layer of ``cell`` with
  ``impl="pallas"`` lowered for ``platform`` (``lstm_proj``: P = H / 2); with ``resets``, episode
  resets and a learned reset state in."""
  params = _random_params(jax.random.key(0), layers, True, True, hidden, 16, dtype, cell)
  x = jnp.ones((steps, batch, 16), dtype)
  lengths = jnp.arange(batch) % steps + 1
  options = {}
  if resets:
    flags = (jnp.arange(steps)[:, None] + jnp.arange(batch)) % 7 == 0
    reset_state = tuple(s[:, 0] for s in _state(cell, params, jax.random.key(1), 1, dtype))
    options = {"resets": flags, "reset_state": reset_state if cell.startswith("lstm") else reset_state[0]}

  def f(p, x):
    return jax.value_and_grad(lambda p, x: _loss(*_run(cell, p, x, lengths=lengths, impl="pallas", **options)))(p, x)

  checks = [jax.export.DisabledSafetyCheck.custom_call(_TRITON)]  # Triton's call has no serialization guarantee
  exported = jax.export.export(jax.jit(f), platforms=[platform], disabled_checks=checks)(params, x)
  return re.findall(r"custom_call @([\w$.]+)", exported.mlir_module())


@pytest.mark.parametrize(
  "platform, hidden, layers, dtype, cell, kernel",
  [
    ("cuda", 128, 2, jnp.float32, "gru", _TRITON),
    ("cuda", 16, 1, jnp.bfloat16, "gru", _TRITON),
    ("cuda", 32, 1, jnp.float32, "classic", _TRITON),
    ("rocm", 64, 1, jnp.float32, "gru", _TRITON),
    ("tpu", 256, 2, jnp.float32, "gru", "tpu_custom_call"),
    ("tpu", 128, 1, jnp.bfloat16, "classic", "tpu_custom_call"),
    ("cuda", 64, 1, jnp.float32, "lstm_proj", _TRITON),
    ("cuda", 32, 1, jnp.bfloat16, "lstm", _TRITON),
    ("cuda", 16, 1, jnp.float32, "rnn_relu", _TRITON),
    ("tpu", 256, 1, jnp.float32, "lstm_proj", "tpu_custom_call"),
    ("tpu", 128, 1, jnp.bfloat16, "rnn_tanh", "tpu_custom_call"),
  ],
)
def test_lowers_for_devices(platform, hidden, layers, dtype, cell, kernel):
  """Lowered without a device: one forward and one backward kernel per layer and direction."""
  assert _exported_kernels(platform, hidden, layers, dtype=dtype, cell=cell).count(kernel) == 4 * layers


@pytest.mark.parametrize(
  "platform, hidden, cell, kernel",
  [
    ("cuda", 64, "gru", _TRITON),
    ("cuda", 32, "classic", _TRITON),
    ("tpu", 128, "gru", "tpu_custom_call"),
    ("cuda", 32, "lstm_proj", _TRITON),
    ("tpu", 128, "lstm", "tpu_custom_call"),
  ],
)
def test_lowers_for_devices_with_resets(platform, hidden, cell, kernel):
  """Episode resets keep the kernels: the flags and the reset state (each part of it) go in as
  blocks, no fallback."""
  assert _exported_kernels(platform, hidden, 2, cell=cell, resets=True).count(kernel) == 8


@pytest.mark.parametrize("blocks, cell", [((2, 3), "gru"), ((1, 1), "classic"), ((4, 64), "gru"), ((2, 3), "lstm_proj")])
def test_resets_across_blocks_match_reference(x64, blocks, cell):
  """Resets under several block sizes (many batch and time blocks, one of each), both directions,
  both GRU variants and the projected LSTM (h and c restart together), lengths in: outputs, final
  states and the gradients of the parameters, x, the initial state and the reset state."""
  key = jax.random.key(3)
  params = _random_params(key, 1, True, True, hidden=5 if cell.startswith("lstm") else H, cell=cell)
  x = jax.random.normal(jax.random.fold_in(key, 7), (11, 5, I), jnp.float64)
  h0 = _state(cell, params, jax.random.fold_in(key, 8), 5)
  reset_state = _state(cell, params, jax.random.fold_in(key, 9), 5)
  resets = jax.random.bernoulli(jax.random.fold_in(key, 10), 0.3, (11, 5)).at[0, 0].set(True)
  lengths = jnp.array([11, 4, 1, 9, 6])

  def loss(params, x, h0, reset_state, impl):
    given = tuple(reset_state) if cell.startswith("lstm") else reset_state[0]
    return _loss(*_run(cell, params, x, h0, lengths=lengths, resets=resets, reset_state=given, impl=impl))

  def grads(impl):
    return jax.value_and_grad(loss, argnums=(0, 1, 2, 3))(params, x, h0, reset_state, impl)

  with mock.patch.object(_pallas, "direction", functools.partial(_pallas.direction, cpu_blocks=blocks)):
    got = grads("pallas")
  assert_close(got, grads("reference"), 1e-11)


@pytest.mark.parametrize("platform, hidden", [("cuda", 24), ("tpu", 64)])
def test_falls_back_outside_the_plans(platform, hidden):
  """Sizes a kernel does not serve lower to the plain-JAX scans: no kernel at all."""
  assert _pallas.plan(platform, 20, 5, hidden, jnp.float32) is None
  assert not [c for c in _exported_kernels(platform, hidden, steps=3) if c in (_TRITON, "tpu_custom_call")]


def test_plans():
  assert _pallas.plan("cpu", 100, 3, 4, jnp.float64).interpret
  lstm = _kernel.LSTMSteps(proj=True)
  assert _pallas.plan("cuda", 100, 3, 128, jnp.float32, lstm, 64).steps is None  # H and P: powers of two
  assert _pallas.plan("cuda", 100, 3, 128, jnp.float32, lstm, 48) is None
  assert _pallas.plan("tpu", 100, 3, 256, jnp.float32, lstm, 128).rows == 8
  assert _pallas.plan("tpu", 100, 3, 256, jnp.float32, lstm, 64) is None  # P: whole lanes too
  assert _pallas.plan("tpu", 100, 200, 128, jnp.float32, _kernel.RNNSteps()).rows == 64
  assert _pallas.plan("cuda", 100, 3, 256, jnp.float32).steps is None  # the whole sequence in one program
  assert _pallas.plan("cuda", 100, 3, 256, jnp.float64) is None
  assert _pallas.plan("cuda", 100, 3, 512, jnp.float32) is None  # past the registers' bound
  assert (_pallas.plan("tpu", 100, 3, 512, jnp.float32).rows, _pallas.plan("tpu", 100, 3, 128, jnp.float32).rows) == (8, 8)
  assert _pallas.plan("tpu", 100, 200, 128, jnp.float32).rows == 64
  assert _pallas.plan("tpu", 100, 200, 640, jnp.float32).rows == 16  # fewer rows, so that the blocks fit VMEM
  assert _pallas.plan("tpu", 100, 3, 2048, jnp.float32) is None  # W_hh alone outgrows VMEM
