"""impl="native" (the C++ kernel, native/gru_kernel.cc) beyond the shared grids.

The torch grid (test_torch_gru.py), several chunks with remat (test_impl.py), higher orders and
the explicit-sharding mesh (test_transforms.py) run the kernel too. Here: that CI has it, the
batch split across threads, NaN padding, vmap, remat's memory, many devices (automatic and
explicit sharding: the compiled HLO's kernel calls parsed for their rows), and bad input.
"""

from __future__ import annotations

import functools
import os
import pathlib
import shutil
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from _helpers import assert_close, compare_with_torch, needs_native, needs_set_mesh, random_torch, run_python

import jaxgru
from jaxgru import _native, _native_library

I, H = 3, 5


def test_built_where_ci_runs():
  """CI must not pass by skipping every native test: there the kernel has to be built and load."""
  if os.environ.get("CI") != "true":
    pytest.skip("only under CI=true")
  assert jaxgru.native_available(), jaxgru.native_status()


def test_without_the_kernel_everything_else_runs(tmp_path: pathlib.Path):
  """A copy of jaxgru without the built extension: native_status says why, the XLA paths run."""
  shutil.copytree(pathlib.Path(jaxgru.__file__).parent, tmp_path / "jaxgru", ignore=shutil.ignore_patterns("*.so", "*.pyd"))
  proc = run_python(
    f"""
    import sys
    sys.path.insert(0, {str(tmp_path)!r})
    import jax, jax.numpy as jnp, pytest
    import jaxgru
    assert jaxgru.__file__.startswith({str(tmp_path)!r})
    assert not jaxgru.native_available()
    assert "jaxgru/_gru_kernel is not installed: pip install needs a C++17 compiler" in jaxgru.native_status()
    params = jaxgru.init_gru_params(jax.random.key(0), 3, 4)
    out, _ = jaxgru.gru(params, jnp.ones((5, 2, 3)))
    with pytest.raises(ValueError, match="impl='native' is not available here: the extension"):
      jaxgru.gru(params, jnp.ones((5, 2, 3)), impl="native")
    print("ok")
    """
  )
  assert proc.stdout.strip().endswith("ok")


@needs_native
def test_auto_picks_the_kernel_where_it_measured_faster():
  """auto: the kernel for float32 up to AUTO_MAX_HIDDEN on the AVX-512 engine (float64, the AVX2
  and BLAS engines: AUTO_MAX_HIDDEN_BLAS), else the fused path."""

  def runs_kernel(hidden, dtype=jnp.float32, **kwargs):
    params = jaxgru.init_gru_params(jax.random.key(0), I, hidden, dtype=dtype)
    hlo = jax.jit(lambda p, x: jaxgru.gru(p, x, **kwargs)).lower(params, jnp.ones((4, 2, I), dtype)).as_text()
    return "jaxgru_forward" in hlo

  limit = _native_library.auto_max_hidden(jnp.float32)
  assert limit == (_native_library.AUTO_MAX_HIDDEN if _native_library.isa() == "avx512" else _native_library.AUTO_MAX_HIDDEN_BLAS)
  assert runs_kernel(H) and runs_kernel(limit) and not runs_kernel(limit + 1)
  with jax.enable_x64(True):
    assert _native_library.auto_max_hidden(jnp.float64) == _native_library.AUTO_MAX_HIDDEN_BLAS
    assert runs_kernel(_native_library.AUTO_MAX_HIDDEN_BLAS, jnp.float64) and not runs_kernel(
      _native_library.AUTO_MAX_HIDDEN_BLAS + 1, jnp.float64
    )
  assert not runs_kernel(H, jnp.bfloat16)
  assert not runs_kernel(H, variant="classic") and not runs_kernel(H, impl="fused")
  # the LSTM and the RNN by the same rule, each on its own targets
  x = jnp.ones((4, 2, I))
  for hidden, picked in ((H, True), (limit + 1, False)):
    lstm = jax.jit(jaxgru.lstm).lower(jaxgru.init_lstm_params(jax.random.key(0), I, hidden, proj_size=2), x).as_text()
    rnn = jax.jit(lambda p, x: jaxgru.rnn(p, x, nonlinearity="relu")).lower(
      jaxgru.init_rnn_params(jax.random.key(0), I, hidden), x
    )
    assert ("jaxgru_lstm_forward" in lstm) == picked and ("jaxgru_rnn_relu_forward" in rnn.as_text()) == picked


