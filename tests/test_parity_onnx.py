"""parity.onnx against ONNX Runtime's own GRU, LSTM and RNN kernels and torch: export (NNX, Linen,
params, torch layers; the GRU's torch and classic variants, the RNN's tanh and relu; batch_first,
h0 and c0, packed lengths), import of what ``torch.onnx.export`` writes, bit-exact round trips,
atomic writes and the refusals. ONNX's own node test cases: test_parity_onnx_nodes.py."""

from __future__ import annotations

import io
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from _helpers import assert_close, random_torch
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxgru
import parity
from parity.proof.report import TOLERANCES

onnx = pytest.importorskip("onnx", reason="needs the onnx extra")
pytest.importorskip("onnxruntime", reason="needs the onnx extra")
from onnx import helper  # noqa: E402

from parity import onnx as po  # noqa: E402

I, H, T, B = 3, 4, 6, 3
LENGTHS = np.array([6, 2, 1])  # unsorted, a full sequence and a length-1 one
TOL = TOLERANCES["float32"]


def inputs(batch_first: bool, layers_x_dirs: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
  return x, rng.standard_normal((layers_x_dirs, B, H)).astype(np.float32)


LAYERS = {"GRU": (torch.nn.GRU, jaxgru.gru), "LSTM": (torch.nn.LSTM, jaxgru.lstm), "RNN": (torch.nn.RNN, jaxgru.rnn)}


def state(mode, h0, seed=1):
  """An LSTM's (h0, c0) pair (c0 drawn), or h0 alone."""
  return (h0, np.random.default_rng(seed).standard_normal(h0.shape).astype(h0.dtype)) if mode == "LSTM" else h0


def torch_outputs(run):
  return (run["output"], (run["h_n"], run["c_n"]) if "c_n" in run else run["h_n"])


@pytest.mark.parametrize(
  "mode, options, num_layers, bidirectional, bias, batch_first",
  [
    ("GRU", {}, 1, False, True, False),
    ("GRU", {}, 2, True, True, True),
    ("GRU", {}, 2, False, False, False),
    ("GRU", {}, 1, True, False, True),
    ("LSTM", {}, 2, True, True, True),
    ("LSTM", {}, 1, False, False, False),
    ("RNN", {"nonlinearity": "relu"}, 2, True, True, False),
    ("RNN", {}, 1, False, False, True),
  ],
)
def test_export_runs_in_onnx_runtime_as_torch_and_jaxgru(mode, options, num_layers, bidirectional, bias, batch_first, tmp_path):
  layer = LAYERS[mode][0](I, H, num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional, **options)
  module = random_torch(layer, seed=num_layers, dtype=torch.float32).eval()
  model = parity.from_torch(module)
  x, h0 = inputs(batch_first, num_layers * (1 + bidirectional))
  h0 = state(mode, h0)
  with jax.default_matmul_precision("highest"):
    for lengths in (None, LENGTHS):
      path = po.to_onnx(model, tmp_path / "model.onnx", lengths=lengths is not None)
      got = po.run_onnx(path, x, h0, lengths)
      assert_close(got, model(x, h0, lengths=lengths), TOL, "ONNX Runtime vs jaxgru", of_max=True)
      want = parity.run_torch(module, x, h0, lengths=lengths)
      assert_close(got, torch_outputs(want), TOL, "ONNX Runtime vs torch", of_max=True)
  nodes = [n for n in onnx.load(path).graph.node if n.op_type == mode]
  assert len(nodes) == num_layers and onnx.load(path).opset_import[0].version == po.OPSET


def random_params(num_layers, bidirectional, bias=True, seed=0, dtype=np.float32, mode="GRU"):
  rng = np.random.default_rng(seed)
  shapes = jaxgru.expected_shapes(I, H, num_layers, bias, bidirectional, mode=mode)
  return {k: jnp.asarray(rng.uniform(-0.6, 0.6, s).astype(dtype)) for k, s in shapes.items()}


def test_classic_variant_and_linen_module():
  params = random_params(2, True, seed=1)
  x, h0 = inputs(False, 4)
  with jax.default_matmul_precision("highest"):
    model = po.model_proto(params, variant="classic", lengths=True)
    assert {helper.get_attribute_value(a) for n in model.graph.node for a in n.attribute if a.name == "linear_before_reset"} == {
      0
    }
    want = jaxgru.gru(params, x, h0, lengths=LENGTHS, variant="classic")
    assert_close(po.run_onnx(model, x, h0, LENGTHS), want, TOL, "classic", of_max=True)
    linen = jaxgru.linen.GRU(I, H, num_layers=2, bidirectional=True, batch_first=True)
    variables = {"params": params}
    xb = np.swapaxes(x, 0, 1)
    got = po.run_onnx(po.model_proto(linen, variables, h0=False), xb)
    assert_close(got, linen.apply(variables, xb), TOL, "Linen", of_max=True)


@pytest.mark.parametrize("variant", ["torch", "classic"])
def test_round_trip_is_bit_exact(variant):
  params = random_params(2, True, seed=2)
  back = po.onnx_to_params(po.model_proto(params, variant=variant), variant=variant)
  assert back.keys() == params.keys() and all(np.array_equal(back[k], v) for k, v in params.items())


def torch_export(module, x, h0=None):
  f = io.BytesIO()
  lstm = isinstance(module, torch.nn.LSTM)
  states = () if h0 is None else tuple(torch.from_numpy(h) for h in (h0 if lstm else (h0,)))
  args = (torch.from_numpy(x),) if h0 is None else (torch.from_numpy(x), states if lstm else states[0])
  names = ["input", "h0", "c0"][: 1 + len(states)]
  outputs = ["output", "h_n", "c_n"] if lstm else ["output", "h_n"]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
    torch.onnx.export(module, args, f, dynamo=False, input_names=names, output_names=outputs)
  return onnx.load_from_string(f.getvalue())


@pytest.mark.parametrize(
  "mode, options, num_layers, bidirectional, bias",
  [
    ("GRU", {}, 2, True, True),
    ("GRU", {}, 1, False, False),
    ("LSTM", {}, 2, True, True),
    ("LSTM", {}, 1, False, False),
    ("RNN", {"nonlinearity": "relu"}, 2, True, True),
    ("RNN", {}, 1, False, False),
  ],
)
def test_import_what_torch_exports(mode, options, num_layers, bidirectional, bias):
  layer = LAYERS[mode][0](I, H, num_layers, bias=bias, batch_first=True, bidirectional=bidirectional, **options)
  module = random_torch(layer, seed=3, dtype=torch.float32).eval()
  x, h0 = inputs(True, num_layers * (1 + bidirectional))
  h0 = state(mode, h0)
  exported = torch_export(module, x, h0)
  params = po.onnx_to_params(exported, **options)
  stored = module.state_dict()
  assert params.keys() == stored.keys() and all(np.array_equal(params[k], v.numpy()) for k, v in stored.items())
  with jax.default_matmul_precision("highest"):  # ONNX Runtime runs torch's own export
    got = po.run_onnx(exported, x, h0, batch_first=True)
    want = LAYERS[mode][1](params, x, h0, batch_first=True, **options)
    assert_close(got, want, TOL, "torch's export", of_max=True)


def gru_model(node_attrs=None, b=True, inputs=None, w_from_node=False, extra_nodes=()):
  """A one-node GRU model made by hand, to feed the importer what it must refuse."""
  rng = np.random.default_rng(0)
  inits = [
    onnx.numpy_helper.from_array(rng.standard_normal((1, 3 * H, I)).astype(np.float32), "W"),
    onnx.numpy_helper.from_array(rng.standard_normal((1, 3 * H, H)).astype(np.float32), "R"),
  ]
  if b:
    inits.append(onnx.numpy_helper.from_array(rng.standard_normal((1, 6 * H)).astype(np.float32), "B"))
  nodes = list(extra_nodes)
  if w_from_node:
    nodes.append(helper.make_node("Identity", ["W"], ["W2"]))
  attrs = dict(hidden_size=H, linear_before_reset=1) | (node_attrs or {})
  names = inputs or ["x", "W2" if w_from_node else "W", "R", "B" if b else ""]
  nodes.append(helper.make_node("GRU", names, ["Y", "Y_h"], name="g", **attrs))
  x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [T, B, I])
  y = helper.make_tensor_value_info("Y_h", onnx.TensorProto.FLOAT, None)
  return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits))


