r"""``jaxgru`` GRUs, LSTMs and RNNs to ONNX files of ``GRU``, ``LSTM`` and ``RNN`` operators, and
the recurrent nodes of ONNX models back.

ONNX's recurrent operators (opset 14 onwards) each hold one layer, one or both directions.

- ``GRU`` orders its gates (z, r, h):

  .. math::

    z = \sigma(X W_z^T + H R_z^T + W_{bz} + R_{bz}), \quad
    r = \sigma(X W_r^T + H R_r^T + W_{br} + R_{br}), \quad
    H' = (1 - z) \odot \tilde h + z \odot H

  with ``linear_before_reset=1`` :math:`\tilde h = \tanh(X W_h^T + W_{bh} + r \odot (H R_h^T + R_{bh}))`,
  torch's GRU (``variant="torch"``), and with ``linear_before_reset=0``
  :math:`\tilde h = \tanh(X W_h^T + W_{bh} + (r \odot H) R_h^T + R_{bh})`, the "reset before" GRU.
  ``jaxgru``'s ``variant="classic"`` is that GRU with z and 1 - z exchanged, so it is stored with
  its z rows and biases negated (:math:`1 - \sigma(a) = \sigma(-a)`): exact, nothing lost.
- ``LSTM`` orders its gates (i, o, f, c) where torch orders them (i, f, g, o); with its default
  activations (Sigmoid, Tanh, Tanh), no peepholes, no ``clip`` and ``input_forget=0`` it is
  torch's LSTM exactly. It has no projection: an LSTM with ``proj_size > 0`` cannot be written
  with it (``torch.onnx.export`` refuses one too).
- ``RNN`` is :math:`H' = f(X W^T + H R^T + W_b + R_b)` with ``f`` Tanh (its default, torch's
  ``nonlinearity="tanh"``) or Relu (``"relu"``).

Weights: ``W`` (D, G*H, I) = ``weight_ih`` with its gate blocks reordered, ``R`` (D, G*H, H) =
``weight_hh``, ``B`` (D, 2*G*H) = ``[bias_ih, bias_hh]``; each direction and layer keeps both biases.

- :func:`to_onnx`: a ``jaxgru`` GRU, LSTM or RNN (NNX or Linen module, a torch layer, or params)
  to an ``.onnx`` file (written atomically), one node per layer; inputs ``input``, optional
  ``h0`` (and ``c0`` for an LSTM) and ``lengths`` (the operator's ``sequence_lens``), outputs
  ``output`` and ``h_n`` (and ``c_n``), shaped as :func:`jaxgru.gru`'s, :func:`jaxgru.lstm`'s,
  :func:`jaxgru.rnn`'s.
- :func:`onnx_to_params`: the recurrent nodes of a model (e.g. ``torch.onnx.export`` of an
  ``nn.GRU``, ``nn.LSTM``, ``nn.RNN``) as ``jaxgru`` params, refusing what does not map.
- :func:`run_onnx`: an ``.onnx`` file's outputs from ONNX Runtime's CPU kernels.

Needs the ``onnx`` extra (``onnx``, ``onnxruntime``).
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from parity import _arrays
from parity.frameworks import _inputs, _onnx_read
from parity.frameworks._onnx_read import OPS, flip_z, onnx_to_params, reorder
from parity.weights import convert, files

__all__ = ["MIN_OPSET", "OPSET", "model_proto", "onnx_to_params", "run_onnx", "to_onnx"]

OPSET = 17  # the default: GRU-14, LSTM-14 and RNN-14 (the current ones), read by ONNX Runtime 1.13 and later
MIN_OPSET = 14
_ONNX_DTYPES = {np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(np.float32): TensorProto.FLOAT}
_ONNX_DTYPES[np.dtype(np.float64)] = TensorProto.DOUBLE


def _layer_tensors(params: Mapping[str, np.ndarray], layer: int, spec: Any, variant: str):
  """``W``, ``R`` and ``B`` (or None) of one layer, ONNX's layout."""
  op, hidden = OPS[spec.mode], spec.hidden_size
  suffixes = ["", "_reverse"][: spec.num_directions]
  get = lambda kind, s: reorder(flip_z(params[f"{kind}_l{layer}{s}"], hidden, variant), hidden, op.to_onnx)
  w = np.stack([get("weight_ih", s) for s in suffixes])
  r = np.stack([get("weight_hh", s) for s in suffixes])
  b = np.stack([np.concatenate([get("bias_ih", s), get("bias_hh", s)]) for s in suffixes]) if spec.bias else None
  return w, r, b


