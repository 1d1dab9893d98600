"""parity.other_jax against each library's own forward pass: Flax Linen's and NNX's GRUCell,
Equinox's GRUCell and Haiku's hk.GRU (the classic variant); what folding the biases does to
gradients; and the refusals where the target cannot compute the source's GRU."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxgru
import parity
from parity import _arrays, other_jax

I, H, B = 3, 4, 2
TOL = 1e-12  # float64: the folded bias sums round once, so equal up to the last bits


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True), jax.default_matmul_precision("highest"):
    yield


def random_tree(tree: Any, seed: int) -> Any:
  """Every array leaf redrawn from U(-0.6, 0.6): the libraries initialise their biases to zero."""
  leaves, treedef = jax.tree.flatten(tree)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(treedef, [jnp.asarray(rng.uniform(-0.6, 0.6, leaf.shape), leaf.dtype) for leaf in leaves])


def random_params(seed: int = 0, bias: bool = True, dtype=jnp.float64) -> dict[str, jax.Array]:
  return random_tree(jaxgru.init_gru_cell_params(jax.random.key(0), I, H, bias=bias, dtype=dtype), seed)


def inputs(seed: int = 1) -> tuple[jax.Array, jax.Array]:
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.standard_normal((B, I))), jnp.asarray(rng.standard_normal((B, H)))


def _linen_forward(variables, x, h):
  return nn.GRUCell(features=H).apply(variables, h, x)[0]


def _nnx_forward(cell, x, h):
  return cell(h, x)[0]


def _eqx_forward(cell, x, h):
  return jax.vmap(cell)(x, h)


_haiku = hk.without_apply_rng(hk.transform(lambda x, h: hk.GRU(H)(x, h)[0]))


def _haiku_forward(params, x, h):
  return _haiku.apply(params, x, h)


def _linen_native(seed):
  return random_tree(
    nn.GRUCell(features=H, param_dtype=jnp.float64).init(jax.random.key(0), jnp.zeros((B, H)), jnp.zeros((B, I))), seed
  )


def _nnx_native(seed):
  cell = nnx.GRUCell(I, H, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
  nnx.update(cell, random_tree(nnx.state(cell, nnx.Param), seed))
  return cell


def _eqx_native(seed, use_bias=True):
  cell = eqx.nn.GRUCell(I, H, use_bias=use_bias, dtype=jnp.float64, key=jax.random.key(0))
  arrays, static = eqx.partition(cell, eqx.is_array)
  return eqx.combine(random_tree(arrays, seed), static)


def _haiku_native(seed):
  return random_tree(_haiku.init(jax.random.key(0), jnp.zeros((B, I)), jnp.zeros((B, H))), seed)


@dataclasses.dataclass(frozen=True)
class Library:
  name: str
  to: Callable
  from_: Callable
  forward: Callable  # (converted, x, h) -> h_new, by the library's own code
  native: Callable  # seed -> the library's own randomised cell or params
  variant: str = "torch"
  folded: tuple[str, ...] = ("r", "z")  # the gates whose two biases the library holds as one


LIBRARIES = [
  Library("flax.linen", other_jax.to_flax_linen, other_jax.from_flax_linen, _linen_forward, _linen_native),
  Library("flax.nnx", other_jax.to_flax_nnx, other_jax.from_flax_nnx, _nnx_forward, _nnx_native),
  Library("equinox", other_jax.to_equinox, other_jax.from_equinox, _eqx_forward, _eqx_native),
  Library("haiku", other_jax.to_haiku, other_jax.from_haiku, _haiku_forward, _haiku_native, "classic", ("r", "z", "n")),
]
by_name = pytest.mark.parametrize("lib", LIBRARIES, ids=lambda lib: lib.name)


def jaxgru_forward(params, x, h, variant):
  return jaxgru.gru_cell(params, x, h, variant=variant)


def without_b_hn(params):
  return params | {"bias_hh": params["bias_hh"].at[2 * H :].set(0.0)}


def max_diff(a, b) -> float:
  return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


@by_name
def test_to_library_matches_its_own_forward(lib):
  params = random_params()
  if lib.name == "flax.nnx":
    params = without_b_hn(params)  # NNX cannot hold b_hn (refusal tested below)
  x, h = inputs()
  converted = lib.to(params, variant=lib.variant)
  assert max_diff(lib.forward(converted, x, h), jaxgru_forward(params, x, h, lib.variant)) < TOL


@by_name
def test_from_library_matches_its_own_forward_and_round_trips_bit_exactly(lib):
  native = lib.native(seed=3)
  x, h = inputs()
  params = lib.from_(native)
  assert set(params) == set(other_jax.CELL_KEYS)
  assert max_diff(jaxgru_forward(params, x, h, lib.variant), lib.forward(native, x, h)) < TOL
  back = lib.to(params, variant=lib.variant)  # b_h of the folded gates is 0: b_i + 0 keeps every bit
  assert max_diff(lib.forward(back, x, h), lib.forward(native, x, h)) == 0
  want = jax.tree.leaves(native if not isinstance(native, nnx.Module) else nnx.state(native, nnx.Param))
  got = jax.tree.leaves(back if not isinstance(back, nnx.Module) else nnx.state(back, nnx.Param))
  assert len(got) == len(want) and all(_arrays.same_bits(g, w) for g, w in zip(got, want, strict=True))


@by_name
def test_modules_and_gru_layers_convert_too(lib):
  params = random_params(bias=False)
  x, h = inputs()
  cell = parity.module_from_params(params, variant=lib.variant)
  assert max_diff(lib.forward(lib.to(cell), x, h), cell(h, x)[0]) < TOL
  layer = {k + "_l0": v for k, v in params.items()}  # a one-layer torch.nn.GRU's keys
  assert max_diff(lib.forward(lib.to(layer, variant=lib.variant), x, h), cell(h, x)[0]) < TOL
  linen = jaxgru.linen.GRUCell(I, H, bias=False, variant=lib.variant)
  assert max_diff(lib.forward(lib.to(linen, {"params": params}), x, h), cell(h, x)[0]) < TOL


@by_name
def test_dtypes_are_kept(lib):
  for dtype in (jnp.float32, jnp.bfloat16):
    params = random_params(dtype=dtype)
    if lib.name == "flax.nnx":
      params = without_b_hn(params)
    converted = lib.to(params, variant=lib.variant)
    assert {leaf.dtype for leaf in jax.tree.leaves(nnx.state(converted) if lib.name == "flax.nnx" else converted)} == {
      jnp.dtype(dtype)
    }
    assert {v.dtype for v in lib.from_(converted).values()} == {jnp.dtype(dtype)}


@by_name
def test_folded_biases_train_differently(lib):
  """Forward is the same, but the gradient of the library's one folded bias reaches *each* of
  jaxgru's two biases in full: an SGD step moves jaxgru's effective bias b_i + b_h twice as far."""
  params = random_params()
  if lib.name == "flax.nnx":
    params = without_b_hn(params)
  x, h = inputs()
  target = jnp.asarray(np.random.default_rng(5).standard_normal((B, H)))
  converted = lib.to(params, variant=lib.variant)

  def loss_jaxgru(p):
    return jnp.sum((jaxgru_forward(p, x, h, lib.variant) - target) ** 2)

  def loss_library(c):
    return jnp.sum((lib.forward(c, x, h) - target) ** 2)

  if lib.name == "flax.nnx":
    graphdef, state = nnx.split(converted)
    g_lib = jax.grad(lambda s: loss_library(nnx.merge(graphdef, s)))(state)
  else:
    g_lib = eqx.filter_grad(loss_library)(converted) if lib.name == "equinox" else jax.grad(loss_library)(converted)
  g = jax.grad(loss_jaxgru)(params)
  assert abs(float(loss_jaxgru(params)) - float(loss_library(converted))) < TOL

  gates = {"r": slice(0, H), "z": slice(H, 2 * H), "n": slice(2 * H, 3 * H)}
  folded_lib = {
    "flax.linen": lambda gate: g_lib["params"]["i" + gate]["bias"],
    "flax.nnx": lambda gate: g_lib["dense_i"]["bias"][...][gates[gate]],
    "equinox": lambda gate: g_lib.bias[gates[gate]],
    "haiku": lambda gate: g_lib["gru"]["b"][{"z": slice(0, H), "r": slice(H, 2 * H), "n": slice(2 * H, 3 * H)}[gate]],
  }[lib.name]
  for gate in lib.folded:
    want = folded_lib(gate)
    assert float(jnp.max(jnp.abs(want))) > 1e-3  # a real gradient, not zeros
    assert max_diff(g["bias_ih"][gates[gate]], want) < TOL
    assert max_diff(g["bias_hh"][gates[gate]], want) < TOL  # the same gradient again, on the second bias

  lr = 0.1
  stepped = jax.tree.map(lambda p, d: p - lr * d, params, g)  # one SGD step on each side
  if lib.name == "flax.nnx":
    # NNX has no b_hn, yet jaxgru's gets a gradient and moves: the step leaves what NNX can hold.
    assert float(jnp.max(jnp.abs(g["bias_hh"][2 * H :]))) > 1e-3
    with pytest.raises(ValueError, match="b_hn"):
      lib.to(stepped)
    return
  lib_stepped = (
    eqx.apply_updates(converted, jax.tree.map(lambda d: -lr * d, g_lib))
    if lib.name == "equinox"
    else jax.tree.map(lambda p, d: p - lr * d, converted, g_lib)
  )
  gap = max_diff(lib.forward(lib.to(stepped, variant=lib.variant), x, h), lib.forward(lib_stepped, x, h))
  assert gap > 1e-4, "one SGD step should already tell the folded and unfolded biases apart"


def test_nnx_refuses_b_hn_and_names_it():
  with pytest.raises(ValueError, match=r"no b_hn.*jaxgru.GRUCell"):
    other_jax.to_flax_nnx(random_params())


@pytest.mark.parametrize("to", [other_jax.to_flax_linen, other_jax.to_flax_nnx, other_jax.to_equinox])
def test_torch_variant_targets_refuse_classic_sources(to):
  with pytest.raises(ValueError, match="classic"):
    to(parity.module_from_params(without_b_hn(random_params()), variant="classic"))
  with pytest.raises(ValueError, match="contradicts"):
    to(parity.module_from_params(random_params()), variant="classic")


def test_haiku_refuses_torch_variant_sources():
  with pytest.raises(ValueError, match="variant='classic' if it was trained"):
    other_jax.to_haiku(random_params())  # a params mapping counts as torch's GRU
  with pytest.raises(ValueError, match="'classic' GRU"):
    other_jax.to_haiku(parity.module_from_params(random_params()))


def test_bad_sources_and_targets():
  with pytest.raises(ValueError, match="num_layers=2"):
    other_jax.to_flax_linen(jaxgru.init_gru_params(jax.random.key(0), I, H, num_layers=2))
  with pytest.raises(ValueError, match="bias=False, but"):
    other_jax.from_flax_linen(_linen_native(0), bias=False)
  with pytest.raises(ValueError, match="no entry hn/kernel"):
    other_jax.from_flax_linen({"params": {k: v for k, v in _linen_native(0)["params"].items() if k != "hn"}})
  with pytest.raises(ValueError, match="exactly one hk.GRU"):
    other_jax.from_haiku({"a": {"x": 1}})
  with pytest.raises(ValueError, match="3 \\* hidden_size"):
    other_jax.from_haiku({"gru": {"w_i": jnp.zeros((3, 4)), "w_h": jnp.zeros((2, 4)), "b": jnp.zeros(4)}})
  with pytest.raises(TypeError, match="flax.nnx.GRUCell"):
    other_jax.from_flax_nnx(_linen_native(0))
  with pytest.raises(TypeError, match="equinox.nn.GRUCell"):
    other_jax.from_equinox(_nnx_native(0))
  odd = nnx.GRUCell(I, H, activation_fn=jax.nn.relu, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="activation_fn"):
    other_jax.from_flax_nnx(odd)


def test_equinox_without_bias_is_exact_both_ways():
  cell = _eqx_native(2, use_bias=False)
  params = other_jax.from_equinox(cell)
  assert set(params) == {"weight_ih", "weight_hh"}
  x, h = inputs()
  assert max_diff(jaxgru_forward(params, x, h, "torch"), _eqx_forward(cell, x, h)) < TOL
  back = other_jax.to_equinox(params)
  assert not back.use_bias and max_diff(_eqx_forward(back, x, h), _eqx_forward(cell, x, h)) == 0
