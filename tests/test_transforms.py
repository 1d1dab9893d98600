"""jit, vmap, grad and higher-order derivatives of the functional core."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import needs_native, needs_set_mesh
from jax.test_util import check_grads

import jaxgru

I, H, T, B = 3, 4, 5, 3


def _setup(bidirectional=False, layers=1, dtype=jnp.float32):
  params = jaxgru.init_gru_params(jax.random.key(0), I, H, layers, bidirectional=bidirectional, dtype=dtype)
  x = jax.random.normal(jax.random.key(1), (T, B, I), dtype)
  return params, x


def test_jit_matches_eager():
  params, x = _setup(bidirectional=True, layers=2)
  lengths = jnp.array([5, 2, 3])
  f = jax.jit(functools.partial(jaxgru.gru, batch_first=False))
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
    f(params, x, lengths=lengths),
    jaxgru.gru(params, x, lengths=lengths),
  )


def test_vmap_over_sequences_equals_batch():
  params, x = _setup(bidirectional=True)
  out, h_n = jaxgru.gru(params, x)
  v_out, v_h = jax.vmap(lambda s: jaxgru.gru(params, s), in_axes=1, out_axes=(1, 1))(x)  # unbatched calls
  np.testing.assert_allclose(v_out, out, atol=1e-6)
  np.testing.assert_allclose(v_h, h_n, atol=1e-6)


def test_vmap_over_params_is_an_ensemble():
  keys = jax.random.split(jax.random.key(0), 3)
  stacked = jax.vmap(lambda k: jaxgru.init_gru_params(k, I, H))(keys)
  x = jax.random.normal(jax.random.key(1), (T, B, I))
  outs, _ = jax.vmap(lambda p: jaxgru.gru(p, x))(stacked)
  for i, k in enumerate(keys):
    np.testing.assert_allclose(outs[i], jaxgru.gru(jaxgru.init_gru_params(k, I, H), x)[0], atol=1e-6)


def test_vmap_with_traced_lengths():
  params, x = _setup()
  lengths = jnp.array([[5, 1, 3], [2, 2, 2]])
  outs, hs = jax.vmap(lambda n: jaxgru.gru(params, x, lengths=n))(lengths)
  for i in range(2):
    o, h = jaxgru.gru(params, x, lengths=lengths[i])
    np.testing.assert_allclose(outs[i], o, atol=1e-6)
    np.testing.assert_allclose(hs[i], h, atol=1e-6)


def test_traced_out_of_range_length_is_nan_not_wrong():
  params, x = _setup()
  out, h_n = jax.jit(lambda n: jaxgru.gru(params, x, lengths=n))(jnp.array([5, 0, 9]))
  assert np.isfinite(out[:, 0]).all() and np.isfinite(h_n[:, 0]).all()
  assert np.isnan(out[:, 1:]).all() and np.isnan(h_n[:, 1:]).all()


# The fused path is a custom_vjp: reverse mode to any order, and forward mode over it (hessian);
# forward mode straight into a jitted function needs impl="reference" (the guide "Implementations", "Autodiff").
# The reference is JAX's own autodiff of a scan: its forward mode is what only it serves, and its
# reverse mode is in the hessian below (forward over reverse).
@pytest.mark.parametrize(
  "impl, modes", [("reference", ["fwd"]), ("fused", ["rev"]), pytest.param("native", ["rev"], marks=needs_native)]
)
def test_higher_order_derivatives(x64, impl, modes):
  params, x = _setup(bidirectional=True, layers=2, dtype=jnp.float64)
  lengths = jnp.array([5, 2, 4])

  @jax.jit
  def loss(p, x, h0):
    out, h_n = jaxgru.gru(p, x, h0, lengths=lengths, impl=impl)
    return jnp.sum(out**2) + jnp.sum(jnp.sin(h_n))

  h0 = jax.random.normal(jax.random.key(2), (4, B, H), jnp.float64)
  check_grads(loss, (params, x, h0), order=2, modes=modes, atol=1e-5, rtol=1e-5)
  hess = jax.jit(jax.hessian(lambda x: loss(params, x, h0)))(x)
  assert hess.shape == x.shape * 2 and np.isfinite(hess).all()


def test_auto_impl_falls_back_to_reference_under_forward_mode(x64):
  """jax.jvp / jacfwd straight through gru() take the reference scan; reverse mode agrees."""
  params, x = _setup(bidirectional=True, layers=2, dtype=jnp.float64)
  tangent = jnp.cos(x)
  _, auto = jax.jvp(lambda x: jaxgru.gru(params, x)[0], (x,), (tangent,))
  _, reference = jax.jvp(lambda x: jaxgru.gru(params, x, impl="reference")[0], (x,), (tangent,))
  np.testing.assert_array_equal(auto, reference)
  jac = jax.jacfwd(lambda x: jaxgru.gru(params, x)[1])(x)
  np.testing.assert_allclose(jac, jax.jacrev(lambda x: jaxgru.gru(params, x)[1])(x), atol=1e-12)


@pytest.mark.parametrize("impl", ["fused", "reference", "pallas", pytest.param("native", marks=needs_native)])
@needs_set_mesh
def test_explicit_sharding_mesh(impl):
  """jax.make_mesh's explicit axes: a batch-sharded x, with dropout, lengths and the default h0."""
  from jax.sharding import AxisType, NamedSharding
  from jax.sharding import PartitionSpec as P

  mesh = jax.make_mesh((1,), ("data",), axis_types=(AxisType.Explicit,))
  params, x = _setup(bidirectional=True, layers=2)
  with jax.set_mesh(mesh):
    x = jax.device_put(x, NamedSharding(mesh, P(None, "data")))
    lengths = jax.device_put(jnp.array([5, 2, 4]), NamedSharding(mesh, P("data")))

    def loss(p, x, lengths):
      out, h_n = jaxgru.gru(p, x, lengths=lengths, dropout=0.5, dropout_key=jax.random.key(0), impl=impl)
      return jnp.sum(out**2) + jnp.sum(h_n)

    grads = jax.jit(jax.grad(loss))(params, x, lengths)
    assert jax.typeof(grads["weight_ih_l0"]).sharding.spec == P(None, None)
    with pytest.raises(ValueError, match=r"lengths must be sharded like x's batch axis \('data'\)"):
      loss(params, x, jnp.array([5, 2, 4]))
  want = jax.grad(loss)(params, np.asarray(x), np.asarray(lengths))
  for k in params:
    np.testing.assert_allclose(grads[k], want[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["forward", "grad"])
@pytest.mark.parametrize("impl", ["reference", "fused", "pallas", pytest.param("native", marks=needs_native)])
def test_a_repeat_eager_call_compiles_nothing(impl, mode, caplog):
  """Outside jit, even under jax.grad, a repeat call with the same shapes runs the programs
  compiled by the first: a lax.scan traced anew at each eager call had been compiled anew each
  time, its programs kept (an eager training loop grew until LLVM ran out of memory)."""
  params = jaxgru.init_gru_params(jax.random.key(0), I, H, num_layers=2, bidirectional=True)
  x = jax.random.normal(jax.random.key(1), (T, B, I))
  lengths = jnp.array([T, 2, 1])[:B]
  if mode == "forward":
    call = lambda: jaxgru.gru(params, x, lengths=lengths, impl=impl)
  else:
    call = lambda: jax.grad(lambda p, x: jnp.sum(jaxgru.gru(p, x, lengths=lengths, impl=impl)[0] ** 2), argnums=(0, 1))(params, x)
  jax.block_until_ready(call())
  with jax.log_compiles(True), caplog.at_level("WARNING"):
    caplog.clear()
    jax.block_until_ready(call())
  assert not [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()]