def model_proto(
  source: Any,
  variables: Mapping[str, Any] | None = None,
  *,
  variant: str | None = None,
  nonlinearity: str | None = None,
  batch_first: bool | None = None,
  h0: bool = True,
  lengths: bool = False,
  opset: int = OPSET,
) -> onnx.ModelProto:
  """The ONNX model :func:`to_onnx` writes, in memory (checked by ``onnx.checker``).

  Args:
    source: as :func:`to_onnx`'s.
    variables: as :func:`to_onnx`'s.
    variant: as :func:`to_onnx`'s.
    nonlinearity: as :func:`to_onnx`'s.
    batch_first: as :func:`to_onnx`'s.
    h0: whether the model takes an ``h0`` input (and ``c0``, for an LSTM).
    lengths: whether the model takes a ``lengths`` input.
    opset: as :func:`to_onnx`'s.

  Returns:
    The ``onnx.ModelProto``.

  Raises:
    ValueError: an opset out of range, a cell's params, an LSTM with ``proj_size``, an
      unknown ``variant`` or ``nonlinearity``, or one given for another layer.
    TypeError: ``source`` is not a GRU, LSTM or RNN, their params or variables.

  Example:
    >>> proto = parity.onnx.model_proto(jaxgru.GRU(3, 4, num_layers=2, rngs=nnx.Rngs(0)))
    >>> [node.op_type for node in proto.graph.node if node.op_type == "GRU"]
    ['GRU', 'GRU']
  """
  params, found_variant = convert.params_and_variant(source, variables)
  if batch_first is None:
    batch_first = bool(getattr(source, "batch_first", False))
  newest = onnx.defs.onnx_opset_version()
  if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= newest:
    raise ValueError(
      f"opset must be an integer in [{MIN_OPSET}, {newest}] (the recurrent operators' version 14 up to this onnx's "
      f"newest), got {opset!r}"
    )
  if convert.is_cell(params):
    raise ValueError(
      "params are a cell's (weight_ih, ...): ONNX's recurrent operators run sequences; pass a GRU's, LSTM's or RNN's params"
    )
  convert.check_values(params, "params")
  arrays = {k: _arrays.array_to_numpy(v, f"params[{k!r}]") for k, v in params.items()}
  spec = convert.spec_of(arrays, modes=convert.MODES)
  mode = spec.mode
  variant = _variant(variant, found_variant, mode)
  nonlinearity = _nonlinearity(nonlinearity, getattr(source, "nonlinearity", None), mode)
  if spec.proj_size:
    raise ValueError(
      f"this LSTM has proj_size={spec.proj_size} (weight_hr): ONNX's LSTM operator has no projection, so it cannot be "
      "written with it (torch.onnx.export refuses such an LSTM too)"
    )
  if spec.dtype not in _ONNX_DTYPES:
    raise TypeError(f"the parameters' dtype must be float16, float32 or float64 for ONNX's {mode}, got {spec.dtype.name}")
  elem = _ONNX_DTYPES[spec.dtype]
  hidden, dirs = spec.hidden_size, spec.num_directions
  states = [("h0", "h_n", "Y_h"), ("c0", "c_n", "Y_c")][: 2 if mode == "LSTM" else 1]
  time_batch = ["batch", "time"] if batch_first else ["time", "batch"]
  inputs = [helper.make_tensor_value_info("input", elem, [*time_batch, spec.input_size])]
  if h0:
    inputs += [helper.make_tensor_value_info(s, elem, [spec.num_layers * dirs, "batch", hidden]) for s, _, _ in states]
  if lengths:
    inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"]))
  outputs = [helper.make_tensor_value_info("output", elem, [*time_batch, dirs * hidden])]
  outputs += [helper.make_tensor_value_info(n, elem, [spec.num_layers * dirs, "batch", hidden]) for _, n, _ in states]
  nodes, inits = [], [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "flat_directions")]
  inits += [_ints("axis0", [0])] if h0 else []
  x = "input"
  if batch_first:
    nodes.append(helper.make_node("Transpose", ["input"], ["input_tbi"], perm=[1, 0, 2]))
    x = "input_tbi"
  finals: dict[str, list[str]] = {n: [] for _, n, _ in states}
  attrs: dict[str, Any] = {"hidden_size": hidden, "direction": "bidirectional" if spec.bidirectional else "forward"}
  attrs |= {"GRU": {"linear_before_reset": int(variant == "torch")}, "RNN": {"activations": ["Relu"] * dirs}}.get(mode, {})
  if mode == "RNN" and nonlinearity == "tanh":
    del attrs["activations"]  # Tanh is the default
  for layer in range(spec.num_layers):
    w, r, b = _layer_tensors(arrays, layer, spec, variant)
    names = [f"W_l{layer}", f"R_l{layer}", f"B_l{layer}" if b is not None else ""]
    inits += [numpy_helper.from_array(a, n) for a, n in zip((w, r, b), names, strict=True) if a is not None]
    initial = []
    if h0:
      inits += [_ints(f"h0_start_l{layer}", [layer * dirs]), _ints(f"h0_end_l{layer}", [(layer + 1) * dirs])]
      for s, _, _ in states:
        initial.append(f"{s}_l{layer}")
        nodes.append(helper.make_node("Slice", [s, f"h0_start_l{layer}", f"h0_end_l{layer}", "axis0"], [initial[-1]]))
    node_inputs = [x, *names, "lengths" if lengths else "", *(initial or [""] * len(states))]
    while node_inputs[-1] == "":
      node_inputs.pop()
    node_outputs = [f"Y_l{layer}", *(f"{y}_l{layer}" for _, _, y in states)]
    nodes.append(helper.make_node(mode, node_inputs, node_outputs, name=f"{mode.lower()}_l{layer}", **attrs))
    # Y (T, D, B, H) -> (T, B, D*H): the directions side by side, as torch concatenates them
    nodes.append(helper.make_node("Transpose", [f"Y_l{layer}"], [f"Y_tbdh_l{layer}"], perm=[0, 2, 1, 3]))
    x = f"out_l{layer}" if layer + 1 < spec.num_layers or batch_first else "output"
    nodes.append(helper.make_node("Reshape", [f"Y_tbdh_l{layer}", "flat_directions"], [x]))
    for _, n, y in states:
      finals[n].append(f"{y}_l{layer}")
  if batch_first:
    nodes.append(helper.make_node("Transpose", [x], ["output"], perm=[1, 0, 2]))
  nodes += [helper.make_node("Concat", parts, [n], axis=0) for n, parts in finals.items()]
  name = f"jaxgru_{variant}" if mode == "GRU" else f"jaxgru_{mode.lower()}"
  graph = helper.make_graph(nodes, name, inputs, outputs, inits)
  opsets = [helper.make_opsetid("", opset)]
  model = helper.make_model(graph, opset_imports=opsets, producer_name="jaxgru parity")
  model.ir_version = helper.find_min_ir_version_for(opsets)  # the oldest IR the opset allows: older runtimes read it
  onnx.checker.check_model(model, full_check=True)
  return model


