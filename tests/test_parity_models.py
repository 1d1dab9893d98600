"""parity.compare_models: a whole torch model against its JAX port, and load_tensors(as_jax=True)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxgru
import parity


class TorchTagger(torch.nn.Module):
  """Embedding -> 2-layer GRU -> Linear, returning the logits and the final state."""

  def __init__(self):
    super().__init__()
    self.emb = torch.nn.Embedding(10, 3)
    self.rnn = torch.nn.GRU(3, 5, 2, batch_first=True)
    self.head = torch.nn.Linear(5, 2)

  def forward(self, tokens, h0):
    out, h_n = self.rnn(self.emb(tokens), h0)
    return self.head(out), h_n


class JaxTagger(nnx.Module):
  def __init__(self, rngs):
    self.emb = nnx.Embed(10, 3, param_dtype=jnp.float64, rngs=rngs)
    self.rnn = jaxgru.GRU(3, 5, 2, batch_first=True, param_dtype=jnp.float64, rngs=rngs)
    self.head = nnx.Linear(5, 2, param_dtype=jnp.float64, rngs=rngs)

  def __call__(self, tokens, h0):
    out, h_n = self.rnn(self.emb(tokens), h0)
    return self.head(out), h_n


NAMES = {"emb.weight": "emb.embedding", "head.weight": ("head.kernel", "T")}


def _ported(x64):
  torch.manual_seed(0)
  torch_model = TorchTagger().double()
  jax_model = JaxTagger(nnx.Rngs(0))
  state = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
  jax_model.rnn.load_state_dict(
    parity.state_dict_to_params({k: v for k, v in state.items() if k.startswith("rnn.")}, prefix="rnn.")
  )
  jax_model.emb.embedding[...] = state["emb.weight"]
  jax_model.head.kernel[...] = state["head.weight"].T
  jax_model.head.bias[...] = state["head.bias"]
  rng = np.random.default_rng(0)
  return torch_model, jax_model, rng.integers(0, 10, (2, 7)), rng.standard_normal((2, 2, 5))


def test_a_ported_nnx_model_matches_in_every_output_and_gradient(x64):
  torch_model, jax_model, tokens, h0 = _ported(x64)
  report = parity.compare_models(torch_model, jax_model, tokens, h0, name_map=NAMES)
  assert report.ok, str(report)
  assert report.tol == 1e-10
  names = [row.name for row in report.rows]
  assert names[:2] == ["output[0]", "output[1]"] and "grad rnn.weight_hh_l1" in names and "grad head.weight" in names
  assert names[-1] == "grad input[1]" and "grad input[0]" not in names  # token ids have no gradient


def test_a_wrong_port_fails(x64):
  torch_model, jax_model, tokens, h0 = _ported(x64)
  jax_model.head.kernel[...] = jax_model.head.kernel[...] * 1.001
  report = parity.compare_models(torch_model, jax_model, tokens, h0, name_map=NAMES)
  assert not report.ok and "output[0]" in [row.name for row in report.failures]


def test_a_function_of_a_state_dict(x64):
  torch_model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh()).double()
  state = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
  report = parity.compare_models(
    torch_model, lambda p, x: jnp.tanh(x @ p["0.weight"].T + p["0.bias"]), np.ones((2, 3)), params=state
  )
  assert report.ok and [row.name for row in report.rows] == ["output[0]", "grad 0.weight", "grad 0.bias", "grad input[0]"]


def test_names_that_do_not_correspond_are_listed(x64):
  torch_model, jax_model, tokens, h0 = _ported(x64)
  with pytest.raises(
    ValueError, match=r"torch names with no JAX array \['emb.weight -> emb.weight', 'head.weight -> head.weight'\]"
  ):
    parity.compare_models(torch_model, jax_model, tokens, h0)
  with pytest.raises(ValueError, match=r"head.weight has shape \(2, 5\) in torch, head.kernel \(5, 2\) in JAX"):
    parity.compare_models(torch_model, jax_model, tokens, h0, name_map={**NAMES, "head.weight": "head.kernel"})
  with pytest.raises(TypeError, match="needs params"):
    parity.compare_models(torch_model, lambda p, x: x, tokens)


def test_load_tensors_as_jax_refuses_narrowing_like_load(tmp_path):
  path = tmp_path / "model.safetensors"
  parity.save_tensors({"w": np.ones((2, 2), np.float64), "v": np.ones(3, np.float32)}, path)
  with jax.enable_x64(False):
    with pytest.raises(TypeError, match="float64, but JAX runs in 32-bit mode"):
      parity.load_tensors(path, as_jax=True)
    arrays = parity.load_tensors(path, as_jax=True, dtype=np.float32)
    assert all(isinstance(a, jax.Array) and a.dtype == jnp.float32 for a in arrays.values())
    assert parity.load_tensors(path)["w"].dtype == np.float64  # NumPy keeps the bits
  with jax.enable_x64(True):
    assert parity.load_tensors(path, as_jax=True)["w"].dtype == jnp.float64


def test_an_nnx_model_with_a_list_of_layers(x64):
  """Parameter paths with list indices (``layers.0.kernel``) map and run."""
  torch_model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)).double()

  class Stack(nnx.Module):
    def __init__(self):
      self.layers = nnx.List(
        [nnx.Linear(3, 4, param_dtype=jnp.float64, rngs=nnx.Rngs(0)), nnx.Linear(4, 2, param_dtype=jnp.float64, rngs=nnx.Rngs(1))]
      )

    def __call__(self, x):
      return self.layers[1](self.layers[0](x))

  model = Stack()
  for k, layer in enumerate(torch_model):
    model.layers[k].kernel[...] = layer.weight.detach().numpy().T
    model.layers[k].bias[...] = layer.bias.detach().numpy()
  names = {f"{k}.weight": (f"layers.{k}.kernel", "T") for k in range(2)} | {f"{k}.bias": f"layers.{k}.bias" for k in range(2)}
  report = parity.compare_models(torch_model, model, np.ones((2, 3)), name_map=names)
  assert report.ok, str(report)
