"""Episode resets: every implementation against torch's ``nn.GRU`` run on each episode alone.

The oracle cuts every row of a rollout at its resets and runs each episode through torch's GRU
on its own, from ``h0`` or the reset state as :func:`jaxgru.gru` documents (the forward direction
starts the first episode from ``h0`` unless step 0 resets; the reverse direction starts the last
episode from ``h0``; every other episode starts from the reset state in both). Outputs, final
states and the gradients of every parameter, ``x``, ``h0`` and the reset state are compared.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from _helpers import EXPLICIT_IMPLS, IMPLS, assert_close, random_torch, torch_episodes, xla_env
from conftest import FLOAT32, FLOAT64
from flax import nnx

import jaxgru

T, B, I, H, L = 11, 4, 3, 5, 2


def rollout_flags(seed: int, steps: int = T, batch: int = B, rate: float = 0.25) -> np.ndarray:
  """(T, B) resets with the awkward cases in: a reset at step 0, two in a row, a row without any."""
  flags = np.random.default_rng(seed).random((steps, batch)) < rate
  flags[0, 0] = True
  flags[4:6, 1] = True
  flags[:, batch - 1] = False
  return flags


def loss_of(out, h_n, lib):
  return lib.sum(lib.sin(out)) + lib.sum(lib.cos(h_n))


def torch_case(seed, dtype, bidirectional, lengths):
  """The torch side: a random 2-layer GRU and rollout; returns (module, inputs, results, grads)."""
  gru = random_torch(torch.nn.GRU(I, H, num_layers=L, bidirectional=bidirectional), seed, dtype)
  D = 2 if bidirectional else 1
  gen = torch.Generator().manual_seed(seed + 1)
  x = torch.randn(T, B, I, generator=gen, dtype=dtype, requires_grad=True)
  h0 = torch.randn(L * D, B, H, generator=gen, dtype=dtype, requires_grad=True)
  reset_state = torch.randn(L * D, B, H, generator=gen, dtype=dtype, requires_grad=True)
  resets = rollout_flags(seed)
  out, (h_n,) = torch_episodes(gru, x, (h0,), resets, (reset_state,), lengths)
  loss_of(out, h_n, torch).backward()
  grads = {name: p.grad for name, p in gru.named_parameters()}
  grads.update(x=x.grad, h0=h0.grad, reset_state=reset_state.grad)
  inputs = {"x": x, "h0": h0, "reset_state": reset_state}
  return gru, {k: v.detach().numpy() for k, v in inputs.items()}, resets, (out, h_n), grads


def jax_run(gru, inputs, resets, lengths, impl, **options):
  params = {name: jnp.asarray(p.detach().numpy()) for name, p in gru.named_parameters()}

  def loss(params, x, h0, reset_state):
    out, h_n = jaxgru.gru(params, x, h0, resets=resets, reset_state=reset_state, lengths=lengths, impl=impl, **options)
    return loss_of(out, h_n, jnp), (out, h_n)

  grad = jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True)
  (g_params, g_x, g_h0, g_reset), results = grad(params, *(jnp.asarray(v) for v in inputs.values()))
  return results, {**g_params, "x": g_x, "h0": g_h0, "reset_state": g_reset}


# float64 proves the maths in every configuration; float32 the kernels, in the fullest one
CASES = [(FLOAT64, bi, lengths) for bi in (False, True) for lengths in (False, True)] + [(FLOAT32, True, True)]


@pytest.mark.parametrize("impl", EXPLICIT_IMPLS)
@pytest.mark.parametrize(
  "precision, bidirectional, with_lengths",
  CASES,
  ids=[f"{p.name}-{'bi' if b else 'uni'}-{'lengths' if n else 'full'}" for p, b, n in CASES],
)
def test_every_impl_equals_torch_run_episode_by_episode(precision, impl, bidirectional, with_lengths):
  """Outputs, final states and every gradient (parameters, x, h0, reset state) equal torch's GRU
  run on each episode alone: float64 to 1e-10 (the maths), float32 to 1e-5 (the kernels)."""
  with jax.enable_x64(precision is FLOAT64), jax.default_matmul_precision("highest"):
    _check_against_torch(precision, impl, bidirectional, with_lengths)


def _check_against_torch(precision, impl, bidirectional, with_lengths):
  lengths = np.array([T, 7, T - 1, 4]) if with_lengths else None
  gru, inputs, resets, (out, h_n), grads = torch_case(3, precision.torch_dtype, bidirectional, lengths)
  (got_out, got_h_n), got_grads = jax_run(
    gru, inputs, jnp.asarray(resets), None if lengths is None else jnp.asarray(lengths), impl
  )
  assert_close(got_out, out, precision.tol, "output")
  assert_close(got_h_n, h_n, precision.tol, "h_n")
  assert set(got_grads) == set(grads)
  for name, want in grads.items():
    assert_close(got_grads[name], want, precision.tol, f"d{name}")


@pytest.mark.parametrize("impl", EXPLICIT_IMPLS)
def test_a_reset_stops_the_gradient_exactly(x64, impl):
  """After a reset no output depends on an earlier step: those Jacobian entries are exactly zero
  (not small), for x and h0; the reset state's own gradient is not."""
  params = jaxgru.init_gru_params(jax.random.key(0), I, H, num_layers=2, dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(1), (T, 2, I), jnp.float64)
  h0 = jax.random.normal(jax.random.key(2), (2, 2, H), jnp.float64)
  resets = jnp.zeros((T, 2), bool).at[6, 0].set(True)

  def last_output(x, h0, reset_state):
    out, _ = jaxgru.gru(params, x, h0, resets=resets, reset_state=reset_state, impl=impl)
    return out[-1]

  reset_state = jnp.full((2, H), 0.3)
  d_x, d_h0, d_reset = jax.jacrev(last_output, argnums=(0, 1, 2))(x, h0, reset_state)
  assert np.all(np.asarray(d_x)[:, :, :6, 0] == 0.0)  # row 0 before its reset: exactly nothing
  assert np.all(np.asarray(d_h0)[:, :, :, 0] == 0.0)
  assert np.any(np.asarray(d_x)[:, :, 6:, 0] != 0.0)  # after it, and all of row 1: something
  assert np.any(np.asarray(d_x)[:, :, :, 1] != 0.0) and np.any(np.asarray(d_h0)[:, :, :, 1] != 0.0)
  assert np.any(np.asarray(d_reset) != 0.0)