# Parses the kernel's calls in a compiled program's text: [(target, [operand shape, ...]), ...].
KERNEL_CALLS = r"""
def kernel_calls(hlo):
  import re
  calls = []
  for line in hlo.splitlines():
    if (target := re.search(r'custom_call_target="(jaxgru_[a-z_0-9]+)"', line)) is not None:
      operands = re.search(r"operand_layout_constraints=\{(.*?)\}, api_version", line).group(1)
      shapes = [tuple(int(d) for d in dims.split(",") if d) for dims in re.findall(r"\w+\[([\d,]*)\]", operands)]
      calls.append((target.group(1), shapes))
  return calls
"""


@needs_native
def test_one_device_runs_the_bare_kernel():
  """Without a mesh the kernel's call is the program: no partitioning wrapper is lowered."""
  params = jaxgru.init_gru_params(jax.random.key(0), I, H)
  grad = jax.jit(jax.grad(lambda p, x: jnp.sum(jaxgru.gru(p, x)[0])))
  lowered = grad.lower(params, jnp.ones((4, 2, I)))
  assert "CustomSPMDPartitioning" not in lowered.as_text()
  targets = [line for line in lowered.compile().as_text().splitlines() if "custom-call(" in line]
  assert len(targets) == 2 and "jaxgru_forward_save_f32" in targets[0] and "jaxgru_backward_f32" in targets[1]


