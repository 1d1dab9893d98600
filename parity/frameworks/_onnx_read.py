"""Reading the ``GRU`` nodes of ONNX models as ``jaxgru`` params (:func:`parity.frameworks.onnx.onnx_to_params`),
and the gate layout both directions share: ONNX orders the gates (z, r, h), torch (r, z, n).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import onnx
from onnx import helper, numpy_helper

from parity.weights import _storage, convert

_DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh")


def read_model(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
  """``model`` with every tensor's data in it: a ``ModelProto`` as it is, or the model at a
  path, its external data read from the model's own folder (never the working directory) by
  ``onnx.load``, which refuses locations outside that folder (``../``, absolute, symbolic links).

  Raises:
    FileNotFoundError: no file at the path.
    ValueError: a directory; not a readable ONNX model (truncated, corrupt, another format);
      external data that is missing or outside the model's folder; a ``ModelProto`` whose
      tensors live in external files (it has no folder to read them from).
    TypeError: neither a path nor a ``ModelProto``.
  """
  if isinstance(model, onnx.ModelProto):
    external = [t.name for t in _tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
      raise ValueError(
        f"the model's tensors {external[:5]} are stored in external files, which a ModelProto has no folder to read "
        "from: pass the model's path instead (its external data is then read from the model's folder)"
      )
    return model
  if not isinstance(model, str | os.PathLike):
    raise TypeError(f"model must be a path or an onnx.ModelProto, got {type(model).__name__}")
  path = _storage.existing_file(model, "an ONNX model file")
  try:
    return onnx.load(os.fspath(path))
  except Exception as err:  # protobuf's DecodeError, onnx's ValidationError for escaping external data, ...
    first = (str(err).strip().splitlines() or [""])[0]
    raise ValueError(
      f"{path} is not a readable ONNX model (truncated or corrupt, another format, or external data that is missing "
      f"or outside the model's folder): {type(err).__name__}: {first}"
    ) from None


def _tensors(graph: onnx.GraphProto):
  """Every tensor a graph holds: initializers and node attributes, subgraphs included."""
  yield from graph.initializer
  for node in graph.node:
    for attr in node.attribute:
      if attr.HasField("t"):
        yield attr.t
      yield from attr.tensors
      if attr.HasField("g"):
        yield from _tensors(attr.g)
      for sub in attr.graphs:
        yield from _tensors(sub)


def rzn_to_zrh(a: np.ndarray, hidden: int) -> np.ndarray:
  """Gate blocks along axis 0, torch's (r, z, n) -> ONNX's (z, r, h); its own inverse."""
  return np.concatenate([a[hidden : 2 * hidden], a[:hidden], a[2 * hidden :]])


def flip_z(a: np.ndarray, hidden: int, variant: str) -> np.ndarray:
  """``classic`` keeps ``1 - z`` where ONNX keeps ``z``: negate z's rows (torch order r, z, n)."""
  if variant == "torch":
    return a
  a = a.copy()
  a[hidden : 2 * hidden] *= -1
  return a


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
  """Every tensor the graph stores: initializers and the values of ``Constant`` nodes."""
  found = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
  for node in graph.node:
    if node.op_type == "Constant":
      for attr in node.attribute:
        if attr.name == "value":
          found[node.output[0]] = numpy_helper.to_array(attr.t)
  return found


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
  return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _read_node(node: onnx.NodeProto, stored: Mapping[str, np.ndarray]) -> tuple[dict[str, Any], list[np.ndarray | None]]:
  """A GRU node's checked attributes and its ``W``, ``R``, ``B`` (None where absent)."""
  name = f"GRU node {node.name or node.output[0]!r}"
  attrs = _attrs(node)
  for key in ("clip", "activation_alpha", "activation_beta"):
    if key in attrs:
      raise ValueError(f"{name} has {key}={attrs[key]!r}: jaxgru's GRU has no {key}")
  direction = attrs.get("direction", b"forward")
  direction = direction.decode() if isinstance(direction, bytes) else direction
  if direction not in ("forward", "bidirectional"):
    raise ValueError(
      f"{name} has direction={direction!r}: jaxgru (like torch) has a forward GRU or a bidirectional one, "
      "no GRU that runs backwards alone"
    )
  dirs = 2 if direction == "bidirectional" else 1
  activations = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
  if activations and [a.lower() for a in activations] != [a.lower() for a in _DEFAULT_ACTIVATIONS * dirs]:
    raise ValueError(f"{name} has activations={activations}: only the defaults {list(_DEFAULT_ACTIVATIONS * dirs)} map")
  arrays = []
  for slot, what in enumerate(("W", "R", "B")):
    tensor = node.input[slot + 1] if slot + 1 < len(node.input) else ""  # inputs: X, W, R, B, ...
    if tensor == "":
      arrays.append(None)
    elif tensor in stored:
      arrays.append(np.asarray(stored[tensor]))
    else:
      raise ValueError(
        f"{name}: its {what} ({tensor!r}) is computed while the model runs, not stored in it "
        "(an initializer or a Constant node): it cannot be read"
      )
  if arrays[0] is None or arrays[1] is None:
    raise ValueError(f"{name} has no W or R input")
  return {"dirs": dirs, "linear_before_reset": int(attrs.get("linear_before_reset", 0)), "name": name, **attrs}, arrays