@pytest.mark.parametrize("impl", EXPLICIT_IMPLS)
def test_no_flag_set_is_the_same_as_no_resets(x64, impl):
  params = jaxgru.init_gru_params(jax.random.key(0), I, H, num_layers=2, bidirectional=True, dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(1), (T, B, I), jnp.float64)
  plain = jaxgru.gru(params, x, impl=impl)
  flagged = jaxgru.gru(params, x, resets=jnp.zeros((T, B), bool), reset_state=jnp.ones((4, H)), impl=impl)
  for a, b in zip(plain, flagged, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def _reference_of(f, impl):
  """f(impl) and f("reference"), both as lists of leaves."""
  return jax.tree.leaves(f(impl)), jax.tree.leaves(f("reference"))


def _grads(params, x, h0, resets, reset_state, impl, **options):
  def loss(params, x, h0, reset_state):
    out, h_n = jaxgru.gru(params, x, h0, resets=resets, reset_state=reset_state, impl=impl, **options)
    return loss_of(out, h_n, jnp), (out, h_n)

  return jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(params, x, h0, reset_state)


@pytest.fixture
def rollout(x64):
  params = jaxgru.init_gru_params(jax.random.key(0), I, H, num_layers=2, bidirectional=True, dtype=jnp.float64)
  params = {k: v + 0.1 * jax.random.normal(jax.random.key(len(k)), v.shape, v.dtype) for k, v in params.items()}
  x = jax.random.normal(jax.random.key(1), (T, B, I), jnp.float64)
  h0 = jax.random.normal(jax.random.key(2), (4, B, H), jnp.float64)
  return params, x, h0, jnp.asarray(rollout_flags(5)), jax.random.normal(jax.random.key(3), (4, H), jnp.float64)


@pytest.mark.parametrize("impl", IMPLS)
def test_batch_first_unbatched_jit_and_remat_compose(rollout, impl):
  params, x, h0, resets, reset_state = rollout
  want = jaxgru.gru(params, x, h0, resets=resets, reset_state=reset_state, impl="reference")
  first = jaxgru.gru(params, x.swapaxes(0, 1), h0, batch_first=True, resets=resets.T, reset_state=reset_state, impl=impl)
  np.testing.assert_allclose(first[0].swapaxes(0, 1), want[0], atol=1e-12)
  np.testing.assert_allclose(first[1], want[1], atol=1e-12)
  one = jaxgru.gru(params, x[:, 1], h0[:, 1], resets=resets[:, 1], reset_state=reset_state, impl=impl)
  np.testing.assert_allclose(one[0], want[0][:, 1], atol=1e-12)
  np.testing.assert_allclose(one[1], want[1][:, 1], atol=1e-12)
  jitted = jax.jit(functools.partial(_grads, impl=impl))(params, x, h0, resets, reset_state)
  for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(_grads(params, x, h0, resets, reset_state, "reference")), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-11)
  if impl != "pallas":  # pallas has no remat
    remat = _grads(params, x, h0, resets, reset_state, impl, remat=True)
    for a, b in zip(jax.tree.leaves(remat), jax.tree.leaves(jitted), strict=True):
      np.testing.assert_allclose(a, b, atol=1e-11)


