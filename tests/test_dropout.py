"""Dropout between layers: its statistics, exact placement, and train/eval switching."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxgru
from jaxgru._engine import _dropout

I, H, T, B = 3, 5, 6, 4
X = jax.random.normal(jax.random.key(9), (T, B, I))


def test_dropout_mask_rate_and_scale():
  p, n = 0.3, 200_000
  y = _dropout(jnp.ones((n,)), p, jax.random.key(0))
  dropped = float(jnp.mean(y == 0))
  assert abs(dropped - p) < 4 * np.sqrt(p * (1 - p) / n)  # four standard errors
  np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / (1 - p)], rtol=1e-6)


def test_dropout_sits_between_layers_only():
  """Layer 1 sees layer 0's output with the mask drawn from fold_in(key, 0); nothing after it."""
  params = jaxgru.init_gru_params(jax.random.key(0), I, H, num_layers=2)
  key, p = jax.random.key(5), 0.4
  out, h_n = jaxgru.gru(params, X, dropout=p, dropout_key=key)
  layer0 = {k[:-3] + "_l0": v for k, v in params.items() if k.endswith("_l0")}
  layer1 = {k[:-3] + "_l0": v for k, v in params.items() if k.endswith("_l1")}
  mid, h0 = jaxgru.gru(layer0, X)
  want, h1 = jaxgru.gru(layer1, _dropout(mid, p, jax.random.fold_in(key, 0)))
  np.testing.assert_allclose(out, want, atol=1e-6)
  np.testing.assert_allclose(h_n, jnp.concatenate([h0, h1]), atol=1e-6)


def test_dropout_needs_key_and_more_than_one_layer():
  params = jaxgru.init_gru_params(jax.random.key(0), I, H, num_layers=2)
  plain = jaxgru.gru(params, X)[0]
  with pytest.raises(ValueError, match=r"pass dropout_key .*, or dropout=0.0 for evaluation"):
    jaxgru.gru(params, X, dropout=0.5)  # no key: an error, not silently no dropout (Flax's convention)
  with pytest.raises(ValueError, match=r"pass dropout_key"):  # a traced rate may be > 0
    jax.jit(lambda p: jaxgru.gru(params, X, dropout=p))(0.5)
  np.testing.assert_array_equal(jaxgru.gru(params, X, dropout=0.0)[0], plain)
  one = jaxgru.init_gru_params(jax.random.key(0), I, H)
  np.testing.assert_array_equal(jaxgru.gru(one, X, dropout=0.5, dropout_key=jax.random.key(1))[0], jaxgru.gru(one, X)[0])
  a = jaxgru.gru(params, X, dropout=0.5, dropout_key=jax.random.key(1))[0]
  b = jaxgru.gru(params, X, dropout=0.5, dropout_key=jax.random.key(2))[0]
  assert np.abs(a - plain).max() > 1e-3 and np.abs(a - b).max() > 1e-3
  np.testing.assert_array_equal(a, jaxgru.gru(params, X, dropout=0.5, dropout_key=jax.random.key(1))[0])


def test_nnx_train_eval_switching():
  model = jaxgru.GRU(I, H, num_layers=2, dropout=0.5, rngs=nnx.Rngs(0))
  plain = jaxgru.gru(model.state_dict(), X)[0]
  first, second = model(X)[0], model(X)[0]  # training by default, like torch
  assert np.abs(first - second).max() > 1e-3  # the stream advances between calls
  model.eval()
  np.testing.assert_array_equal(model(X)[0], plain)
  model.train()
  assert np.abs(model(X)[0] - plain).max() > 1e-3
  np.testing.assert_array_equal(model(X, deterministic=True)[0], plain)
  key = jax.random.key(3)
  np.testing.assert_array_equal(model(X, rngs=key)[0], jaxgru.gru(model.state_dict(), X, dropout=0.5, dropout_key=key)[0])