def _ints(name: str, values: Sequence[int]) -> onnx.TensorProto:
  return numpy_helper.from_array(np.asarray(values, np.int64), name)


def _variant(variant: str | None, found: str | None, mode: str) -> str:
  if variant is not None and variant not in ("torch", "classic"):
    raise ValueError(f"variant must be 'torch' or 'classic', got {variant!r}")
  if mode != "GRU":
    if variant not in (None, "torch"):
      raise ValueError(f"variant={variant!r} is a GRU's: the {mode} has none")
    return "torch"
  if variant is not None and found is not None and variant != found:
    raise ValueError(f"variant={variant!r} but the module has variant={found!r}")
  return variant or found or "torch"


def _nonlinearity(nonlinearity: str | None, found: Any, mode: str) -> str:
  if nonlinearity is not None and nonlinearity not in ("tanh", "relu"):
    raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
  if mode != "RNN":
    if nonlinearity is not None:
      raise ValueError(f"nonlinearity={nonlinearity!r} is an RNN's: the {mode} has none")
    return "tanh"
  found = found if found in ("tanh", "relu") else None
  if nonlinearity is not None and found is not None and nonlinearity != found:
    raise ValueError(f"nonlinearity={nonlinearity!r} but the module has nonlinearity={found!r}")
  return nonlinearity or found or "tanh"


