"""parity.other_jax.to_tree / from_tree against Flax's, Equinox's and Haiku's own GRU, LSTM and
simple cells, in float64 (1e-12) and float32 (1e-5): every parameter randomised, a step of the
library's cell against ``jaxgru``'s on the converted weights, both ways; the conversions traced
under ``jit`` and differentiated with ``grad``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import assert_close
from flax import linen, nnx

import jaxgru

eqx = pytest.importorskip("equinox", reason="needs the others extra")
hk = pytest.importorskip("haiku", reason="needs the others extra")
from parity import other_jax  # noqa: E402

I, H, B = 3, 5, 4
TOL = {"float64": 1e-12, "float32": 1e-5}


def _random(tree, seed):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(
    treedef, [jax.random.uniform(k, x.shape, x.dtype, -0.7, 0.7) for k, x in zip(keys, leaves, strict=True)]
  )


def _library_cell(fmt: str, dtype):
  """``(tree, step)``: a random tree of the library's cell and ``step(tree, x, state) -> new state``
  with jaxgru's state layout (h, or (h, c))."""
  x0 = jnp.zeros((B, I), dtype)
  if fmt.startswith("flax.linen."):
    cls = getattr(linen, fmt.rpartition(".")[2])
    cell = cls(features=H, param_dtype=dtype, dtype=dtype)
    lstm = "LSTM" in fmt
    carry0 = (jnp.zeros((B, H), dtype),) * (2 if lstm else 1)
    tree = _random(cell.init(jax.random.key(0), carry0 if lstm else carry0[0], x0)["params"], 1)

    def step(tree, x, state):
      if lstm:  # Flax's carry is (c, h), jaxgru's (h, c)
        (c, h), _ = cell.apply({"params": tree}, (state[1], state[0]), x)
        return h, c
      return cell.apply({"params": tree}, state, x)[0]

    return tree, step
  if fmt.startswith("flax.nnx."):
    cls = getattr(nnx, fmt.rpartition(".")[2])
    cell = cls(I, H, param_dtype=dtype, dtype=dtype, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(cell, nnx.Param)
    tree = _random(nnx.to_pure_dict(state), 2)
    lstm = "LSTM" in fmt

    def step(tree, x, hx):
      params = nnx.State(state)
      nnx.replace_by_pure_dict(params, tree)
      module = nnx.merge(graphdef, params)
      if lstm:
        (c, h), _ = module((hx[1], hx[0]), x)
        return h, c
      return module(hx, x)[0]

    return tree, step
  if fmt.startswith("equinox."):
    cls = getattr(eqx.nn, fmt.rpartition(".")[2])
    cell = cls(I, H, dtype=dtype, key=jax.random.key(0))
    fields = ("weight_ih", "weight_hh", "bias") + (("bias_n",) if "GRU" in fmt else ())
    tree = _random({f: getattr(cell, f) for f in fields}, 3)

    def step(tree, x, hx):
      module = eqx.tree_at(lambda c: tuple(getattr(c, f) for f in fields), cell, tuple(tree[f] for f in fields))
      if "LSTM" in fmt:
        return jax.vmap(module)(x, hx)
      return jax.vmap(module)(x, hx)

    return tree, step
  core = hk.GRU if fmt == "haiku.GRU" else hk.LSTM
  fn = hk.without_apply_rng(hk.transform(lambda x, s: core(H)(x, s)))
  start = jnp.zeros((B, H), dtype) if fmt == "haiku.GRU" else hk.LSTMState(jnp.zeros((B, H), dtype), jnp.zeros((B, H), dtype))
  with jax.enable_x64(dtype == jnp.float64):
    tree = _random(jax.tree.map(lambda a: a.astype(dtype), fn.init(jax.random.key(0), x0, start)), 4)

  def step(tree, x, hx):
    if fmt == "haiku.GRU":
      return fn.apply(tree, x, hx)[1]
    return tuple(fn.apply(tree, x, hk.LSTMState(*hx))[1])

  return tree, step


def _jaxgru_step(fmt: str):
  mode = other_jax.FORMATS[fmt].mode
  if mode == "GRU":
    variant = "classic" if fmt == "haiku.GRU" else "torch"
    return lambda params, x, h: jaxgru.gru_cell(params, x, h, variant=variant)
  if mode == "LSTM":
    return lambda params, x, hx: jaxgru.lstm_cell(params, x, hx)
  return lambda params, x, h: jaxgru.rnn_cell(params, x, h)


def _inputs(fmt, dtype, seed=5):
  keys = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(keys[0], (B, I), dtype)
  h = jax.random.normal(keys[1], (B, H), dtype)
  return x, ((h, jax.random.normal(keys[2], (B, H), dtype)) if other_jax.FORMATS[fmt].mode == "LSTM" else h)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fmt", sorted(other_jax.FORMATS))
def test_from_tree_computes_the_librarys_cell(fmt, dtype):
  with jax.enable_x64(dtype == "float64"), jax.default_matmul_precision("highest"):
    tree, step = _library_cell(fmt, jnp.dtype(dtype))
    x, state = _inputs(fmt, jnp.dtype(dtype))
    params = jax.jit(lambda t: other_jax.from_tree(t, fmt))(tree)
    assert all(v.dtype == jnp.dtype(dtype) for v in params.values())
    assert_close(_jaxgru_step(fmt)(params, x, state), step(tree, x, state), TOL[dtype], fmt)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fmt", sorted(f for f, v in other_jax.FORMATS.items() if v.to_tree is not None))
def test_to_tree_computes_jaxgrus_cell_and_comes_back(fmt, dtype):
  with jax.enable_x64(dtype == "float64"), jax.default_matmul_precision("highest"):
    template, step = _library_cell(fmt, jnp.dtype(dtype))
    mode = other_jax.FORMATS[fmt].mode
    init = {"GRU": jaxgru.init_gru_cell_params, "LSTM": jaxgru.init_lstm_cell_params, "RNN": jaxgru.init_rnn_cell_params}[mode]
    params = _random(init(jax.random.key(7), I, H, dtype=dtype), 8)
    tree = jax.jit(lambda p: other_jax.to_tree(p, fmt))(params)
    assert jax.tree.structure(tree) == jax.tree.structure(template)
    assert all(
      a.shape == b.shape and a.dtype == b.dtype for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(template), strict=True)
    )
    x, state = _inputs(fmt, jnp.dtype(dtype))
    assert_close(step(tree, x, state), _jaxgru_step(fmt)(params, x, state), TOL[dtype], fmt)
    back = other_jax.from_tree(tree, fmt)  # the weights bit for bit; the biases folded into one side
    assert all(np.array_equal(back[k], params[k]) for k in ("weight_ih", "weight_hh"))
    assert_close(_jaxgru_step(fmt)(back, x, state), _jaxgru_step(fmt)(params, x, state), TOL[dtype], fmt)