@needs_native
def test_automatic_sharding_runs_the_kernel_on_each_devices_rows():
  """jit(in_shardings=...) over 2 devices of Auto axes, with Shardy and with GSPMD: auto runs the
  kernel on each device's 3 of the 6 rows, forward and backward, with no all-gather, and the
  outputs, h_n and gradients (params, x, h0) equal the fused path's on one device in float64.
  A batch the devices do not divide, or x sharded along I, is resharded, never wrong; the hessian
  agrees; a vmap-ed ensemble runs each member on each device's rows."""
  proc = run_python(
    KERNEL_CALLS
    + textwrap.dedent(
      """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    jax.config.update("jax_enable_x64", True)
    import jaxgru
    params = jaxgru.init_gru_params(jax.random.key(0), 4, 4, 2, bidirectional=True, dtype=jnp.float64)
    params = jax.tree.map(lambda a: a + 0.1, params)  # no zero biases
    x, h0 = jax.random.normal(jax.random.key(1), (5, 6, 4)), jax.random.normal(jax.random.key(2), (4, 6, 4))
    lengths = jnp.array([5, 1, 3, 4, 2, 5])
    mesh = Mesh(np.array(jax.devices()), ("data",))
    by_row = (None, NamedSharding(mesh, P(None, "data")), NamedSharding(mesh, P(None, "data")), NamedSharding(mesh, P("data")))

    def run(p, x, h0, lengths, impl="auto", rows=6):  # the first rows of the batch
      out, h_n = jaxgru.gru(p, x[:, :rows], h0[:, :rows], lengths=lengths[:rows], impl=impl)
      return out, h_n

    def loss(p, x, h0, lengths, impl="auto", rows=6):
      out, h_n = run(p, x, h0, lengths, impl, rows)
      return jnp.sum(jnp.sin(out)) + jnp.sum(h_n**2)

    grad = jax.grad(loss, argnums=(0, 1, 2))
    one = {f: jax.jit(f, static_argnums=(4, 5)) for f in (run, grad)}  # on one device, no sharding
    want = (one[run](params, x, h0, lengths, "fused", 6), one[grad](params, x, h0, lengths, "fused", 6))
    for shardy in (False, True):  # GSPMD, then Shardy (the default) for the rest
      jax.config.update("jax_use_shardy_partitioner", shardy)
      fns = (jax.jit(run, in_shardings=by_row), jax.jit(grad, in_shardings=by_row))
      for fn, expected in zip(fns, want):
        hlo = fn.lower(params, x, h0, lengths).compile().as_text()
        calls = kernel_calls(hlo)
        assert calls and "all-gather" not in hlo, (shardy, hlo)
        assert all(shapes[0][1] == 3 and shapes[1][1] == 3 for _, shapes in calls), calls  # x (T, B/2, I), h0 (D, B/2, H)
        got = fn(params, x, h0, lengths)
        assert max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected))) < 1e-10
      assert any(t.startswith("jaxgru_backward") for t, _ in kernel_calls(hlo)) and "all-reduce" in hlo

    # 5 of the 6 rows: Shardy shards them unevenly; the kernel must see every row once
    five = jax.jit(lambda *a: grad(*a, "auto", 5), in_shardings=by_row)
    calls = kernel_calls(five.lower(params, x, h0, lengths).compile().as_text())
    assert calls and all(shapes[0][1] == 5 for _, shapes in calls), calls
    for a, b in zip(jax.tree.leaves(five(params, x, h0, lengths)), jax.tree.leaves(one[grad](params, x, h0, lengths, "fused", 5))):
      assert float(jnp.abs(a - b).max()) < 1e-10
    # x and h0 sharded along their last axis (I, H): gathered there, the batch whole
    by_col = (None, NamedSharding(mesh, P(None, None, "data")), NamedSharding(mesh, P(None, None, "data")), None)
    cols = jax.jit(grad, in_shardings=by_col)
    assert kernel_calls(cols.lower(params, x, h0, lengths).compile().as_text())
    for a, b in zip(jax.tree.leaves(cols(params, x, h0, lengths)), jax.tree.leaves(want[1])):
      assert float(jnp.abs(a - b).max()) < 1e-10
    # forward over reverse: the kernel's derivatives are the fused path's, sharded too
    def hessian(b, x, h0, lengths, impl="auto"):
      return jax.hessian(lambda b: loss({**params, "bias_hh_l0": b}, x, h0, lengths, impl))(b)

    sharded = jax.jit(hessian, in_shardings=(None, *by_row[1:]))(params["bias_hh_l0"], x, h0, lengths)
    alone = jax.jit(hessian, static_argnums=4)(params["bias_hh_l0"], x, h0, lengths, "fused")
    assert sharded.shape == (12, 12) and float(jnp.abs(sharded - alone).max()) < 1e-10
    # an ensemble of 3 under vmap: each member on each device's rows
    stacked = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a, -a]), params)
    ensemble = jax.jit(jax.vmap(grad, in_axes=(0, None, None, None)), in_shardings=by_row)
    hlo = ensemble.lower(stacked, x, h0, lengths).compile().as_text()
    assert "all-gather" not in hlo and all(shapes[0][1] == 3 for _, shapes in kernel_calls(hlo))
    for i in range(3):
      member = one[grad](jax.tree.map(lambda a: a[i], stacked), x, h0, lengths, "fused", 6)
      got = jax.tree.map(lambda a: a[i], ensemble(stacked, x, h0, lengths))
      assert max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(member))) < 1e-10
    print("ok")
    """
    ),
    devices=2,
  )
  assert proc.stdout.strip().endswith("ok")


