"""ONNX's own node test cases for its ``GRU``, ``LSTM`` and ``RNN`` operators (the ``onnx``
package's ``onnx/backend/test/case/node/{gru,lstm,rnn}.py``: each a one-node model, its inputs
and the outputs ONNX's NumPy reference computed) through ``parity.onnx.onnx_to_params`` and
``jaxgru``: each case's weights become the model's initializers, are imported, and ``jaxgru``
runs the case's inputs (``layout``, ``initial_h``, ``initial_c``) to the case's outputs. What
torch's layers cannot compute (a ``reverse``-only direction, peepholes) is refused by name."""

from __future__ import annotations

import importlib

import jax
import numpy as np
import pytest
from _helpers import assert_close

import jaxgru

onnx = pytest.importorskip("onnx", reason="needs the onnx extra")
from onnx import helper, numpy_helper  # noqa: E402

from parity import onnx as po  # noqa: E402

WEIGHTS = ("W", "R", "B", "P")  # the node inputs a model stores; the others are run-time inputs
LAYERS = {"GRU": jaxgru.gru, "LSTM": jaxgru.lstm, "RNN": jaxgru.rnn}
REFUSED = {"reverse": "direction='reverse'", "peepholes": "peepholes"}  # case name -> the refusal's words


def onnx_cases():
  from onnx.backend.test.case import node as registry

  for op in ("gru", "lstm", "rnn"):  # importing a module runs its cases' exports, which register them
    importlib.import_module(f"onnx.backend.test.case.node.{op}")
  found = [c for c in registry._NodeTestCases if c.model.graph.node[0].op_type in LAYERS]
  return {c.name: c for c in found}


CASES = onnx_cases()


def test_every_onnx_recurrent_case_is_collected():
  ops = [c.model.graph.node[0].op_type for c in CASES.values()]
  assert {op: ops.count(op) for op in LAYERS} == {"GRU": 6, "LSTM": 6, "RNN": 6}, sorted(CASES)


def stored(case) -> tuple[onnx.ModelProto, dict[str, np.ndarray], dict[str, np.ndarray]]:
  """The case's model with its weights as initializers, its run-time inputs and its outputs, by the node's names."""
  model = onnx.ModelProto.FromString(case.model.SerializeToString())
  node = model.graph.node[0]
  inputs, outputs = case.data_sets[0]
  given = dict(zip([i for i in node.input if i], inputs, strict=True))
  names = dict(zip(["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"], node.input, strict=False))
  weights = {slot: given[name] for slot, name in names.items() if slot in WEIGHTS and name}
  model.graph.initializer.extend(numpy_helper.from_array(a, names[slot]) for slot, a in weights.items())
  kept = [i for i in model.graph.input if i.name not in {names[s] for s in weights}]
  del model.graph.input[:]
  model.graph.input.extend(kept)
  run = {slot: given[name] for slot, name in names.items() if slot not in WEIGHTS and name}
  want = dict(zip(["Y", "Y_h", "Y_c"], [o if o else None for o in node.output], strict=False))
  want = dict(zip([k for k, v in want.items() if v], outputs, strict=True))
  return model, run, want


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_node_case_through_the_importer(name):
  case = CASES[name]
  model, run, want = stored(case)
  node = model.graph.node[0]
  attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
  options = {}
  if node.op_type == "GRU":
    options["variant"] = "torch" if attrs.get("linear_before_reset", 0) else "classic"
  if node.op_type == "RNN":
    options["nonlinearity"] = "relu" if [a.lower() for a in attrs.get("activations", [b"tanh"])][0] == b"relu" else "tanh"
  refused = [words for key, words in REFUSED.items() if key in name]
  if refused:
    with pytest.raises(ValueError, match=refused[0]):
      po.onnx_to_params(model, **options)
    return
  params = po.onnx_to_params(model, **options)
  batch_first = attrs.get("layout", 0) == 1
  x = run["X"]
  D = 2 if attrs.get("direction", b"forward") == b"bidirectional" else 1
  initial = [run.get("initial_h"), run.get("initial_c")]
  if batch_first:  # the states are (B, D, H) then, jaxgru's and torch's (D, B, H)
    initial = [None if s is None else np.swapaxes(s, 0, 1) for s in initial]
  state = tuple(initial) if node.op_type == "LSTM" and initial[0] is not None else initial[0]
  kwargs = {"variant": options["variant"]} if node.op_type == "GRU" else {}
  kwargs |= {"nonlinearity": options["nonlinearity"]} if node.op_type == "RNN" else {}
  with jax.default_matmul_precision("highest"):
    out, finals = LAYERS[node.op_type](params, x, state, lengths=run.get("sequence_lens"), batch_first=batch_first, **kwargs)
  finals = finals if isinstance(finals, tuple) else (finals,)
  got = {"Y_h": finals[0], "Y_c": finals[1] if len(finals) > 1 else None}
  T, B = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
  # jaxgru's (T, B, D*H) as ONNX's Y: (T, D, B, H), or (B, T, D, H) with layout 1
  y = np.asarray(out).reshape((B, T, D, -1) if batch_first else (T, B, D, -1))
  got["Y"] = y if batch_first else y.transpose(0, 2, 1, 3)
  if batch_first:
    got["Y_h"], got["Y_c"] = (None if s is None else np.swapaxes(np.asarray(s), 0, 1) for s in (got["Y_h"], got["Y_c"]))
  assert_close(tuple(np.asarray(got[k]) for k in want), tuple(want.values()), 1e-5, name)