def onnx_to_params(model: str | os.PathLike | onnx.ModelProto, *, variant: str = "torch") -> dict[str, jax.Array]:
  """The GRU nodes of an ONNX model as ``jaxgru`` params, one layer per node in graph order.

  Reads what :func:`to_onnx` and ``torch.onnx.export`` of a ``torch.nn.GRU`` write: weights
  in initializers or ``Constant`` nodes. ``variant="torch"`` takes nodes with
  ``linear_before_reset=1``, ``"classic"`` those with ``0`` (their z negated back). A node
  without ``B`` gives ``bias=False`` params. The dtype is the stored one.

  Args:
    model: an ``.onnx`` path or an ``onnx.ModelProto``.
    variant: ``"torch"`` or ``"classic"``, which nodes to read (see above).

  Returns:
    ``jaxgru`` params, torch's layout: ``{"weight_ih_l0": ..., ...}``.

  Example:
    >>> path = parity.onnx.to_onnx(jaxgru.GRU(3, 4, num_layers=2, rngs=nnx.Rngs(0)), "gru.onnx")
    >>> sorted(parity.onnx.onnx_to_params(path))[:2]
    ['bias_hh_l0', 'bias_hh_l1']

  Raises:
    FileNotFoundError: no file at the path.
    TypeError: ``model`` is neither a path nor an ``onnx.ModelProto``.
    ValueError: not a readable ONNX model, or its external data missing or outside the model's
      folder (see :func:`read_model`); no GRU node; ``clip``, activations other than (Sigmoid, Tanh) or their
      alpha/beta; ``direction="reverse"``; ``linear_before_reset`` not the ``variant``'s;
      weights computed at run time; layers that do not stack (hidden sizes, directions, input
      sizes, bias on some layers only). ``sequence_lens``, ``initial_h`` and ``layout``
      concern the inputs, not the weights, and are not read.
  """
  if variant not in ("torch", "classic"):
    raise ValueError(f"variant must be 'torch' or 'classic', got {variant!r}")
  model = read_model(model)
  stored = _constants(model.graph)
  nodes = [n for n in model.graph.node if n.op_type == "GRU"]
  if not nodes:
    raise ValueError(
      "the model has no GRU node (its operators: " + ", ".join(sorted({n.op_type for n in model.graph.node})) + ")"
    )
  params: dict[str, np.ndarray] = {}
  first = None
  for layer, node in enumerate(nodes):
    attrs, (w, r, b) = _read_node(node, stored)
    dirs, hidden = attrs["dirs"], r.shape[-1]
    if attrs.get("hidden_size", hidden) != hidden:
      raise ValueError(f"{attrs['name']} has hidden_size={attrs['hidden_size']} but its R holds {hidden} (shape {r.shape})")
    if attrs["linear_before_reset"] != int(variant == "torch"):
      want = "classic" if variant == "torch" else "torch"
      raise ValueError(f"{attrs['name']} has linear_before_reset={attrs['linear_before_reset']}: read it with variant={want!r}")
    expected = {"W": (dirs, 3 * hidden, w.shape[-1]), "R": (dirs, 3 * hidden, hidden), "B": (dirs, 6 * hidden)}
    for what, a in (("W", w), ("R", r), ("B", b)):
      if a is not None and a.shape != expected[what]:
        raise ValueError(f"{attrs['name']}: {what} has shape {a.shape}, expected {expected[what]} (hidden_size {hidden})")
    if first is None:
      first = (dirs, hidden, b is not None)
    elif (dirs, hidden, b is not None) != first or w.shape[-1] != dirs * hidden:
      raise ValueError(
        f"{attrs['name']} does not stack on the GRU nodes before it as a torch GRU layer: directions, hidden_size and bias "
        f"must agree ({first[:2]} and bias={first[2]} before, {(dirs, hidden)} and bias={b is not None} here) and its input "
        f"size must be {dirs * hidden}, got {w.shape[-1]}"
      )
    for d, suffix in enumerate(["", "_reverse"][:dirs]):
      get = lambda a, hidden=hidden: flip_z(rzn_to_zrh(a, hidden), hidden, variant)
      params[f"weight_ih_l{layer}{suffix}"] = get(w[d])
      params[f"weight_hh_l{layer}{suffix}"] = get(r[d])
      if b is not None:
        params[f"bias_ih_l{layer}{suffix}"] = get(b[d, : 3 * hidden])
        params[f"bias_hh_l{layer}{suffix}"] = get(b[d, 3 * hidden :])
  return convert.state_dict_to_params(params)