@needs_native
def test_sharded_training_step_runs_the_kernel_on_each_devices_rows():
  """examples/sharded_training.py on 8 simulated devices: the compiled step runs the kernel (auto,
  the default) on 16 / 8 = 2 rows per device, forward and backward, and gathers no batch."""
  proc = run_python(
    KERNEL_CALLS
    + textwrap.dedent(
      """
    import sharded_training as st
    cfg = st.Config(hidden_size=4, num_layers=2, seq_len=5, batch_size=16)
    mesh = st.make_mesh(8)
    hlo = st.train_step(cfg, mesh).lower(st.init_state(cfg, mesh), *st.global_batch(cfg, mesh, 0)).compile().as_text()
    calls = kernel_calls(hlo)
    assert {t for t, _ in calls} == {"jaxgru_forward_save_f32", "jaxgru_backward_f32"}, calls
    assert len(calls) == 4 and all(shapes[0][:2] == (5, 2) for _, shapes in calls), calls  # x: (T, B/8, I)
    assert "all-gather" not in hlo and "all-reduce" in hlo
    print("ok")
    """
    ),
    devices=8,
  )
  assert proc.stdout.strip().endswith("ok")


@needs_native
def test_batch_split_across_threads_matches_torch(precision):
  """Work enough (T B 3H (H + I) >= 2^18 multiply-adds, 50 rows) that the kernel cuts the batch into
  parts for XLA's threads, uneven ones (50 rows) where there are 3 or 4."""
  hidden, batch = 64, 50
  module = random_torch(torch.nn.GRU(I, hidden, 2, bidirectional=True), seed=3, dtype=precision.torch_dtype)
  rng = np.random.default_rng(2)
  x = rng.standard_normal((21, batch, I)).astype(precision.np_dtype)
  h0 = rng.standard_normal((4, batch, hidden)).astype(precision.np_dtype)
  lengths = rng.integers(1, 22, batch)
  compare_with_torch(module, x, h0, lengths=lengths, tol=precision.tol, impl="native")


# (cell, T, B, I, H, D, P): rows past the register tiles (13 = 8 + 5 = 2 x 6 + 1), columns past the
# panels (3H = 57), a sum over more than 1024 in blocks (3H = 1050 in the backward's dh), W_ih's
# products handed to OpenBLAS from k = 1024 (I = 1100), and a batch split across threads (50 rows,
# work >= 2^18); one direction and two (one call, the second reverse, its output in columns [O, 2O)).
# The LSTM's state rows (h, c) side by side, its projection's products (P = 7 and 20 columns, sums
# over H = 37 and 53), the RNN's one gate block.
ENGINE_SHAPES = [
  ("gru", 5, 13, 37, 19, 1, 0),
  ("gru", 3, 9, 1100, 20, 2, 0),
  ("gru", 3, 7, 4, 350, 1, 0),
  ("gru", 21, 50, 3, 64, 2, 0),
  ("lstm", 5, 13, 11, 37, 2, 7),
  ("lstm", 21, 50, 3, 53, 1, 20),
  ("lstm", 4, 9, 6, 21, 2, 0),
  ("rnn_relu", 6, 13, 5, 45, 2, 0),
]