def test_import_reads_constant_nodes_and_missing_bias():
  base = gru_model(b=False)
  w = base.graph.initializer[0]
  node = helper.make_node("Constant", [], ["W"], value=w)
  model = gru_model(b=False, extra_nodes=[node])
  del model.graph.initializer[0]
  params = po.onnx_to_params(model)
  assert set(params) == {"weight_ih_l0", "weight_hh_l0"}
  assert np.array_equal(params["weight_ih_l0"][:H], onnx.numpy_helper.to_array(w)[0, H : 2 * H])  # r: ONNX's second block


@pytest.mark.parametrize(
  "model, message",
  [
    (gru_model({"clip": 3.0}), "clip=3.0"),
    (gru_model({"hidden_size": H + 1}), "hidden_size=5 but its R holds 4"),
    (gru_model({"activations": ["Sigmoid", "Relu"]}), r"activations=\['Sigmoid', 'Relu'\]"),
    (gru_model({"activation_alpha": [1.0]}), "activation_alpha"),
    (gru_model({"direction": "reverse"}), "direction='reverse'"),
    (gru_model({"linear_before_reset": 0}), "read it with variant='classic'"),
    (gru_model(w_from_node=True), "computed while the model runs"),
    (
      helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "e", [], [])),
      r"no GRU node \(its operators: Relu\)",
    ),
  ],
)
def test_import_refusals(model, message):
  with pytest.raises(ValueError, match=message):
    po.onnx_to_params(model)


