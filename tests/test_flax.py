"""The NNX and Linen modules delegate to the functional core, and the cells keep Flax's contract."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxgru

I, H, T, B = 3, 5, 6, 4


def _x(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


def _seq_params(cell_params, suffix=""):
  return {f"{k}_l0{suffix}": v for k, v in cell_params.items()}


@pytest.mark.parametrize("variant", ["torch", "classic"])
def test_nnx_cell_in_rnn_matches_gru(variant):
  cell = jaxgru.GRUCell(I, H, variant=variant, rngs=nnx.Rngs(0))
  x = _x((B, T, I))
  h0 = _x((B, H), 1)
  carry, out = nnx.RNN(cell, return_carry=True)(x, initial_carry=h0)
  want_out, want_h = jaxgru.gru(_seq_params(cell.state_dict()), x, h0[None], batch_first=True, variant=variant)
  np.testing.assert_allclose(out, want_out, atol=1e-6)
  np.testing.assert_allclose(carry, want_h[0], atol=1e-6)


def test_nnx_cells_in_bidirectional_match_bidirectional_gru():
  fwd, bwd = jaxgru.GRUCell(I, H, rngs=nnx.Rngs(0)), jaxgru.GRUCell(I, H, rngs=nnx.Rngs(1))
  layer = nnx.Bidirectional(nnx.RNN(fwd), nnx.RNN(bwd))
  x = _x((B, T, I))
  params = _seq_params(fwd.state_dict()) | _seq_params(bwd.state_dict(), "_reverse")
  want, _ = jaxgru.gru(params, x, batch_first=True)
  np.testing.assert_allclose(layer(x), want, atol=1e-6)


def test_nnx_cell_seq_lengths_carry_matches_lengths():
  cell = jaxgru.GRUCell(I, H, rngs=nnx.Rngs(0))
  x, lengths = _x((B, T, I)), jnp.array([2, 6, 1, 4])
  carry, _ = nnx.RNN(cell, return_carry=True)(x, seq_lengths=lengths)
  _, want_h = jaxgru.gru(_seq_params(cell.state_dict()), x, batch_first=True, lengths=lengths)
  np.testing.assert_allclose(carry, want_h[0], atol=1e-6)


def test_linen_cell_in_rnn_matches_gru():
  cell = jaxgru.linen.GRUCell(I, H)
  rnn = nn.RNN(cell, return_carry=True)
  x = _x((B, T, I))
  variables = rnn.init(jax.random.key(0), x)
  carry, out = rnn.apply(variables, x)
  params = _seq_params(variables["params"]["cell"])
  want_out, want_h = jaxgru.gru(params, x, batch_first=True)
  np.testing.assert_allclose(out, want_out, atol=1e-6)
  np.testing.assert_allclose(carry, want_h[0], atol=1e-6)


def test_cells_take_several_batch_axes():
  cell = jaxgru.GRUCell(I, H, rngs=nnx.Rngs(0))
  x, h = _x((2, 3, I)), _x((2, 3, H), 1)
  new, _ = cell(h, x)
  flat = jaxgru.gru_cell(cell.state_dict(), x.reshape(6, I), h.reshape(6, H))
  np.testing.assert_allclose(new, flat.reshape(2, 3, H), atol=1e-6)
  assert cell.initialize_carry((2, 3, I)).shape == (2, 3, H)
  lcell = jaxgru.linen.GRUCell(I, H)
  variables = lcell.init(jax.random.key(0), h, x)
  np.testing.assert_allclose(
    lcell.apply(variables, h, x)[0],
    jaxgru.gru_cell(variables["params"], x.reshape(6, I), h.reshape(6, H)).reshape(2, 3, H),
    atol=1e-6,
  )


@pytest.mark.parametrize("batch_first", [False, True])
def test_nnx_and_linen_gru_match_functional(batch_first):
  kwargs = dict(num_layers=2, batch_first=batch_first, bidirectional=True)
  model = jaxgru.GRU(I, H, **kwargs, rngs=nnx.Rngs(0))
  x, h0, lengths = _x((B, T, I) if batch_first else (T, B, I)), _x((4, B, H), 1), jnp.array([6, 2, 5, 1])
  want = jaxgru.gru(model.state_dict(), x, h0, batch_first=batch_first, lengths=lengths)
  got = model(x, h0, lengths=lengths)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), got, want)

  lmodel = jaxgru.linen.GRU(I, H, **kwargs)
  variables = lmodel.init(jax.random.key(0), x, h0)
  assert set(variables["params"]) == set(model.state_dict())
  want = jaxgru.gru(variables["params"], x, h0, batch_first=batch_first, lengths=lengths)
  got = lmodel.apply(variables, x, h0, lengths=lengths)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), got, want)


def test_param_names_shapes_and_torch_init():
  model = jaxgru.GRU(I, H, num_layers=2, bidirectional=True, bias=False, rngs=nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  assert {k: v.shape for k, v in model.state_dict().items()} == jaxgru.expected_shapes(I, H, 2, False, True)
  assert len(jax.tree.leaves(params)) == 8
  bound = 1 / np.sqrt(H)
  for v in model.state_dict().values():
    assert -bound <= float(v.min()) and float(v.max()) <= bound


def test_load_state_dict_round_trip_and_strictness():
  a, b = jaxgru.GRU(I, H, 2, rngs=nnx.Rngs(0)), jaxgru.GRU(I, H, 2, rngs=nnx.Rngs(1))
  b.load_state_dict(a.state_dict())
  jax.tree.map(np.testing.assert_array_equal, a.state_dict(), b.state_dict())
  sd = dict(a.state_dict())
  sd.pop("bias_hh_l1")
  sd["weight_ih_l0"] = jnp.zeros((3 * H, I + 1))
  sd["extra"] = jnp.zeros(1)
  with pytest.raises(ValueError, match="(?s)missing key.*bias_hh_l1.*unexpected key.*extra.*weight_ih_l0"):
    b.load_state_dict(sd)


def test_nnx_training_step_under_jit_updates_every_param():
  model = jaxgru.GRU(I, H, num_layers=2, dropout=0.2, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  x, y = _x((T, B, I)), _x((T, B, H), 1)

  @nnx.jit
  def step(model, optimizer, x, y):
    def loss_fn(model):
      return jnp.mean((model(x)[0] - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  before = jax.tree.map(jnp.copy, model.state_dict())
  losses = [float(step(model, optimizer, x, y)) for _ in range(5)]
  assert losses[-1] < losses[0]
  assert all(np.abs(before[k] - v).max() > 0 for k, v in model.state_dict().items())


def test_dtype_and_param_dtype_policy():
  model = jaxgru.GRU(I, H, dtype=jnp.bfloat16, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
  assert model.weight_ih_l0[...].dtype == jnp.float32
  out, h_n = model(jnp.ones((T, B, I)))
  assert out.dtype == h_n.dtype == jnp.bfloat16
  out, h_n = jaxgru.GRU(I, H, rngs=nnx.Rngs(0))(jnp.ones((T, B, I), jnp.bfloat16))
  assert out.dtype == jnp.float32  # None promotes input and params, as Flax layers do