@pytest.mark.parametrize("impl", [i for i in IMPLS if (i.values[0] if hasattr(i, "values") else i) != "reference"])
def test_vmap_and_dropout_compose(rollout, impl):
  """vmap over rollouts (flags and reset states per member) equals a loop; with dropout between
  the layers every impl draws the same masks as the reference and agrees with it."""
  params, x, h0, resets, reset_state = rollout
  xs = jnp.stack([x, -x])
  flags = jnp.stack([resets, jnp.roll(resets, 3, axis=0)])
  states = jnp.stack([reset_state, 2 * reset_state])
  run = lambda x, r, s: jaxgru.gru(params, x, h0, resets=r, reset_state=s, impl=impl)  # noqa: E731
  batched = jax.vmap(run)(xs, flags, states)
  for k in range(2):
    for a, b in zip(batched, run(xs[k], flags[k], states[k]), strict=True):
      np.testing.assert_allclose(a[k], b, atol=1e-12)
  key = jax.random.key(9)
  got, want = _reference_of(lambda i: _grads(params, x, h0, resets, reset_state, i, dropout=0.4, dropout_key=key), impl)
  for a, b in zip(got, want, strict=True):
    np.testing.assert_allclose(a, b, atol=1e-11)


def test_the_reset_state_is_shared_or_per_row_and_zero_by_default(rollout):
  params, x, h0, resets, reset_state = rollout
  shared = jaxgru.gru(params, x, h0, resets=resets, reset_state=reset_state)
  per_row = jaxgru.gru(params, x, h0, resets=resets, reset_state=jnp.broadcast_to(reset_state[:, None], h0.shape))
  zero = jaxgru.gru(params, x, h0, resets=resets)
  explicit_zero = jaxgru.gru(params, x, h0, resets=resets, reset_state=jnp.zeros((4, H)))
  for a, b in zip(shared + zero, per_row + explicit_zero, strict=True):
    np.testing.assert_allclose(a, b, atol=1e-13)


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    ({"resets": np.zeros((B, T), bool)}, ValueError, r"resets must have shape \(T, B\) = \(11, 4\)"),
    ({"resets": np.zeros((T, B), np.int32)}, TypeError, "resets must be a boolean array"),
    ({"resets": np.zeros((T, B), bool), "reset_state": np.zeros((2, H))}, ValueError, r"reset_state must have shape \(4, 5\)"),
    ({"resets": np.zeros((T, B), bool), "reset_state": np.zeros((4, H), np.float32)}, TypeError, "reset_state has dtype"),
    ({"reset_state": np.zeros((4, H))}, ValueError, "reset_state .* needs resets"),
    ({"resets": "yes"}, TypeError, "resets must be an array"),
  ],
)
def test_bad_resets_are_clear_errors(rollout, kwargs, error, match):
  params, x, h0, _, _ = rollout
  with pytest.raises(error, match=match):
    jaxgru.gru(params, x, h0, **kwargs)