def test_import_refuses_nodes_that_do_not_stack():
  one = gru_model()
  two = gru_model()
  node = two.graph.node[-1]
  node.name = "g2"
  node.input[0], node.output[0], node.output[1] = "Y", "Y2", "Y_h2"
  one.graph.node.append(node)  # input size I, but the first layer gives H
  with pytest.raises(ValueError, match="does not stack"):
    po.onnx_to_params(one)


def test_export_refusals_and_atomic_write(tmp_path):
  params = random_params(1, False)
  path = po.to_onnx(params, tmp_path / "gru.onnx")
  before = path.read_bytes()
  with pytest.raises(ValueError, match=r"opset must be an integer in \[14, "):
    po.to_onnx(random_params(2, True), path, opset=13)
  assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["gru.onnx"]
  with pytest.raises(ValueError, match="params are a cell's"):
    po.model_proto(jaxgru.init_gru_cell_params(jax.random.key(0), I, H))
  classic = jaxgru.GRU(I, H, variant="classic", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="variant='torch' but the module has variant='classic'"):
    po.model_proto(classic, variant="torch")
  with pytest.raises(ValueError, match="pass lengths"):
    po.run_onnx(po.model_proto(params, lengths=True), np.zeros((T, B, I), np.float32))
  with pytest.raises(ValueError, match="no lengths input"):
    po.run_onnx(path, np.zeros((T, B, I), np.float32), lengths=LENGTHS)


@pytest.mark.parametrize(
  "kwargs, error, message",
  [
    (dict(x=np.zeros((T, I), np.float32)), ValueError, r"x must be 3-D \(T, B, I\)"),
    (dict(x=np.zeros((T, B, I + 1), np.float32)), ValueError, "input size 3"),
    (dict(h0=np.zeros((1, B + 1, H), np.float32)), ValueError, r"h0 must have shape \(L\*D, B, H\) = \(1, 3, 4\)"),
    (dict(lengths=np.array([6, 0, 7])), ValueError, r"lengths must lie in \[1, T=6\], got \[0, 7\]"),
    (dict(lengths=np.array([1.0, 2.0, 3.0])), TypeError, "lengths must be an integer array"),
    (dict(lengths=np.array([1, 2])), ValueError, r"lengths must have shape \(B,\) = \(3,\)"),
  ],
)
def test_run_onnx_checks_its_inputs(kwargs, error, message):
  model = po.model_proto(random_params(1, False), lengths=True)
  args = dict(x=np.zeros((T, B, I), np.float32), h0=None, lengths=LENGTHS) | kwargs
  with pytest.raises(error, match=message):
    po.run_onnx(model, **args)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
  layers=st.integers(1, 3),
  bidirectional=st.booleans(),
  bias=st.booleans(),
  sizes=st.tuples(st.integers(1, 5), st.integers(1, 5)),
  variant=st.sampled_from(["torch", "classic"]),
  dtype=st.sampled_from([np.float16, np.float32]),
  batch_first=st.booleans(),
)
def test_any_gru_round_trips_through_onnx_bit_for_bit(layers, bidirectional, bias, sizes, variant, dtype, batch_first):
  input_size, hidden = sizes
  shapes = jaxgru.expected_shapes(input_size, hidden, layers, bias, bidirectional)
  rng = np.random.default_rng(layers * 7 + hidden)
  params = {k: jnp.asarray(rng.uniform(-2, 2, s).astype(dtype)) for k, s in shapes.items()}
  model = po.model_proto(params, variant=variant, batch_first=batch_first, lengths=bias)
  assert sum(n.op_type == "GRU" for n in model.graph.node) == layers
  back = po.onnx_to_params(model, variant=variant)
  assert back.keys() == params.keys()
  assert all(back[k].dtype == dtype and np.array_equal(back[k], v) for k, v in params.items())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
  mode=st.sampled_from([("LSTM", {}), ("RNN", {"nonlinearity": "tanh"}), ("RNN", {"nonlinearity": "relu"})]),
  layers=st.integers(1, 3),
  bidirectional=st.booleans(),
  bias=st.booleans(),
  sizes=st.tuples(st.integers(1, 5), st.integers(1, 5)),
  dtype=st.sampled_from([np.float16, np.float32, np.float64]),
  h0=st.booleans(),
)
def test_any_lstm_or_rnn_round_trips_through_onnx_bit_for_bit(mode, layers, bidirectional, bias, sizes, dtype, h0):
  (mode, options), (input_size, hidden) = mode, sizes
  shapes = jaxgru.expected_shapes(input_size, hidden, layers, bias, bidirectional, mode=mode)
  rng = np.random.default_rng(layers * 7 + hidden)
  params = {k: jnp.asarray(rng.uniform(-2, 2, s).astype(dtype)) for k, s in shapes.items()}
  with jax.enable_x64(dtype == np.float64):
    params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    model = po.model_proto(params, h0=h0, lengths=bias, **options)
    assert sum(n.op_type == mode for n in model.graph.node) == layers
    back = po.onnx_to_params(model, **options)
  assert back.keys() == params.keys()
  assert all(back[k].dtype == dtype and np.array_equal(back[k], v) for k, v in params.items())


