r"""``jaxgru`` GRUs to ONNX files with ``GRU`` operators, and the GRU nodes of ONNX models back.

The ONNX ``GRU`` operator (opset 14 onwards) holds one layer, one or both directions, gates
ordered (z, r, h):

.. math::

  z = \sigma(X W_z^T + H R_z^T + W_{bz} + R_{bz}), \quad
  r = \sigma(X W_r^T + H R_r^T + W_{br} + R_{br}), \quad
  H' = (1 - z) \odot \tilde h + z \odot H

with ``linear_before_reset=1`` :math:`\tilde h = \tanh(X W_h^T + W_{bh} + r \odot (H R_h^T + R_{bh}))`,
torch's GRU (``variant="torch"``), and with ``linear_before_reset=0``
:math:`\tilde h = \tanh(X W_h^T + W_{bh} + (r \odot H) R_h^T + R_{bh})`, the "reset before" GRU.
``jaxgru``'s ``variant="classic"`` is that GRU with z and 1 - z exchanged, so it is stored with
its z rows and biases negated (:math:`1 - \sigma(a) = \sigma(-a)`): exact, nothing lost.

Weights: ``W`` (D, 3H, I) = ``weight_ih`` with its gate blocks reordered, ``R`` (D, 3H, H) =
``weight_hh``, ``B`` (D, 6H) = ``[bias_ih, bias_hh]``; each direction and layer keeps both biases.

- :func:`to_onnx`: a ``jaxgru`` GRU (NNX or Linen module, or params) to an ``.onnx`` file
  (written atomically), one ``GRU`` node per layer; inputs ``input``, optional ``h0`` and
  ``lengths`` (the operator's ``sequence_lens``), outputs ``output`` and ``h_n``, shaped as
  :func:`jaxgru.gru`'s.
- :func:`onnx_to_params`: the GRU nodes of a model (e.g. ``torch.onnx.export`` of an
  ``nn.GRU``) as ``jaxgru`` params, refusing what does not map.
- :func:`run_onnx`: an ``.onnx`` file's ``output`` and ``h_n`` from ONNX Runtime's CPU kernel.

Needs the ``onnx`` extra (``onnx``, ``onnxruntime``).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from parity import _arrays
from parity.frameworks import _inputs, _onnx_read
from parity.frameworks._onnx_read import flip_z, onnx_to_params, rzn_to_zrh
from parity.weights import convert, files

__all__ = ["MIN_OPSET", "OPSET", "model_proto", "onnx_to_params", "run_onnx", "to_onnx"]

OPSET = 17  # the default: GRU-14 (the current GRU), read by ONNX Runtime 1.13 and later
MIN_OPSET = 14
_ONNX_DTYPES = {np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(np.float32): TensorProto.FLOAT}
_ONNX_DTYPES[np.dtype(np.float64)] = TensorProto.DOUBLE


def _layer_tensors(params: Mapping[str, np.ndarray], layer: int, directions: int, hidden: int, bias: bool, variant: str):
  """``W``, ``R`` and ``B`` (or None) of one layer, ONNX's layout."""
  suffixes = ["", "_reverse"][:directions]
  get = lambda kind, s: rzn_to_zrh(flip_z(params[f"{kind}_l{layer}{s}"], hidden, variant), hidden)
  w = np.stack([get("weight_ih", s) for s in suffixes])
  r = np.stack([get("weight_hh", s) for s in suffixes])
  b = np.stack([np.concatenate([get("bias_ih", s), get("bias_hh", s)]) for s in suffixes]) if bias else None
  return w, r, b


