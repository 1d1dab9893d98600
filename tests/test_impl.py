"""The fused path (chunked, hand-written backward) against the reference scan and torch.

The torch grid in test_torch_gru.py runs the default (fused) path on short sequences, all in
one chunk; here sequences span several chunks and a leftover tail, with and without remat.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from _helpers import compare_with_torch, needs_native, random_torch
from flax import nnx

import jaxgru
from jaxgru import _fused, _native_library

I, H, B = 3, 4, 3
NATIVE = [pytest.param("native", False, marks=needs_native), pytest.param("native", True, marks=needs_native)]


@functools.partial(jax.jit, static_argnames=("impl", "remat"))
def _value_and_grads(params, x, h0, lengths, *, impl, remat):
  def loss(p, x, h0):
    out, h_n = jaxgru.gru(p, x, h0, lengths=lengths, impl=impl, remat=remat)
    return jnp.sum(jnp.sin(out) * jnp.arange(out.shape[-1])) + jnp.sum(h_n * jnp.cos(h_n))

  return jax.value_and_grad(loss, argnums=(0, 1, 2))(params, x, h0)


def test_chunk_size():
  assert _fused.chunk_size(10) == 10  # short: one chunk
  assert _fused.chunk_size(100) == 20  # a divisor of T near 16
  assert _fused.chunk_size(10_000) == 16
  assert _fused.chunk_size(37) == 16  # no divisor in [8, 32]: whole chunks and a tail


@pytest.mark.parametrize(
  "steps, layers, bidirectional, bias, lengths",
  [
    (40, 1, False, True, None),  # two whole chunks
    (37, 2, True, True, [37, 1, 20]),  # two chunks and a tail of 5, ragged lengths
    (37, 1, True, False, None),
  ],
)
@pytest.mark.parametrize("impl, remat", [("fused", False), ("fused", True), ("reference", True), *NATIVE])
def test_impls_agree_with_reference(x64, steps, layers, bidirectional, bias, lengths, impl, remat):
  keys = jax.random.split(jax.random.key(steps), 3)
  params = jaxgru.init_gru_params(keys[0], I, H, layers, bias, bidirectional, dtype=jnp.float64)
  params = {
    k: 0.5 * jax.random.normal(jax.random.fold_in(keys[0], i), v.shape, v.dtype) for i, (k, v) in enumerate(params.items())
  }
  x = jax.random.normal(keys[1], (steps, B, I), jnp.float64)
  h0 = jax.random.normal(keys[2], (layers * (1 + bidirectional), B, H), jnp.float64)
  lengths = None if lengths is None else jnp.array(lengths)
  want = _value_and_grads(params, x, h0, lengths, impl="reference", remat=False)
  got = _value_and_grads(params, x, h0, lengths, impl=impl, remat=remat)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("impl, remat", [("fused", False), ("fused", True), ("reference", True), *NATIVE])
def test_over_chunks_matches_torch(impl, remat, precision):
  """Several chunks and a tail, ragged lengths, both directions: against torch directly."""
  module = random_torch(torch.nn.GRU(I, H, 2, bidirectional=True), seed=11, dtype=precision.torch_dtype)
  rng = np.random.default_rng(5)
  x = rng.standard_normal((37, 4, I)).astype(precision.np_dtype)
  h0 = rng.standard_normal((4, 4, H)).astype(precision.np_dtype)
  compare_with_torch(module, x, h0, lengths=np.array([37, 16, 1, 30]), tol=precision.tol, impl=impl, remat=remat)


def test_remat_bounds_backward_memory():
  """XLA's own accounting: remat's backward keeps far less than the stored gates."""
  params = jaxgru.init_gru_params(jax.random.key(0), 32, 64)
  x = jnp.ones((2000, 8, 32))

  def temp_bytes(**kwargs):
    grad = jax.jit(jax.grad(lambda p: jnp.sum(jaxgru.gru(p, x, **kwargs)[0])))
    return grad.lower(params).compile().memory_analysis().temp_size_in_bytes

  state_bytes = 2000 * 8 * 64 * 4
  fused, remat = temp_bytes(impl="fused"), temp_bytes(impl="fused", remat=True)
  assert fused >= 5 * state_bytes  # states, r, z, n and W_hn h + b_hn
  assert remat <= 3 * state_bytes < fused
  assert temp_bytes(impl="reference", remat=True) < temp_bytes(impl="reference")


def test_modules_take_impl_and_remat():
  x = jnp.ones((20, 2, I))
  model = jaxgru.GRU(I, H, 2, impl="reference", remat=True, rngs=nnx.Rngs(0))
  fused = jaxgru.GRU(I, H, 2, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(model(x)[0], fused(x)[0], atol=1e-6)
  linen = jaxgru.linen.GRU(I, H, remat=True)
  variables = linen.init(jax.random.key(0), x)
  assert linen.apply(variables, x)[0].shape == (20, 2, H)


def _exported(platforms, disabled_checks=()):
  """``jax.export`` of a 2-layer bidirectional ``jaxgru.gru`` with the default impl, from this CPU."""
  params = jaxgru.init_gru_params(jax.random.key(0), I, H, num_layers=2, bidirectional=True, dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(1), (7, B, I), jnp.float64)
  run = jax.jit(lambda params, x: jaxgru.gru(params, x, lengths=jnp.array([7, 2, 5]))[0])
  return run, params, x, jax.export.export(run, platforms=platforms, disabled_checks=disabled_checks)(params, x)


@pytest.mark.parametrize("platforms", [["cuda"], ["tpu"], ["rocm"]])
def test_auto_exports_for_an_accelerator_from_the_cpu(x64, platforms):
  """impl="auto" chooses per platform when XLA lowers: an export for a GPU or TPU holds the fused
  path, not the CPU kernel, although this process runs on the CPU with the kernel built."""
  *_, exported = _exported(platforms)
  assert exported.platforms == tuple(platforms)
  assert not any(name in exported.mlir_module() for name in _native_library.TARGET_NAMES)


@needs_native
def test_auto_exports_cpu_and_cuda_in_one_program(x64):
  """One program for the CPU and CUDA: the kernel in its CPU branch (export's custom-call check
  disabled for the kernel's targets), the fused path in the other; run back on this CPU it gives
  the reference's numbers."""
  run, params, x, exported = _exported(["cpu", "cuda"], jaxgru.export_checks())
  assert exported.platforms == ("cpu", "cuda")
  assert "jaxgru_forward_f64" in exported.mlir_module()
  back = jax.export.deserialize(exported.serialize())
  want = jaxgru.gru(params, x, lengths=jnp.array([7, 2, 5]), impl="reference")[0]
  np.testing.assert_allclose(back.call(params, x), want, rtol=1e-12, atol=1e-12)
  assert "jaxgru_forward_f64" in run.lower(params, x).as_text()  # jit on this CPU runs the kernel


@needs_native
def test_a_cpu_export_without_export_checks_is_refused_naming_the_kernel(x64):
  with pytest.raises(ValueError, match="jaxgru_forward_f64"):
    _exported(["cpu"])
  *_, exported = _exported(["cpu"], jaxgru.export_checks())
  assert "jaxgru_forward_f64" in exported.mlir_module()
