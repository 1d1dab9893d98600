"""Reading the recurrent nodes of ONNX models (``GRU``, ``LSTM``, ``RNN``) as ``jaxgru`` params
(:func:`parity.frameworks.onnx.onnx_to_params`), and the gate layouts both directions share.

ONNX orders a GRU's gates (z, r, h) where torch orders them (r, z, n), and an LSTM's (i, o, f, c)
where torch orders them (i, f, g, o); an RNN has one gate. Every reader of a model's content
goes through :func:`naming`, so that whatever bytes a file holds, the error is a ``ValueError``
that names the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np
import onnx
from onnx import helper, numpy_helper

from parity.weights import _storage, convert


@dataclasses.dataclass(frozen=True)
class Op:
  """One ONNX recurrent operator as a torch layer: its gates' order against torch's, the
  activations that map, its optional inputs after ``B`` and its outputs."""

  mode: str
  to_onnx: tuple[int, ...]  # ONNX's gate k is torch's gate to_onnx[k]
  activations: tuple[tuple[str, ...], ...]  # per direction, each set that maps (an RNN: tanh or relu)
  inputs: tuple[str, ...]  # X, W, R, B, then these
  outputs: tuple[str, ...]

  @property
  def gates(self) -> int:
    return len(self.to_onnx)

  @property
  def from_onnx(self) -> tuple[int, ...]:
    return tuple(self.to_onnx.index(k) for k in range(self.gates))


OPS = {
  "GRU": Op("GRU", (1, 0, 2), (("Sigmoid", "Tanh"),), ("sequence_lens", "initial_h"), ("Y", "Y_h")),
  "LSTM": Op(
    "LSTM", (0, 3, 1, 2), (("Sigmoid", "Tanh", "Tanh"),), ("sequence_lens", "initial_h", "initial_c", "P"), ("Y", "Y_h", "Y_c")
  ),
  "RNN": Op("RNN", (0,), (("Tanh",), ("Relu",)), ("sequence_lens", "initial_h"), ("Y", "Y_h")),
}
NONLINEARITY = {("Tanh",): "tanh", ("Relu",): "relu"}


def reorder(a: np.ndarray, hidden: int, order: tuple[int, ...]) -> np.ndarray:
  """The gate blocks of ``a`` (along axis 0, ``hidden`` rows each) taken in ``order``."""
  return np.concatenate([a[k * hidden : (k + 1) * hidden] for k in order])


def flip_z(a: np.ndarray, hidden: int, variant: str) -> np.ndarray:
  """``classic`` keeps ``1 - z`` where ONNX keeps ``z``: negate z's rows (torch order r, z, n)."""
  if variant == "torch":
    return a
  a = a.copy()
  a[hidden : 2 * hidden] *= -1
  return a


def text(value: str | bytes) -> str:
  """An ONNX string field or attribute as ``str``: a ``ValueError`` where its bytes are not UTF-8."""
  if isinstance(value, str):
    return value
  try:
    return value.decode("utf-8")
  except UnicodeDecodeError:
    raise ValueError(f"the model holds a name that is not UTF-8 text: {value[:40]!r}") from None


def source_of(model: Any) -> str | None:
  """The file a model comes from, for messages (None for a ``ModelProto``)."""
  return os.fspath(model) if isinstance(model, str | os.PathLike) else None