def model_proto(
  source: Any,
  variables: Mapping[str, Any] | None = None,
  *,
  variant: str | None = None,
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
    batch_first: as :func:`to_onnx`'s.
    h0: whether the model takes an ``h0`` input.
    lengths: whether the model takes a ``lengths`` input.
    opset: as :func:`to_onnx`'s.

  Returns:
    The ``onnx.ModelProto``.

  Raises:
    ValueError: an opset out of range, a cell's params, or an unknown ``variant``.
    TypeError: ``source`` is not a GRU, its params or variables.

  Example:
    >>> proto = parity.onnx.model_proto(jaxgru.GRU(3, 4, num_layers=2, rngs=nnx.Rngs(0)))
    >>> [node.op_type for node in proto.graph.node if node.op_type == "GRU"]
    ['GRU', 'GRU']
  """
  params, found_variant = convert.params_and_variant(source, variables)
  variant = _variant(variant, found_variant)
  if batch_first is None:
    batch_first = bool(getattr(source, "batch_first", False))
  newest = onnx.defs.onnx_opset_version()
  if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= newest:
    raise ValueError(
      f"opset must be an integer in [{MIN_OPSET}, {newest}] (the GRU operator's version 14 up to this onnx's newest), got {opset!r}"
    )
  if convert.is_cell(params):
    raise ValueError("params are a GRUCell's (weight_ih, ...): ONNX's GRU operator runs sequences; pass a GRU's params")
  convert.check_values(params, "params")
  arrays = {k: _arrays.array_to_numpy(v, f"params[{k!r}]") for k, v in params.items()}
  spec = convert.spec_of(arrays)
  if spec.dtype not in _ONNX_DTYPES:
    raise TypeError(f"the parameters' dtype must be float16, float32 or float64 for ONNX's GRU, got {spec.dtype.name}")
  elem = _ONNX_DTYPES[spec.dtype]
  hidden, dirs = spec.hidden_size, spec.num_directions
  direction = "bidirectional" if spec.bidirectional else "forward"
  time_batch = ["batch", "time"] if batch_first else ["time", "batch"]
  inputs = [helper.make_tensor_value_info("input", elem, [*time_batch, spec.input_size])]
  if h0:
    inputs.append(helper.make_tensor_value_info("h0", elem, [spec.num_layers * dirs, "batch", hidden]))
  if lengths:
    inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"]))
  outputs = [
    helper.make_tensor_value_info("output", elem, [*time_batch, dirs * hidden]),
    helper.make_tensor_value_info("h_n", elem, [spec.num_layers * dirs, "batch", hidden]),
  ]
  nodes, inits = [], [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "flat_directions")]
  inits += [_ints("axis0", [0])] if h0 else []
  x = "input"
  if batch_first:
    nodes.append(helper.make_node("Transpose", ["input"], ["input_tbi"], perm=[1, 0, 2]))
    x = "input_tbi"
  finals = []
  for layer in range(spec.num_layers):
    w, r, b = _layer_tensors(arrays, layer, dirs, hidden, spec.bias, variant)
    names = [f"W_l{layer}", f"R_l{layer}", f"B_l{layer}" if b is not None else ""]
    inits += [numpy_helper.from_array(a, n) for a, n in zip((w, r, b), names, strict=True) if a is not None]
    h0_l = ""
    if h0:
      inits += [_ints(f"h0_start_l{layer}", [layer * dirs]), _ints(f"h0_end_l{layer}", [(layer + 1) * dirs])]
      h0_l = f"h0_l{layer}"
      nodes.append(helper.make_node("Slice", ["h0", f"h0_start_l{layer}", f"h0_end_l{layer}", "axis0"], [h0_l]))
    gru_inputs = [x, *names, "lengths" if lengths else "", h0_l]
    while gru_inputs[-1] == "":
      gru_inputs.pop()
    attrs = dict(hidden_size=hidden, direction=direction, linear_before_reset=int(variant == "torch"))
    nodes.append(helper.make_node("GRU", gru_inputs, [f"Y_l{layer}", f"Y_h_l{layer}"], name=f"gru_l{layer}", **attrs))
    # Y (T, D, B, H) -> (T, B, D*H): the directions side by side, as torch concatenates them
    nodes.append(helper.make_node("Transpose", [f"Y_l{layer}"], [f"Y_tbdh_l{layer}"], perm=[0, 2, 1, 3]))
    x = f"out_l{layer}" if layer + 1 < spec.num_layers or batch_first else "output"
    nodes.append(helper.make_node("Reshape", [f"Y_tbdh_l{layer}", "flat_directions"], [x]))
    finals.append(f"Y_h_l{layer}")
  if batch_first:
    nodes.append(helper.make_node("Transpose", [x], ["output"], perm=[1, 0, 2]))
  nodes.append(helper.make_node("Concat", finals, ["h_n"], axis=0))
  graph = helper.make_graph(nodes, f"jaxgru_{variant}", inputs, outputs, inits)
  opsets = [helper.make_opsetid("", opset)]
  model = helper.make_model(graph, opset_imports=opsets, producer_name="jaxgru parity")
  model.ir_version = helper.find_min_ir_version_for(opsets)  # the oldest IR the opset allows: older runtimes read it
  onnx.checker.check_model(model, full_check=True)
  return model


def _ints(name: str, values: Sequence[int]) -> onnx.TensorProto:
  return numpy_helper.from_array(np.asarray(values, np.int64), name)


def _variant(variant: str | None, found: str | None) -> str:
  if variant is not None and variant not in ("torch", "classic"):
    raise ValueError(f"variant must be 'torch' or 'classic', got {variant!r}")
  if variant is not None and found is not None and variant != found:
    raise ValueError(f"variant={variant!r} but the module has variant={found!r}")
  return variant or found or "torch"


def to_onnx(
  source: Any,
  path: str | os.PathLike,
  variables: Mapping[str, Any] | None = None,
  *,
  variant: str | None = None,
  batch_first: bool | None = None,
  h0: bool = True,
  lengths: bool = False,
  opset: int = OPSET,
) -> pathlib.Path:
  """Writes a ``jaxgru`` GRU to ``path`` as an ONNX model of ``GRU`` operators, one per layer.

  The model computes :func:`jaxgru.gru` (dropout off): inputs ``input`` (T, B, I), or
  (B, T, I) when ``batch_first``; ``h0`` (L*D, B, H) when ``h0=True``; ``lengths`` (B,)
  int32 in [1, T] when ``lengths=True`` (packed sequences: every direction runs within each
  sequence's own length and the output past it is zero, as ``jaxgru.gru(..., lengths=)``).
  Outputs ``output`` (T, B, D*H) (batch-first like the input) and ``h_n`` (L*D, B, H).
  Batch and time are free dimensions. The parameters' dtype is the model's (ONNX Runtime's
  CPU GRU runs float32).

  Args:
    source: a :class:`jaxgru.GRU` (NNX), a ``jaxgru.linen.GRU`` with ``variables``, a torch
      ``nn.GRU``, Linen variables or a GRU's params.
    path: the file; replaced atomically (a failure leaves what it held).
    variables: a Linen module's variables.
    variant: ``"torch"`` (``linear_before_reset=1``) or ``"classic"`` (``0``, z negated); a
      module's own variant when None, else ``"torch"``.
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
  model = model_proto(source, variables, variant=variant, batch_first=batch_first, h0=h0, lengths=lengths, opset=opset)
  data = model.SerializeToString()
  files.atomic_write(path, lambda f: f.write(data))
  return pathlib.Path(path)


def run_onnx(
  model: str | os.PathLike | onnx.ModelProto, x: Any, h0: Any = None, lengths: Any = None, *, batch_first: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """``(output, h_n)`` of a :func:`to_onnx` model, run by ONNX Runtime on the CPU.

  Any model with an input ``input`` (and optionally ``h0``, ``lengths``) and outputs ``output``
  and ``h_n`` runs, e.g. ``torch.onnx.export(gru, ..., input_names=["input", "h0"],
  output_names=["output", "h_n"])``. ``h0`` and ``lengths`` are passed when the model has those
  inputs (``h0`` zeros when None). ``batch_first``: whether ``x`` is (B, T, I); when None, read
  from the model (its input's first axis named ``batch``, as :func:`to_onnx` writes it).

  A model saved with external data has it read from the model's own folder, never from the
  working directory; locations outside that folder are refused. ONNX Runtime is given the
  model with its data inside, so it opens no file itself.

  Args:
    model: an ``.onnx`` path or an ``onnx.ModelProto``.
    x: the input, (T, B, I) or (B, T, I) (see ``batch_first``).
    h0: (L*D, B, H), or None for zeros.
    lengths: (B,) integers, for a model with a ``lengths`` input.
    batch_first: whether ``x`` is batch-first; read from the model when None.

  Returns:
    The pair ``(output, h_n)`` as NumPy arrays.

  Example:
    >>> path = parity.onnx.to_onnx(jaxgru.GRU(3, 4, rngs=nnx.Rngs(0)), "gru.onnx")
    >>> out, h_n = parity.onnx.run_onnx(path, np.ones((5, 2, 3), np.float32))
    >>> out.shape, h_n.shape
    ((5, 2, 4), (1, 2, 4))

  Raises:
    FileNotFoundError: no file at the path.
    TypeError: ``model`` is neither a path nor an ``onnx.ModelProto``.
    ValueError: not a readable ONNX model, or its external data missing or outside its folder;
      ONNX Runtime refuses the model or the inputs; inputs or outputs that are not a GRU's.
  """
  import onnxruntime as ort

  model = _onnx_read.read_model(model)
  try:
    data = model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
  except Exception as err:  # protobuf's 2 GiB limit, onnxruntime's own errors
    raise ValueError(f"ONNX Runtime cannot load the model: {type(err).__name__}: {_first_line(err)}") from None
  names = {i.name: i for i in session.get_inputs()}
  outputs = {o.name: o for o in session.get_outputs()}
  if "input" not in names or {"output", "h_n"} - set(outputs):
    raise ValueError(
      f"expected a to_onnx model (input 'input', outputs 'output', 'h_n'), got inputs {list(names)}, outputs {list(outputs)}"
    )
  states, hidden = (d if isinstance(d, int) else None for d in outputs["h_n"].shape[::2])
  if batch_first is None:
    batch_first = names["input"].shape[0] == "batch"
  input_size = names["input"].shape[2] if isinstance(names["input"].shape[2], int) else None
  x, h0, lengths = _inputs.check_sequence_inputs(
    x, h0, lengths, batch_first=batch_first, states=states, hidden=hidden, input_size=input_size
  )
  feeds = {"input": x}
  batch = x.shape[0] if batch_first else x.shape[1]
  if "h0" in names:
    if h0 is None and (states is None or hidden is None):
      raise ValueError("the model's h0 input has no fixed (L*D, B, H) shape: pass h0")
    feeds["h0"] = np.zeros((states, batch, hidden), x.dtype) if h0 is None else h0.astype(x.dtype)
  elif h0 is not None:
    raise ValueError("h0 was given but the model has no h0 input (export it with h0=True)")
  if "lengths" in names:
    if lengths is None:
      raise ValueError("the model has a lengths input: pass lengths (B,) in [1, T]")
    feeds["lengths"] = lengths.astype(np.int32)
  elif lengths is not None:
    raise ValueError("lengths was given but the model has no lengths input (export it with lengths=True)")
  try:
    output, h_n = session.run(["output", "h_n"], feeds)
  except Exception as err:  # onnxruntime's own errors: types and shapes the model does not take
    raise ValueError(f"ONNX Runtime cannot run the model on these inputs: {type(err).__name__}: {_first_line(err)}") from None
  return output, h_n


def _first_line(err: BaseException) -> str:
  return (str(err).strip().splitlines() or [""])[0]