_ENGINE_CHECK = """
import functools
import numpy as np, jax, jax.numpy as jnp
from jaxgru import _cell, _fused, _native, _native_library

CELL = {"gru": _cell.GRU(), "lstm": _cell.LSTM(), "rnn_tanh": _cell.RNN("tanh"), "rnn_relu": _cell.RNN("relu")}

def fused_layer(cell, x, state, ws, valid, remat):
  # the fused path one direction at a time, the outputs side by side: what _native.layer computes
  runs = [_fused.direction(cell, x, tuple(s[d] for s in state), w, valid, d == 1, remat) for d, w in enumerate(ws)]
  return jnp.concatenate([out for out, _ in runs], -1), tuple(jnp.stack(parts) for parts in zip(*(s for _, s in runs)))

@functools.partial(jax.jit, static_argnames=("cell", "impl", "remat"))
def layer_grads(x, state, ws, valid, *, cell="gru", impl, remat):
  run = _native.layer if impl == "native" else fused_layer
  def loss(x, state, ws):
    out, last = run(CELL[cell], x, state, ws, valid, remat)
    weights = jnp.arange(last[0].shape[0])[:, None, None]
    return jnp.sum(jnp.sin(out) * jnp.arange(out.shape[-1])) + sum(jnp.sum(s**2 * (weights + k)) for k, s in enumerate(last))
  return jax.value_and_grad(loss, argnums=(0, 1, 2))(x, state, ws)

def random_layer(rng, steps, batch, inputs, hidden, directions, dtype=jnp.float32, cell="gru", proj=0):
  # x, the state's parts (D, B, .), each direction's weights in torch's order, valid (T, B, 1)
  k = 1 / np.sqrt(hidden)  # torch's initialisation range
  G = CELL[cell].gates * hidden
  out = proj or hidden
  shapes = [(G, inputs), (G, out), (G,), (G,)] + ([(proj, hidden)] if proj else [])
  ws = tuple(tuple(jnp.asarray(rng.uniform(-k, k, s), dtype) for s in shapes) for _ in range(directions))
  x = jnp.asarray(rng.standard_normal((steps, batch, inputs)), dtype)
  state = tuple(jnp.asarray(rng.standard_normal((directions, batch, n)), dtype) for n in CELL[cell].state_sizes(hidden, proj))
  lengths = rng.integers(1, steps + 1, batch)
  valid = jnp.asarray(np.arange(steps)[:, None, None] < lengths[None, :, None])
  return x, state, ws, valid

def check(shapes):
  rng = np.random.default_rng(0)
  for k, (cell, steps, batch, inputs, hidden, directions, proj) in enumerate(shapes):
    x, state, ws, valid = random_layer(rng, steps, batch, inputs, hidden, directions, cell=cell, proj=proj)
    for remat in (False, True) if k % 2 == 0 else (False,):  # remat's products: every other shape
      got = layer_grads(x, state, ws, valid, cell=cell, impl="native", remat=remat)
      want = layer_grads(x, state, ws, valid, cell=cell, impl="fused", remat=remat)
      for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        err, scale = float(np.max(np.abs(a - b))), max(1.0, float(np.max(np.abs(b))))
        assert err <= 2e-5 * scale, (_native_library.isa(), cell, steps, batch, inputs, hidden, directions, proj, remat, err, scale)
"""
ENGINE: dict = {}
exec(_ENGINE_CHECK, ENGINE)  # noqa: S102  (the helpers that the subprocesses run too)


@needs_native
@pytest.mark.parametrize("isa", _native_library.ISAS)
def test_each_engine_matches_the_fused_path(isa):
  """Every float32 engine this CPU runs (JAXGRU_NATIVE_ISA), gradients included, against the fused
  path: the best one here, the others each in a process of its own."""
  if isa == _native_library.isa():
    ENGINE["check"](ENGINE_SHAPES)
    return
  proc = run_python(
    textwrap.dedent(f"""
    import os
    os.environ["JAXGRU_NATIVE_ISA"] = {isa!r}
    from jaxgru import _native_library
    if _native_library.native_status() is not None:
      print("unsupported:", _native_library.native_status())
      raise SystemExit
    assert _native_library.isa() == {isa!r}
    """)
    + _ENGINE_CHECK
    + f"check({ENGINE_SHAPES!r})\nprint('ok')\n"
  )
  if "unsupported:" in proc.stdout:
    pytest.skip(proc.stdout.strip())
  assert proc.stdout.strip().endswith("ok")


@needs_native
def test_an_unknown_engine_is_refused_by_name():
  """JAXGRU_NATIVE_ISA names an engine this CPU runs, or the kernel says why not (auto: fused)."""
  proc = run_python(
    """
    import os
    os.environ["JAXGRU_NATIVE_ISA"] = "sse9"
    import jax, jax.numpy as jnp, pytest
    import jaxgru
    assert "JAXGRU_NATIVE_ISA='sse9'" in jaxgru.native_status() and "avx512, avx2, blas" in jaxgru.native_status()
    params = jaxgru.init_gru_params(jax.random.key(0), 3, 4)
    with pytest.raises(ValueError, match="JAXGRU_NATIVE_ISA"):
      jaxgru.gru(params, jnp.ones((5, 2, 3)), impl="native")
    print("ok")
    """
  )
  assert proc.stdout.strip().endswith("ok")