def test_linen_deterministic_and_dropout_collection():
  model = jaxgru.linen.GRU(I, H, num_layers=2, dropout=0.5)
  variables = model.init(jax.random.key(0), X, deterministic=True)
  plain = jaxgru.gru(variables["params"], X)[0]
  np.testing.assert_array_equal(model.apply(variables, X, deterministic=True)[0], plain)
  a = model.apply(variables, X, deterministic=False, rngs={"dropout": jax.random.key(1)})[0]
  b = model.apply(variables, X, deterministic=False, rngs={"dropout": jax.random.key(2)})[0]
  assert np.abs(a - plain).max() > 1e-3 and np.abs(a - b).max() > 1e-3
  with pytest.raises(Exception, match="deterministic"):
    model.apply(variables, X)


def test_dropout_one_zeroes_between_layers_with_zero_gradients():
  """torch accepts dropout=1.0: layer 1 then sees zeros, and nothing flows back to layer 0's output."""
  params = jaxgru.init_gru_params(jax.random.key(0), I, H, num_layers=2)
  key = jax.random.key(1)
  out, h_n = jaxgru.gru(params, X, dropout=1.0, dropout_key=key)
  layer1 = {k[:-3] + "_l0": v for k, v in params.items() if k.endswith("_l1")}
  want, _ = jaxgru.gru(layer1, jnp.zeros((T, B, H)))
  np.testing.assert_allclose(out, want, atol=1e-6)
  grads = jax.grad(lambda p, x: jaxgru.gru(p, x, dropout=1.0, dropout_key=key)[0].sum(), argnums=(0, 1))(params, X)
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
  np.testing.assert_array_equal(grads[0]["weight_ih_l0"], 0.0)
  np.testing.assert_array_equal(grads[1], 0.0)
  traced = jax.jit(lambda rate: jaxgru.gru(params, X, dropout=rate, dropout_key=key)[0])(1.0)
  np.testing.assert_allclose(traced, want, atol=1e-6)
  model = jaxgru.GRU(I, H, num_layers=2, dropout=1.0, rngs=nnx.Rngs(0))
  model.load_state_dict(params)
  np.testing.assert_allclose(model(X)[0], want, atol=1e-6)


def test_one_layer_with_dropout_warns_like_torch():
  match = r"non-zero dropout expects num_layers greater than 1, but got dropout=0.5 and num_layers=1"
  with pytest.warns(UserWarning, match=match) as nnx_record:
    jaxgru.GRU(I, H, dropout=0.5, rngs=nnx.Rngs(0))
  with pytest.warns(UserWarning, match=match) as linen_record:
    jaxgru.linen.GRU(I, H, dropout=0.5)
  assert nnx_record[0].filename == linen_record[0].filename == __file__  # points at the caller's line
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    jaxgru.GRU(I, H, num_layers=2, dropout=0.5, rngs=nnx.Rngs(0))
    jaxgru.linen.GRU(I, H, num_layers=2, dropout=0.5)
    jaxgru.GRU(I, H, rngs=nnx.Rngs(0))


def test_nnx_dropout_raised_after_construction():
  """As in torch, ``model.dropout = 0.5`` after construction takes effect in training mode."""
  model = jaxgru.GRU(I, H, num_layers=2, rngs=nnx.Rngs(0))
  plain = jaxgru.gru(model.state_dict(), X)[0]
  model.dropout = 0.5
  assert np.abs(model(X)[0] - plain).max() > 1e-3
  model.eval()
  np.testing.assert_array_equal(model(X)[0], plain)
  model.dropout = 1.5
  model.train()
  with pytest.raises(ValueError, match=r"dropout must be a float in \[0, 1\], got 1.5"):
    model(X)
  no_stream = jaxgru.GRU(I, H, num_layers=2, rngs=nnx.Rngs(params=0))  # no dropout stream: fine at dropout 0
  np.testing.assert_array_equal(no_stream(X)[0], jaxgru.gru(no_stream.state_dict(), X)[0])
  no_stream.dropout = 0.5
  with pytest.raises(ValueError, match="needs rngs"):
    no_stream(X)
  key = jax.random.key(4)
  np.testing.assert_array_equal(no_stream(X, rngs=key)[0], jaxgru.gru(no_stream.state_dict(), X, dropout=0.5, dropout_key=key)[0])
