"""Output and carry dtypes, checked through jax.eval_shape (nothing is computed)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import jaxgru

DTYPES = [jnp.float32, jnp.float64, jnp.bfloat16, jnp.float16]
I, H, T, B = 3, 4, 5, 2


@pytest.fixture(autouse=True)
def _x64(x64):
  yield


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
def test_functional_dtypes(dtype):
  params = jax.eval_shape(lambda: jaxgru.init_gru_params(jax.random.key(0), I, H, 2, bidirectional=True, dtype=dtype))
  x, h0 = jax.ShapeDtypeStruct((T, B, I), dtype), jax.ShapeDtypeStruct((4, B, H), dtype)
  lengths = jax.ShapeDtypeStruct((B,), jnp.int32)
  out, h_n = jax.eval_shape(lambda p, x, h, n: jaxgru.gru(p, x, h, lengths=n), params, x, h0, lengths)
  assert (out.shape, h_n.shape) == ((T, B, 2 * H), (4, B, H))
  assert out.dtype == h_n.dtype == dtype
  cell = jax.eval_shape(lambda: jaxgru.init_gru_cell_params(jax.random.key(0), I, H, dtype=dtype))
  h = jax.eval_shape(jaxgru.gru_cell, cell, jax.ShapeDtypeStruct((B, I), dtype), jax.ShapeDtypeStruct((B, H), dtype))
  assert h.dtype == dtype and h.shape == (B, H)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("param_dtype", [jnp.float32, jnp.float64], ids=lambda d: jnp.dtype(d).name)
def test_module_dtype_policy(dtype, param_dtype):
  x = jax.ShapeDtypeStruct((T, B, I), jnp.float32)

  def nnx_run():
    model = jaxgru.GRU(I, H, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0))
    return model(jnp.zeros(x.shape, x.dtype)), model.weight_hh_l0[...]

  (out, h_n), w = jax.eval_shape(nnx_run)
  assert out.dtype == h_n.dtype == dtype and w.dtype == param_dtype

  def cell_run():
    cell = jaxgru.GRUCell(I, H, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0))
    carry = cell.initialize_carry((B, I))
    return carry, cell(carry, jnp.zeros((B, I)))[0]

  carry, new = jax.eval_shape(cell_run)
  assert carry.dtype == new.dtype == param_dtype  # computed in dtype; the carry keeps its dtype, so it scans

  model = jaxgru.linen.GRU(I, H, dtype=dtype, param_dtype=param_dtype)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  out, h_n = jax.eval_shape(model.apply, variables, x)
  assert out.dtype == h_n.dtype == dtype
  assert all(v.dtype == param_dtype for v in jax.tree.leaves(variables))
  rnn = nn.RNN(jaxgru.linen.GRUCell(I, H, dtype=dtype, param_dtype=param_dtype))
  xb = jax.ShapeDtypeStruct((B, T, I), jnp.float32)
  variables = jax.eval_shape(rnn.init, jax.random.key(0), xb)
  assert jax.eval_shape(rnn.apply, variables, xb).dtype == param_dtype