@needs_native
@pytest.mark.parametrize("remat", [False, True])
@pytest.mark.parametrize("cell, directions, proj", [("gru", 1, 0), ("gru", 2, 0), ("lstm", 2, 3), ("rnn_tanh", 1, 0)])
def test_nan_padding_never_reaches_the_result(remat, cell, directions, proj):
  """x past each length is NaN: the kernel's outputs and gradients are those of clean padding
  (the reverse direction starts inside the padding)."""
  x, state, ws, valid = ENGINE["random_layer"](np.random.default_rng(0), 19, 10, I, H, directions, cell=cell, proj=proj)
  grads = functools.partial(ENGINE["layer_grads"], state=state, ws=ws, valid=valid, cell=cell, remat=remat)
  clean = grads(jnp.where(valid, x, 0), impl="native")
  padded = grads(jnp.where(valid, x, jnp.nan), impl="native")
  fused = grads(jnp.where(valid, x, 0), impl="fused")
  for a, b, c in zip(jax.tree.leaves(padded), jax.tree.leaves(clean), jax.tree.leaves(fused), strict=True):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)


@needs_native
def test_vmap_over_params_and_sequences():
  """An ensemble: each member equals its own run; vmap over sequences equals the batch."""
  keys = jax.random.split(jax.random.key(0), 3)
  stacked = jax.vmap(lambda k: jaxgru.init_gru_params(k, I, H, bidirectional=True))(keys)
  x = jax.random.normal(jax.random.key(1), (6, 4, I))
  lengths = jnp.array([6, 1, 3, 4])
  outs, hs = jax.jit(jax.vmap(lambda p: jaxgru.gru(p, x, lengths=lengths, impl="native")))(stacked)
  for i, k in enumerate(keys):
    out, h = jaxgru.gru(jaxgru.init_gru_params(k, I, H, bidirectional=True), x, lengths=lengths, impl="native")
    np.testing.assert_allclose(outs[i], out, atol=1e-6)
    np.testing.assert_allclose(hs[i], h, atol=1e-6)
  params = jax.tree.map(lambda a: a[0], stacked)
  v_out, _ = jax.vmap(lambda s: jaxgru.gru(params, s, impl="native"), in_axes=1, out_axes=1)(x)
  np.testing.assert_allclose(v_out, jaxgru.gru(params, x, impl="fused")[0], atol=1e-6)


@needs_native
def test_remat_keeps_only_the_states():
  """XLA's accounting of the compiled gradient: remat drops the saved gates (4H per step and row)."""
  params = jaxgru.init_gru_params(jax.random.key(0), 32, 64)
  x = jnp.ones((2000, 8, 32))

  def temp_bytes(remat):
    grad = jax.jit(jax.grad(lambda p: jnp.sum(jaxgru.gru(p, x, impl="native", remat=remat)[0])))
    return grad.lower(params).compile().memory_analysis().temp_size_in_bytes

  state_bytes = 2000 * 8 * 64 * 4
  stored, remat = temp_bytes(False), temp_bytes(True)
  assert stored >= 7 * state_bytes  # out, states, the cotangent, dx and (r, z, n, W_hn h + b_hn)
  assert remat <= 4 * state_bytes  # out, states, the output's cotangent, dx (half a state here)