@pytest.mark.parametrize("fmt", sorted(other_jax.FORMATS))
def test_the_conversions_differentiate_inside_a_training_step(fmt):
  """A loss on the library's tree through jaxgru, jitted: the gradient reaches every leaf of the
  tree as the library's own cell gives it (float64)."""
  with jax.enable_x64(True), jax.default_matmul_precision("highest"):
    tree, step = _library_cell(fmt, jnp.float64)
    x, state = _inputs(fmt, jnp.float64)
    mine = _jaxgru_step(fmt)
    loss = lambda t, run: sum(jnp.sum(jnp.sin(s) * (k + 1)) for k, s in enumerate(jax.tree.leaves(run(t))))
    via_jaxgru = jax.jit(jax.grad(loss, argnums=0), static_argnums=1)(tree, lambda t: mine(other_jax.from_tree(t, fmt), x, state))
    own = jax.grad(loss)(tree, lambda t: step(t, x, state))
    assert_close(via_jaxgru, own, 1e-12, f"{fmt} gradients")


def test_refusals():
  params = jaxgru.init_gru_cell_params(jax.random.key(0), I, H)
  with pytest.raises(ValueError, match="flax.nnx.GRUCell has no b_hn"):
    other_jax.to_tree(params, "flax.nnx.GRUCell")
  with pytest.raises(ValueError, match=r"flax.linen.LSTMCell is a LSTM cell: weight_hh must have shape \(4 \* hidden_size"):
    other_jax.to_tree(params, "flax.linen.LSTMCell")
  with pytest.raises(ValueError, match="format must be one of"):
    other_jax.to_tree(params, "flax.linen.GRU")
  projected = jaxgru.init_lstm_params(jax.random.key(0), I, H, proj_size=2)
  projected = {k.removesuffix("_l0"): v for k, v in projected.items()}
  with pytest.raises(ValueError, match="projection"):
    other_jax.to_tree(projected, "equinox.nn.LSTMCell")
  with pytest.raises(ValueError, match="no entry hi/bias"):
    other_jax.from_tree({"ii": {}}, "flax.linen.LSTMCell")