def lstm_rnn_refusals():
  """Models of LSTM and RNN nodes made by hand, each with what the importer must refuse."""
  lstm = po.model_proto(random_params(1, False, mode="LSTM"))
  rnn = po.model_proto(random_params(1, False, mode="RNN"), nonlinearity="relu")
  out = []

  def changed(model, change):
    model = onnx.ModelProto.FromString(model.SerializeToString())
    change(next(n for n in model.graph.node if n.op_type in ("LSTM", "RNN")), model)
    return model

  def peepholes(node, model):
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.full((1, 3 * H), 0.5, np.float32), "P"))
    node.input.extend(["", "", "", "P"][len(node.input) - 4 :])

  out.append((changed(lstm, peepholes), {}, "peepholes"))
  out.append((changed(lstm, lambda n, m: n.attribute.append(helper.make_attribute("input_forget", 1))), {}, "input_forget=1"))
  out.append((changed(lstm, lambda n, m: n.attribute.append(helper.make_attribute("clip", 2.0))), {}, "clip=2.0"))
  acts = helper.make_attribute("activations", ["Sigmoid", "Tanh", "Relu"])
  out.append((changed(lstm, lambda n, m: n.attribute.append(acts)), {}, "activations=.'Sigmoid', 'Tanh', 'Relu'."))
  out.append((rnn, {}, "read it with nonlinearity='relu'"))
  out.append((rnn, {"op": "GRU"}, r"no GRU node \(its operators: .*RNN"))
  both = onnx.ModelProto.FromString(lstm.SerializeToString())
  both.graph.node.extend([n for n in rnn.graph.node if n.op_type == "RNN"])
  out.append((both, {}, "holds LSTM, RNN nodes: pass op="))
  return out


@pytest.mark.parametrize("model, kwargs, message", lstm_rnn_refusals())
def test_lstm_and_rnn_import_refusals(model, kwargs, message):
  with pytest.raises(ValueError, match=message):
    po.onnx_to_params(model, **kwargs)


def test_lstm_zero_peepholes_map_and_lstm_and_rnn_export_refusals():
  params = random_params(1, False, mode="LSTM")
  model = po.model_proto(params)
  node = next(n for n in model.graph.node if n.op_type == "LSTM")
  model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((1, 3 * H), np.float32), "P"))
  node.input.extend(["", "", "", "P"][len(node.input) - 4 :])
  back = po.onnx_to_params(model)
  assert all(np.array_equal(back[k], v) for k, v in params.items())
  projected = jaxgru.LSTM(I, H, proj_size=2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="proj_size=2 .weight_hr.: ONNX's LSTM operator has no projection"):
    po.model_proto(projected)
  with pytest.raises(ValueError, match="variant='classic' is a GRU's: the LSTM has none"):
    po.model_proto(params, variant="classic")
  with pytest.raises(ValueError, match="nonlinearity='relu' is an RNN's: the GRU has none"):
    po.model_proto(random_params(1, False), nonlinearity="relu")
  relu = jaxgru.RNN(I, H, nonlinearity="relu", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="nonlinearity='tanh' but the module has nonlinearity='relu'"):
    po.model_proto(relu, nonlinearity="tanh")
  lstm = po.model_proto(params)
  with pytest.raises(ValueError, match="h0 must be the pair .h0, c0."):
    po.run_onnx(lstm, np.zeros((T, B, I), np.float32), np.zeros((1, B, H), np.float32))
  with pytest.raises(ValueError, match=r"c0 must have shape \(L\*D, B, H\)"):
    po.run_onnx(lstm, np.zeros((T, B, I), np.float32), (np.zeros((1, B, H), np.float32), np.zeros((2, B, H), np.float32)))