@needs_native
@needs_set_mesh
def test_eight_devices_run_the_kernel_on_their_own_rows():
  """Explicit-sharding mesh of 8: gradients equal the fused path's, and no all-gather of the batch."""
  proc = run_python(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    import jaxgru
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
    params = jaxgru.init_gru_params(jax.random.key(0), 3, 4, 2, bidirectional=True)
    x = jax.random.normal(jax.random.key(1), (5, 16, 3))
    lengths = jnp.arange(16) % 5 + 1
    def loss(p, x, lengths, impl):
      out, h_n = jaxgru.gru(p, x, lengths=lengths, impl=impl)
      return jnp.sum(out**2) + jnp.sum(h_n)
    want = jax.grad(loss)(params, x, lengths, "fused")
    with jax.set_mesh(mesh):
      xs = jax.device_put(x, NamedSharding(mesh, P(None, "data")))
      ls = jax.device_put(lengths, NamedSharding(mesh, P("data")))
      grad = jax.jit(jax.grad(loss), static_argnums=3)
      got = grad(params, xs, ls, "native")
      hlo = grad.lower(params, xs, ls, "native").compile().as_text()
    assert "all-gather" not in hlo
    assert max(float(jnp.abs(got[k] - want[k]).max()) for k in params) < 1e-5
    print("ok")
    """,
    devices=8,
  )
  assert proc.stdout.strip().endswith("ok")


@pytest.mark.parametrize(
  "kwargs, dtype, match",
  [
    (dict(variant="classic"), jnp.float32, r"impl='native' implements variant='torch' only"),
    (dict(), jnp.float16, r"impl='native' computes in float32 or float64, got x of dtype float16"),
  ],
)
def test_bad_input(kwargs, dtype, match):
  params = jaxgru.init_gru_params(jax.random.key(0), I, H, dtype=dtype)
  if jaxgru.native_available() or "variant" in kwargs:
    with pytest.raises(ValueError, match=match):
      jaxgru.gru(params, jnp.ones((4, 2, I), dtype), impl="native", **kwargs)
  else:
    with pytest.raises(ValueError, match=r"impl='native' is not available here"):
      jaxgru.gru(params, jnp.ones((4, 2, I), dtype), impl="native", **kwargs)


@needs_native
def test_weights_only_gradient_skips_the_input_product():
  """Differentiated with respect to the weights alone (a training step), the first layer's
  backward call returns no dx (an empty result: its product is skipped) and the gradients equal
  the fused path's; with x differentiated too, every layer's call returns dx."""
  params = jaxgru.init_gru_params(jax.random.key(0), I, H, num_layers=2, bias=True, dtype=jnp.float32)
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape), params)
  x = jax.random.normal(jax.random.key(2), (7, 4, I))
  lengths = jnp.array([7, 3, 5, 1])

  def loss(p, x, impl):
    out, h_n = jaxgru.gru(p, x, lengths=lengths, impl=impl)
    return jnp.sum(out**2) + jnp.sum(jnp.sin(h_n))

  def dx_results(argnums):
    text = jax.jit(jax.grad(functools.partial(loss, impl="native"), argnums)).lower(params, x).as_text()
    calls = [line for line in text.splitlines() if "jaxgru_backward" in line and "->" in line]
    return [line.rsplit("-> (", 1)[1].split(",")[0] for line in calls]

  assert sorted(dx_results(0)) == ["tensor<0xf32>", f"tensor<7x4x{H}xf32>"]  # layer 2's x is layer 1's output
  assert sorted(dx_results((0, 1))) == sorted([f"tensor<7x4x{H}xf32>", f"tensor<7x4x{I}xf32>"])
  with jax.default_matmul_precision("highest"):
    got = jax.jit(jax.grad(functools.partial(loss, impl="native")))(params, x)
    want = jax.jit(jax.grad(functools.partial(loss, impl="fused")))(params, x)
  for name in params:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)


@needs_native
@pytest.mark.parametrize(
  "cell, proj, directions, resets",
  [("gru", 0, 1, False), ("gru", 0, 2, True), ("lstm", 2, 2, True), ("rnn_relu", 0, 2, True)],
)
def test_elsewhere_the_kernels_calls_lower_to_the_fused_path_with_the_same_results(x64, cell, proj, directions, resets):
  """On a GPU or TPU (or ``jax.export`` for one) each of the kernel's calls lowers to the fused
  path's equivalent (``_fused_forward_kernel``, ``_fused_backward_kernel``): on the same operands
  they give the kernel's outputs, final states and gradients, with and without remat and dx,
  lengths and episode resets in; the saved states and gates agree on every valid step (past a
  sequence's end each side keeps its own filler, read only by its own backward pass)."""
  steps, batch, inputs, hidden = 9, 5, 3, 4
  x, state, ws, valid = ENGINE["random_layer"](
    np.random.default_rng(directions), steps, batch, inputs, hidden, directions, jnp.float64, cell, proj
  )
  kernel_cell = ENGINE["CELL"][cell]
  h0 = _native._join(state)  # the kernel's state rows (D, B, W)
  w = tuple(jnp.stack(parts) for parts in zip(*ws, strict=True))
  starts = h_reset = None
  if resets:
    rng = np.random.default_rng(11)
    starts = jnp.asarray(rng.random((steps, batch, 1)) < 0.3) & valid
    h_reset = jnp.asarray(rng.standard_normal(h0.shape))
  operands = _native._operands(x, h0, w, valid, starts, h_reset)
  T, B, H, D, W, O, S = steps, batch, hidden, directions, h0.shape[-1], proj or hidden, _native_library.SAVED[kernel_cell.name]
  G = kernel_cell.gates * H
  # each direction's own order of steps: the reverse one's first is the input's last
  own = jnp.stack([valid[:, :, 0], jnp.flip(valid[:, :, 0], 0)][:D])[..., None]

  def both(target, fused, operands, shapes, **attributes):
    kernel = jax.jit(lambda *o: _native._call(kernel_cell, target, o, shapes, **attributes))(*operands)
    other = jax.jit(functools.partial(fused, cell=kernel_cell, shapes=tuple(map(tuple, shapes)), **attributes))(*operands)
    assert [a.shape for a in kernel] == [b.shape for b in other] == [tuple(s) for s in shapes]
    return kernel, other

  def close(a, b, what):
    assert_close(a, b, 1e-12, what)

  kernel, other = both("forward", _native._fused_forward_kernel, operands, [(T, B, D * O), (D, B, W), (0,), (0,)])
  close(kernel[0], other[0], "forward out")
  close(kernel[1], other[1], "forward h_last")
  rng = np.random.default_rng(7)
  d_out, d_last = jnp.asarray(rng.standard_normal((T, B, D * O))), jnp.asarray(rng.standard_normal((D, B, W)))
  for remat in (False, True):
    shapes = [(T, B, D * O), (D, B, W), (D, T, B, W), (0,) if remat else (D, T, B, S * H)]
    kernel, other = both("forward_save", _native._fused_forward_kernel, operands, shapes)
    for k, what in enumerate(["out", "h_last", "states", "gates"][: 3 if remat else 4]):
      mask = own if k >= 2 else True
      close(jnp.where(mask, kernel[k], 0), jnp.where(mask, other[k], 0), f"forward_save {what} remat={remat}")
    for input_grad in (False, True):
      shapes = [(T, B, inputs) if input_grad else (0,), (D, B, W), w[0].shape, w[1].shape, (D, G), (D, G)]
      shapes += [w[4].shape if proj else (0,), (D, B, W) if resets else (0,)]
      run = functools.partial(both, "backward", _native._fused_backward_kernel, shapes=shapes, input_grad=input_grad, remat=remat)
      got = run((*operands, *kernel[2:], d_out, d_last))[0]  # each backward pass from its own forward's residuals
      want = run((*operands, *other[2:], d_out, d_last))[1]
      names = ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh", "dw_hr", "dh_reset")
      for a, b, what in zip(got, want, names, strict=True):
        close(a, b, f"backward {what} input_grad={input_grad} remat={remat}")


@needs_native
def test_a_repeat_eager_call_compiles_nothing(caplog):
  """Outside ``jit`` each of the kernel's calls runs a compiled program kept per shape and
  attributes: the second eager call with the same shapes compiles nothing (a fresh ``jit`` per
  call had recompiled each time, 5x slower)."""
  params = jaxgru.init_gru_params(jax.random.key(0), I, H, bidirectional=True)
  x = jnp.ones((6, 2, I))
  jax.block_until_ready(jaxgru.gru(params, x, impl="native"))
  with jax.log_compiles(True), caplog.at_level("WARNING"):
    caplog.clear()
    jax.block_until_ready(jaxgru.gru(params, x, impl="native"))
  assert not [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()]