def to_onnx(
  source: Any,
  path: str | os.PathLike,
  variables: Mapping[str, Any] | None = None,
  *,
  variant: str | None = None,
  nonlinearity: str | None = None,
  batch_first: bool | None = None,
  h0: bool = True,
  lengths: bool = False,
  opset: int = OPSET,
) -> pathlib.Path:
  """Writes a ``jaxgru`` GRU, LSTM or RNN to ``path`` as an ONNX model of ``GRU``, ``LSTM`` or
  ``RNN`` operators, one per layer.

  The model computes :func:`jaxgru.gru` (:func:`jaxgru.lstm`, :func:`jaxgru.rnn`; dropout
  off): inputs ``input`` (T, B, I), or (B, T, I) when ``batch_first``; ``h0`` (L*D, B, H)
  (and an LSTM's ``c0``, the same shape) when ``h0=True``; ``lengths`` (B,) int32 in [1, T]
  when ``lengths=True`` (packed sequences: every direction runs within each sequence's own
  length and the output past it is zero, as ``lengths=`` in ``jaxgru``). Outputs ``output``
  (T, B, D*H) (batch-first like the input) and ``h_n`` (L*D, B, H) (and ``c_n``). Batch and
  time are free dimensions. The parameters' dtype is the model's (ONNX Runtime's CPU kernels
  run float32).

  Args:
    source: a ``jaxgru`` NNX module (:class:`jaxgru.GRU`, :class:`jaxgru.LSTM`,
      :class:`jaxgru.RNN`), a ``jaxgru.linen`` one with ``variables``, a torch ``nn.GRU``,
      ``nn.LSTM`` or ``nn.RNN``, Linen variables or params.
    path: the file; replaced atomically (a failure leaves what it held).
    variables: a Linen module's variables.
    variant: a GRU's: ``"torch"`` (``linear_before_reset=1``) or ``"classic"`` (``0``, z
      negated); a module's own variant when None, else ``"torch"``.
    nonlinearity: an RNN's: ``"tanh"`` or ``"relu"`` (the node's activations); a module's
      own when None, else ``"tanh"`` (params do not record it).
    batch_first: the module's ``batch_first`` when None (False for params).
    h0, lengths: whether the model takes these inputs (ONNX inputs cannot be left out at run
      time; without ``h0`` the state starts at zero).
    opset: the ONNX opset (>= 14), 17 by default.

  Returns:
    ``path`` as a ``pathlib.Path``.

  Raises:
    ValueError: as :func:`model_proto`.
    TypeError: as :func:`model_proto`.

  Example:
    >>> model = jaxgru.GRU(3, 8, num_layers=2, batch_first=True, rngs=nnx.Rngs(0))
    >>> parity.onnx.to_onnx(model, "gru.onnx", lengths=True).name
    'gru.onnx'
  """
  model = model_proto(
    source, variables, variant=variant, nonlinearity=nonlinearity, batch_first=batch_first, h0=h0, lengths=lengths, opset=opset
  )
  data = model.SerializeToString()
  files.atomic_write(path, lambda f: f.write(data))
  return pathlib.Path(path)


def _dims(arg: Any) -> list[int | None]:
  """An ONNX Runtime input's or output's dimensions, None where not a fixed size (named, unnamed
  or the whole shape unknown)."""
  shape = arg.shape if isinstance(arg.shape, list | tuple) else []
  return [d if isinstance(d, int) and not isinstance(d, bool) else None for d in shape]