def _entry_points():
  """(name, to library, library step, back): the NumPy-level entry points for each LSTM and RNN cell."""
  lin = lambda cls: lambda v, x, s: _flax_step(cls(features=H), v["params"], x, s)
  return [
    ("linen LSTMCell", "LSTM", other_jax.to_flax_linen, lin(linen.LSTMCell), other_jax.from_flax_linen),
    ("linen OptimizedLSTMCell", "LSTM", other_jax.to_flax_linen, lin(linen.OptimizedLSTMCell), other_jax.from_flax_linen),
    ("linen SimpleCell", "RNN", other_jax.to_flax_linen, lin(linen.SimpleCell), other_jax.from_flax_linen),
    ("nnx LSTMCell", "LSTM", other_jax.to_flax_nnx, _nnx_step, other_jax.from_flax_nnx),
    ("nnx OptimizedLSTMCell", "LSTM", lambda s: other_jax.to_flax_nnx(s, optimized=True), _nnx_step, other_jax.from_flax_nnx),
    ("nnx SimpleCell", "RNN", other_jax.to_flax_nnx, _nnx_step, other_jax.from_flax_nnx),
    ("equinox LSTMCell", "LSTM", other_jax.to_equinox, lambda c, x, s: jax.vmap(c)(x, s), other_jax.from_equinox),
    ("haiku LSTM", "LSTM", other_jax.to_haiku, _haiku_lstm_step, other_jax.from_haiku),
  ]


def _flax_step(cell, params, x, state):
  if isinstance(state, tuple):
    (c, h), _ = cell.apply({"params": params}, (state[1], state[0]), x)
    return h, c
  return cell.apply({"params": params}, state, x)[0]


def _nnx_step(cell, x, state):
  if isinstance(state, tuple):
    (c, h), _ = cell((state[1], state[0]), x)
    return h, c
  return cell(state, x)[0]


def _haiku_lstm_step(params, x, state):
  fn = hk.without_apply_rng(hk.transform(lambda x, s: hk.LSTM(H)(x, s)))
  return tuple(fn.apply(params, x, hk.LSTMState(*state))[1])


@pytest.mark.parametrize("entry", _entry_points(), ids=lambda e: e[0])
def test_each_libraries_lstm_and_simple_cell_both_ways_from_modules_and_torch(entry):
  _, mode, to_library, step, back = entry
  with jax.enable_x64(True), jax.default_matmul_precision("highest"):
    torch = pytest.importorskip("torch")
    import parity

    layer = {"LSTM": torch.nn.LSTMCell, "RNN": torch.nn.RNNCell}[mode](I, H).double()
    with torch.no_grad():
      for p in layer.parameters():
        p.uniform_(-0.7, 0.7)
    module = parity.from_torch(layer)
    x, state = _inputs("flax.nnx.LSTMCell" if mode == "LSTM" else "flax.nnx.SimpleCell", jnp.float64)
    own = (lambda p: jaxgru.lstm_cell(p, x, state)) if mode == "LSTM" else (lambda p: jaxgru.rnn_cell(p, x, state))
    want = own(module.state_dict())
    for source in (module, layer):  # a jaxgru module and the torch cell itself
      converted = to_library(source)
      assert_close(step(converted, x, state), want, 1e-12, "library vs jaxgru")
      params = back(converted)
      assert all(np.array_equal(params[k], module.state_dict()[k]) for k in ("weight_ih", "weight_hh"))
      assert_close(own(params), want, 1e-12, "back in jaxgru")


def test_entry_point_refusals():
  relu = jaxgru.RNNCell(I, H, nonlinearity="relu", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="flax.linen.SimpleCell computes tanh, but the source has nonlinearity='relu'"):
    other_jax.to_flax_linen(relu)
  with pytest.raises(ValueError, match="Equinox has no simple RNN cell"):
    other_jax.to_equinox(jaxgru.RNNCell(I, H, rngs=nnx.Rngs(0)))
  projected = jaxgru.LSTM(I, H, proj_size=2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="proj_size=2"):
    other_jax.to_flax_linen(projected)
  with pytest.raises(ValueError, match="num_layers=2"):
    other_jax.to_haiku(jaxgru.LSTM(I, H, num_layers=2, rngs=nnx.Rngs(0)))
  residual = nnx.SimpleCell(I, H, residual=True, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="residual=True"):
    other_jax.from_flax_nnx(residual)
  lstm = other_jax.to_haiku(jaxgru.LSTMCell(I, H, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="bias=False, but the haiku.LSTM cell has nonzero biases"):
    other_jax.from_haiku(lstm, bias=False)


def test_an_equinox_lstm_cell_without_bias_both_ways():
  cell = eqx.nn.LSTMCell(I, H, use_bias=False, key=jax.random.key(0))
  params = other_jax.from_equinox(cell)
  assert sorted(params) == ["weight_hh", "weight_ih"] and np.array_equal(params["weight_hh"], cell.weight_hh)
  back = other_jax.to_equinox(params)
  assert not back.use_bias and np.array_equal(back.weight_ih, cell.weight_ih)
  x, state = _inputs("equinox.nn.LSTMCell", jnp.float32)
  with jax.default_matmul_precision("highest"):
    assert_close(jaxgru.lstm_cell(params, x, state), jax.vmap(cell)(x, state), 1e-5, "no bias")