def test_resets_follow_x_layout(rollout):
  params, x, h0, _, _ = rollout
  with pytest.raises(ValueError, match=r"resets must have shape \(B, T\) with batch_first = \(4, 11\)"):
    jaxgru.gru(params, x.swapaxes(0, 1), h0, batch_first=True, resets=np.zeros((T, B), bool))
  with pytest.raises(ValueError, match=r"resets must have shape \(T,\) for unbatched x = \(11,\)"):
    jaxgru.gru(params, x[:, 0], h0[:, 0], resets=np.zeros((T, 1), bool))
  with pytest.raises(ValueError, match=r"reset_state must have shape \(4, 5\) \(one state per layer and direction\), got"):
    jaxgru.gru(params, x[:, 0], h0[:, 0], resets=np.zeros((T,), bool), reset_state=np.zeros((4, 1, H)))


def test_the_flax_modules_take_resets(rollout):
  """NNX and Linen GRUs pass resets and the reset state through (a learned reset state: a
  parameter of the enclosing model, with a gradient)."""
  params, x, h0, resets, reset_state = rollout
  want = jaxgru.gru(params, x, h0, resets=resets, reset_state=reset_state)

  model = jaxgru.GRU(I, H, num_layers=2, bidirectional=True, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
  model.load_state_dict(params)
  got = model(x, h0, resets=resets, reset_state=reset_state)
  for a, b in zip(got, want, strict=True):
    np.testing.assert_allclose(a, b, atol=1e-12)

  class Policy(nnx.Module):
    def __init__(self):
      self.gru = model
      self.reset_state = nnx.Param(reset_state)

    def __call__(self, x, resets):
      return self.gru(x, resets=resets, reset_state=self.reset_state[...])[0]

  policy = Policy()
  grads = nnx.grad(lambda m: jnp.sum(m(x, resets) ** 2))(policy)
  assert np.any(np.asarray(grads.reset_state[...]) != 0)

  linen = jaxgru.linen.GRU(input_size=I, hidden_size=H, num_layers=2, bidirectional=True, param_dtype=jnp.float64)
  got = linen.apply({"params": params}, x, h0, resets=resets, reset_state=reset_state)
  for a, b in zip(got, want, strict=True):
    np.testing.assert_allclose(a, b, atol=1e-12)
  assert isinstance(linen, nn.Module)


def test_sharded_batch_with_resets_matches_one_device():
  """On 2 simulated devices with the batch sharded (automatic and explicit sharding), resets give
  one device's outputs and gradients: the native kernel (``auto`` on the CPU, partitioned along
  the batch) and Pallas (one call per shard), the two that split their calls by rows."""
  code = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    import jaxgru
    jax.config.update("jax_enable_x64", True)
    assert jax.device_count() == 2
    params = jaxgru.init_gru_params(jax.random.key(0), 3, 5, num_layers=2, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (9, 4, 3), jnp.float64)
    resets = jax.random.bernoulli(jax.random.key(2), 0.3, (9, 4))
    reset_state = jax.random.normal(jax.random.key(3), (2, 5), jnp.float64)
    impls = ["auto", "pallas"]  # auto: the native kernel, partitioned per device; pallas: per shard
    def loss(params, x, reset_state, impl):
      out, h_n = jaxgru.gru(params, x, resets=resets, reset_state=reset_state, impl=impl)
      return jnp.sum(jnp.sin(out)) + jnp.sum(h_n ** 2)
    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    want = run(params, x, reset_state, "reference")
    def check(impl, *args):
      got = run(*args, impl)
      err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)))
      assert err < 1e-11, (impl, err)
    P = jax.sharding.PartitionSpec
    auto = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    for impl in impls:  # automatic sharding: x's rows on two devices, the flags replicated
      check(impl, params, jax.device_put(x, jax.sharding.NamedSharding(auto, P(None, "data"))), reset_state)
    if hasattr(jax, "set_mesh"):  # an explicit-sharding mesh: the flags sharded like x's rows
      explicit = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
      with jax.set_mesh(explicit):
        resets = jax.device_put(resets, P(None, "data"))
        for impl in impls:
          check(impl, params, jax.device_put(x, P(None, "data")), reset_state)
    print("ok")
    """
  )
  env = xla_env(2)
  proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