def run_onnx(
  model: str | os.PathLike | onnx.ModelProto, x: Any, h0: Any = None, lengths: Any = None, *, batch_first: bool | None = None
) -> tuple[np.ndarray, Any]:
  """``(output, h_n)`` of a :func:`to_onnx` model, or ``(output, (h_n, c_n))`` of an LSTM's,
  run by ONNX Runtime on the CPU.

  Any model with an input ``input`` (and optionally ``h0``, ``c0``, ``lengths``) and outputs
  ``output`` and ``h_n`` (and ``c_n``) runs, e.g. ``torch.onnx.export(lstm, ...,
  input_names=["input", "h0", "c0"], output_names=["output", "h_n", "c_n"])``. A model with a
  ``c_n`` output is an LSTM's: ``h0`` is then the pair ``(h0, c0)``, as :func:`jaxgru.lstm`
  takes it. The state is passed when the model has those inputs (zeros when None), and
  ``lengths`` when it has that one. ``batch_first``: whether ``x`` is (B, T, I); when None,
  read from the model (its input's first axis named ``batch``, as :func:`to_onnx` writes it).

  A model saved with external data has it read from the model's own folder, never from the
  working directory; locations outside that folder are refused. ONNX Runtime is given the
  model with its data inside, so it opens no file itself.

  Args:
    model: an ``.onnx`` path or an ``onnx.ModelProto``.
    x: the input, (T, B, I) or (B, T, I) (see ``batch_first``).
    h0: (L*D, B, H), an LSTM's pair of them, or None for zeros.
    lengths: (B,) integers, for a model with a ``lengths`` input.
    batch_first: whether ``x`` is batch-first; read from the model when None.

  Returns:
    ``(output, h_n)``, or ``(output, (h_n, c_n))`` for an LSTM, as NumPy arrays.

  Example:
    >>> path = parity.onnx.to_onnx(jaxgru.GRU(3, 4, rngs=nnx.Rngs(0)), "gru.onnx")
    >>> out, h_n = parity.onnx.run_onnx(path, np.ones((5, 2, 3), np.float32))
    >>> out.shape, h_n.shape
    ((5, 2, 4), (1, 2, 4))

  Raises:
    FileNotFoundError: no file at the path.
    TypeError: ``model`` is neither a path nor an ``onnx.ModelProto``; ``lengths`` not integers.
    ValueError: not a readable ONNX model, or its external data missing or outside its folder;
      ONNX Runtime refuses the model or the inputs (errors about the file name it); inputs or
      outputs that are not a recurrent layer's.
  """
  import onnxruntime as ort

  source = _onnx_read.source_of(model)
  with _onnx_read.naming(source):
    model = _onnx_read.read_model(model)
    try:
      data = model.SerializeToString()
      options = ort.SessionOptions()
      options.log_severity_level = 4  # its refusals come back as the ValueError below, not printed
      with contextlib.redirect_stdout(io.StringIO()):  # its Python layer prints a failed attempt before retrying it
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # protobuf's 2 GiB limit, onnxruntime's own errors
      raise ValueError(f"ONNX Runtime cannot load the model: {type(err).__name__}: {_first_line(err)}") from None
    names = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if "input" not in names or {"output", "h_n"} - set(outputs):
      raise ValueError(
        f"expected a to_onnx model (input 'input', outputs 'output', 'h_n' and an LSTM's 'c_n'), got inputs {list(names)}, "
        f"outputs {list(outputs)}"
      )
    state_names = ["h0", "c0"] if "c_n" in outputs else ["h0"]
    h_n = _dims(outputs["h_n"]) + [None] * 3
    states, hidden = h_n[0], h_n[2]
    x_dims = _dims(names["input"]) + [None] * 3
    if batch_first is None:
      batch_first = bool(names["input"].shape) and names["input"].shape[0] == "batch"
    input_size = x_dims[2]
  if len(state_names) == 2:
    if h0 is not None and not (isinstance(h0, tuple | list) and len(h0) == 2):
      raise ValueError(f"the model is an LSTM's (a c_n output): h0 must be the pair (h0, c0) or None, got {type(h0).__name__}")
    given = list(h0) if h0 is not None else [None, None]
  else:
    given = [h0]
  checked = []
  for name, state in zip(state_names, given, strict=True):
    x, state, lengths = _inputs.check_sequence_inputs(
      x, state, lengths, batch_first=batch_first, states=states, hidden=hidden, input_size=input_size, name=name
    )
    checked.append(state)
  feeds = {"input": x}
  batch = x.shape[0] if batch_first else x.shape[1]
  for name, state in zip(state_names, checked, strict=True):
    if name in names:
      if state is None and (states is None or hidden is None):
        raise ValueError(f"the model's {name} input has no fixed (L*D, B, H) shape: pass {'h0' if name == 'h0' else '(h0, c0)'}")
      feeds[name] = np.zeros((states, batch, hidden), x.dtype) if state is None else state.astype(x.dtype)
    elif state is not None:
      raise ValueError(f"{name} was given but the model has no {name} input (export it with h0=True)")
  if "lengths" in names:
    if lengths is None:
      raise ValueError("the model has a lengths input: pass lengths (B,) in [1, T]")
    feeds["lengths"] = lengths.astype(np.int32)
  elif lengths is not None:
    raise ValueError("lengths was given but the model has no lengths input (export it with lengths=True)")
  wanted = ["output", "h_n", "c_n"][: 1 + len(state_names)]
  try:
    results = session.run(wanted, feeds)
  except Exception as err:  # onnxruntime's own errors: types and shapes the model does not take
    where = f"{source}: " if source is not None else ""
    raise ValueError(
      f"{where}ONNX Runtime cannot run the model on these inputs: {type(err).__name__}: {_first_line(err)}"
    ) from None
  return (results[0], results[1]) if len(results) == 2 else (results[0], (results[1], results[2]))


def _first_line(err: BaseException) -> str:
  return (str(err).strip().splitlines() or [""])[0]