@contextlib.contextmanager
def naming(source: str | None) -> Iterator[None]:
  """Reading a model's content: a ``ValueError`` raised inside names ``source``, and anything else
  its content makes ``onnx`` or ``protobuf`` raise (a ``KeyError`` for an unknown tensor type,
  an ``IndexError``, a ``UnicodeDecodeError``, ...) becomes one."""
  where = f"{source}: " if source is not None else ""
  try:
    yield
  except UnicodeError as err:  # a ValueError, but its message does not say where
    raise ValueError(f"{where}the model's content cannot be read: it holds text that is not UTF-8 ({err.reason})") from None
  except ValueError as err:
    if source is not None and source not in str(err):
      raise ValueError(f"{where}{err}") from None
    raise
  except (FileNotFoundError, TypeError) as err:
    if isinstance(err, TypeError) and source is not None:
      raise ValueError(f"{where}the model's content cannot be read: TypeError: {_first_line(err)}") from None
    raise
  except Exception as err:  # KeyError, IndexError, UnicodeDecodeError, protobuf's errors, ...
    raise ValueError(f"{where}the model's content cannot be read: {type(err).__name__}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
  return (str(err).strip().splitlines() or [""])[0]


def read_model(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
  """``model`` with every tensor's data in it: a ``ModelProto`` as it is, or the model at a
  path, its external data read from the model's own folder (never the working directory) by
  ``onnx.load``, which refuses locations outside that folder (``../``, absolute, symbolic links).

  Raises:
    FileNotFoundError: no file at the path.
    ValueError: a directory; not a readable ONNX model (empty, truncated, corrupt, another
      format, no graph); external data that is missing or outside the model's folder; a
      ``ModelProto`` whose tensors live in external files (it has no folder to read them from).
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
    loaded = onnx.load(os.fspath(path))
  except Exception as err:  # protobuf's DecodeError, onnx's ValidationError for escaping external data, ...
    raise ValueError(
      f"{path} is not a readable ONNX model (truncated or corrupt, another format, or external data that is missing "
      f"or outside the model's folder): {type(err).__name__}: {_first_line(err)}"
    ) from None
  if not loaded.HasField("graph"):  # an empty file parses as an empty model
    raise ValueError(f"{path} is not a readable ONNX model: it holds no graph (an empty or foreign file)")
  return loaded


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


def _constants(graph: onnx.GraphProto, wanted: set[str]) -> dict[str, np.ndarray]:
  """The tensors named in ``wanted`` that the graph stores: initializers and ``Constant`` nodes."""
  found = {t.name: _array(t) for t in graph.initializer if t.name in wanted}
  for node in graph.node:
    if node.op_type == "Constant" and node.output and node.output[0] in wanted:
      for attr in node.attribute:
        if attr.name == "value":
          found[node.output[0]] = _array(attr.t)
  return found


def _array(tensor: onnx.TensorProto) -> np.ndarray:
  try:
    return numpy_helper.to_array(tensor)
  except Exception as err:  # an unknown data_type (KeyError), data that does not fill its dims, ...
    raise ValueError(
      f"the tensor {text(tensor.name)!r} (data_type {tensor.data_type}, dims {list(tensor.dims)}) cannot be read: "
      f"{type(err).__name__}: {_first_line(err)}"
    ) from None


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
  return {text(a.name): helper.get_attribute_value(a) for a in node.attribute}


def _read_node(node: onnx.NodeProto, stored: Mapping[str, np.ndarray], op: Op) -> tuple[dict[str, Any], list[np.ndarray | None]]:
  """A node's checked attributes and its ``W``, ``R``, ``B`` (None where absent)."""
  label = text(node.name) or (text(node.output[0]) if node.output else "")
  name = f"{op.mode} node {label!r}"
  attrs = _attrs(node)
  for key in ("clip", "activation_alpha", "activation_beta"):
    if key in attrs:
      raise ValueError(f"{name} has {key}={attrs[key]!r}: torch's {op.mode} has no {key}")
  if attrs.get("input_forget", 0):
    raise ValueError(
      f"{name} has input_forget={attrs['input_forget']} (the forget gate coupled to the input gate): torch's LSTM has none"
    )
  direction = text(attrs.get("direction", b"forward"))
  if direction not in ("forward", "bidirectional"):
    raise ValueError(
      f"{name} has direction={direction!r}: jaxgru (like torch) has a forward {op.mode} or a bidirectional one, "
      f"no {op.mode} that runs backwards alone"
    )
  dirs = 2 if direction == "bidirectional" else 1
  activations = tuple(text(a) for a in attrs.get("activations", []))
  found = None
  for each in op.activations:
    if not activations or tuple(a.lower() for a in activations) == tuple(a.lower() for a in each * dirs):
      found = each
      break
  if found is None:
    maps = " or ".join(str(list(each * dirs)) for each in op.activations)
    raise ValueError(f"{name} has activations={list(activations)}: only {maps} map to torch's {op.mode}")
  inputs = [text(i) for i in node.input]
  arrays = []
  for slot, what in enumerate(("W", "R", "B", *op.inputs)):
    tensor = inputs[slot + 1] if slot + 1 < len(inputs) else ""  # inputs: X, W, R, B, ...
    if what not in ("W", "R", "B", "P"):
      continue
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
  if op.mode == "LSTM":
    peepholes = arrays.pop()
    if peepholes is not None and np.any(peepholes != 0):
      raise ValueError(f"{name} has peepholes (a non-zero P input): torch's LSTM has none")
  lbr = int(attrs.get("linear_before_reset", 0))
  return {**attrs, "dirs": dirs, "linear_before_reset": lbr, "name": name, "activations": found}, arrays


def recurrent_ops(model: onnx.ModelProto) -> list[str]:
  """The recurrent operators a model's graph holds, in the order of their first node."""
  found = [text(n.op_type) for n in model.graph.node]
  return list(dict.fromkeys(op for op in found if op in OPS))


def onnx_to_params(
  model: str | os.PathLike | onnx.ModelProto, *, op: str | None = None, variant: str = "torch", nonlinearity: str = "tanh"
) -> dict[str, jax.Array]:
  """The ``GRU``, ``LSTM`` or ``RNN`` nodes of an ONNX model as ``jaxgru`` params, one layer per
  node in graph order.

  Reads what :func:`to_onnx` and ``torch.onnx.export`` of a ``torch.nn.GRU``, ``LSTM`` or
  ``RNN`` write: weights in initializers or ``Constant`` nodes, the gates reordered into
  torch's. A node without ``B`` gives ``bias=False`` params. The dtype is the stored one.

  - GRU nodes: ``variant="torch"`` takes nodes with ``linear_before_reset=1``, ``"classic"``
    those with ``0`` (their z negated back).
  - RNN nodes: ``nonlinearity="tanh"`` takes nodes whose activations are ``Tanh`` (ONNX's
    default), ``"relu"`` those with ``Relu``; pass the same ``nonlinearity`` to
    :func:`jaxgru.rnn`, since a state dict does not record it.
  - LSTM nodes: peepholes (``P``) that are all zero map (they add nothing), others are refused,
    as are ``input_forget=1`` and ``clip``.

  Args:
    model: an ``.onnx`` path or an ``onnx.ModelProto``.
    op: ``"GRU"``, ``"LSTM"`` or ``"RNN"``, which nodes to read; None reads the one kind of
      recurrent node the model holds.
    variant: ``"torch"`` or ``"classic"``, which GRU nodes to read (see above).
    nonlinearity: ``"tanh"`` or ``"relu"``, which RNN nodes to read (see above).

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
      folder (see :func:`read_model`); content that cannot be read (every such error names
      the file); no recurrent node, or several kinds and no ``op``; ``clip``, activations
      that do not map or their alpha/beta; ``direction="reverse"``; ``linear_before_reset``
      not the ``variant``'s; RNN activations not the ``nonlinearity``'s; non-zero peepholes,
      ``input_forget``; weights computed at run time; layers that do not stack (hidden sizes,
      directions, input sizes, bias on some layers only). ``sequence_lens``, ``initial_h``,
      ``initial_c`` and ``layout`` concern the inputs, not the weights, and are not read.
  """
  if variant not in ("torch", "classic"):
    raise ValueError(f"variant must be 'torch' or 'classic', got {variant!r}")
  if nonlinearity not in ("tanh", "relu"):
    raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
  if op is not None and op not in OPS:
    raise ValueError(f"op must be None, 'GRU', 'LSTM' or 'RNN', got {op!r}")
  source = source_of(model)
  with naming(source):
    model = read_model(model)
    kinds = recurrent_ops(model)
    if op is None:
      if len(kinds) > 1:
        raise ValueError(f"the model holds {', '.join(kinds)} nodes: pass op= to say which to read")
      op = kinds[0] if kinds else "GRU"
    nodes = [n for n in model.graph.node if text(n.op_type) == op]
    if not nodes:
      ops = ", ".join(sorted({text(n.op_type) for n in model.graph.node}))
      raise ValueError(f"the model has no {op} node (its operators: {ops or 'none'})")
    wanted = {text(i) for n in nodes for i in n.input[1:]}
    params = _layers(nodes, _constants(model.graph, wanted), OPS[op], variant, nonlinearity)
    dtypes = {str(a.dtype) for a in params.values()}
    if dtypes - {"float16", "bfloat16", "float32", "float64"} or len(dtypes) > 1:
      raise ValueError(f"the {op} nodes' weights must share one floating dtype, got {sorted(dtypes)}")
  return convert.state_dict_to_params(params)  # outside: float64 in 32-bit mode stays the documented TypeError


def _layers(nodes, stored, op: Op, variant: str, nonlinearity: str) -> dict[str, np.ndarray]:
  params: dict[str, np.ndarray] = {}
  first = None
  for layer, node in enumerate(nodes):
    attrs, (w, r, b) = _read_node(node, stored, op)
    dirs, hidden, gates = attrs["dirs"], r.shape[-1], op.gates
    if attrs.get("hidden_size", hidden) != hidden:
      raise ValueError(f"{attrs['name']} has hidden_size={attrs['hidden_size']} but its R holds {hidden} (shape {r.shape})")
    if op.mode == "GRU" and attrs["linear_before_reset"] != int(variant == "torch"):
      want = "classic" if variant == "torch" else "torch"
      raise ValueError(f"{attrs['name']} has linear_before_reset={attrs['linear_before_reset']}: read it with variant={want!r}")
    if op.mode == "RNN" and NONLINEARITY[attrs["activations"]] != nonlinearity:
      want = NONLINEARITY[attrs["activations"]]
      raise ValueError(f"{attrs['name']} has activations {list(attrs['activations'])}: read it with nonlinearity={want!r}")
    expected = {"W": (dirs, gates * hidden, w.shape[-1]), "R": (dirs, gates * hidden, hidden), "B": (dirs, 2 * gates * hidden)}
    for what, a in (("W", w), ("R", r), ("B", b)):
      if a is not None and a.shape != expected[what]:
        raise ValueError(f"{attrs['name']}: {what} has shape {a.shape}, expected {expected[what]} (hidden_size {hidden})")
    if first is None:
      first = (dirs, hidden, b is not None)
    elif (dirs, hidden, b is not None) != first or w.shape[-1] != dirs * hidden:
      raise ValueError(
        f"{attrs['name']} does not stack on the {op.mode} nodes before it as a torch {op.mode} layer: directions, "
        f"hidden_size and bias must agree ({first[:2]} and bias={first[2]} before, {(dirs, hidden)} and bias={b is not None} "
        f"here) and its input size must be {dirs * hidden}, got {w.shape[-1]}"
      )
    for d, suffix in enumerate(["", "_reverse"][:dirs]):
      get = lambda a, hidden=hidden: flip_z(reorder(a, hidden, op.from_onnx), hidden, variant if op.mode == "GRU" else "torch")
      params[f"weight_ih_l{layer}{suffix}"] = get(w[d])
      params[f"weight_hh_l{layer}{suffix}"] = get(r[d])
      if b is not None:
        params[f"bias_ih_l{layer}{suffix}"] = get(b[d, : gates * hidden])
        params[f"bias_hh_l{layer}{suffix}"] = get(b[d, gates * hidden :])
  return params
