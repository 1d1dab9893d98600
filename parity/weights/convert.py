"""Weights between torch's ``nn.GRU``, ``nn.LSTM``, ``nn.RNN`` (and their cells) and ``jaxgru``, in
both directions, bit for bit.

torch's state-dict names and shapes are ``jaxgru``'s parameter layout, so a conversion is a
change of array type, never of values: float16, bfloat16, float32 and float64 all round-trip
with identical bits. Every entry point checks the layout strictly, like torch's
``load_state_dict(strict=True)``: missing keys, unexpected keys and wrong shapes are listed
together in one ``ValueError``.

- :func:`state_dict_to_params` / :func:`params_to_state_dict`: plain mappings of arrays.
- :func:`from_torch` / :func:`to_torch`: modules, with their configuration.
- :func:`module_from_params`: a ``jaxgru`` module configured from its params alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import torch
from flax import nnx

import jaxgru
from jaxgru._params import GRUSpec, cell_shapes, cell_spec, check_layout, read_spec
from parity import _arrays

Params = dict[str, jax.Array]
JaxModule = jaxgru.GRU | jaxgru.GRUCell | jaxgru.linen.GRU | jaxgru.linen.GRUCell
JaxLayer = (
  JaxModule
  | jaxgru.LSTM
  | jaxgru.LSTMCell
  | jaxgru.RNN
  | jaxgru.RNNCell
  | jaxgru.linen.LSTM
  | jaxgru.linen.LSTMCell
  | jaxgru.linen.RNN
  | jaxgru.linen.RNNCell
)
TorchLayer = torch.nn.GRU | torch.nn.GRUCell | torch.nn.LSTM | torch.nn.LSTMCell | torch.nn.RNN | torch.nn.RNNCell
MODES = ("GRU", "LSTM", "RNN")
# each torch layer's class in torch, in jaxgru (NNX and Linen), by (mode, cell)
TORCH = {
  ("GRU", False): torch.nn.GRU,
  ("GRU", True): torch.nn.GRUCell,
  ("LSTM", False): torch.nn.LSTM,
  ("LSTM", True): torch.nn.LSTMCell,
  ("RNN", False): torch.nn.RNN,
  ("RNN", True): torch.nn.RNNCell,
}
NNX = {key: getattr(jaxgru, cls.__name__) for key, cls in TORCH.items()}
LINEN = {key: getattr(jaxgru.linen, cls.__name__) for key, cls in TORCH.items()}


def mode_of(params: Mapping[str, Any]) -> str:
  """Which torch layer a parameter mapping's keys and shapes describe: ``"GRU"``, ``"LSTM"`` (a
  ``weight_hr`` key, or ``weight_hh`` with 4H rows) or ``"RNN"`` (H rows); ``"GRU"`` when unsure,
  so that the GRU's strict check reports what is wrong."""
  if any(isinstance(k, str) and k.startswith("weight_hr") for k in params):
    return "LSTM"
  w_hh = params.get("weight_hh", params.get("weight_hh_l0"))
  shape = tuple(getattr(w_hh, "shape", ()))
  if len(shape) == 2 and shape[1] > 0:
    return {4: "LSTM", 1: "RNN"}.get(shape[0] // shape[1] if shape[0] % shape[1] == 0 else 0, "GRU")
  return "GRU"


def is_cell(params: Mapping[str, Any]) -> bool:
  """Whether ``params`` has a ``GRUCell``'s keys (``weight_ih``) rather than a GRU's (``weight_ih_l0``)."""
  return "weight_ih" in params or "weight_hh" in params


def spec_of(params: Any, prefix: str = "", modes: tuple[str, ...] = ("GRU",)) -> GRUSpec:
  """The configuration a torch-layout GRU or GRUCell mapping describes, checked strictly.

  ``prefix``, the prefix already taken off the keys, only makes the hint below whole. ``modes``:
  the layers the caller carries; an LSTM's or RNN's mapping is read as such when its mode is
  among them, else checked as a GRU's (and refused with the GRU's layout).

  Raises:
    TypeError: not a mapping of floating arrays of one dtype.
    ValueError: missing, unexpected or wrongly shaped keys (all listed), with a hint when the
      keys carry a prefix such as ``gru.`` (a whole model's state dict).
  """
  mode = mode_of(params) if isinstance(params, Mapping) else "GRU"
  mode = mode if mode in modes else "GRU"
  if isinstance(params, Mapping) and is_cell(params):
    return cell_spec(params, mode)
  try:
    return read_spec(params, mode)
  except ValueError as err:
    hint = _prefix_hint(params, prefix)
    raise ValueError(f"{err}{hint}") from None


def _prefix_hint(params: Mapping[str, Any], used: str = "") -> str:
  prefixes = sorted({k[: -len(end)] for k in params for end in ("weight_ih_l0", "weight_ih") if k.endswith("." + end)})
  if not prefixes:
    return ""
  prefixes = [used + p for p in prefixes]
  return f"\n  the keys look like a model's state dict holding a GRU under {prefixes}; select it with prefix={prefixes[0]!r}"


def select(state_dict: Mapping[str, Any], prefix: str, name: str = "state_dict") -> dict[str, Any]:
  """The entries of ``state_dict`` whose keys start with ``prefix``, with the prefix taken off
  (torch's convention: ``prefix="rnn."`` turns ``rnn.weight_ih_l0`` into ``weight_ih_l0``).

  Raises:
    TypeError: ``prefix`` is not a str.
    ValueError: no key starts with ``prefix``, or ``prefix`` lacks its final dot (``"rnn"``
      for ``"rnn."``); the message names the prefix to use.
  """
  if not isinstance(prefix, str):
    raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
  if not prefix:
    return dict(state_dict)
  selected = {k[len(prefix) :]: v for k, v in state_dict.items() if isinstance(k, str) and k.startswith(prefix)}
  if selected and not prefix.endswith(".") and all(k.startswith(".") for k in selected):
    raise ValueError(
      f"prefix={prefix!r} leaves a dot in front of every key of {name}: torch's prefixes end with one, use prefix={prefix + '.'!r}"
    )
  if not selected:
    keys = sorted(map(str, state_dict))
    shown = keys if len(keys) <= 30 else keys[:30] + [f"... ({len(keys) - 30} more)"]
    raise ValueError(f"{name} has no key starting with prefix={prefix!r}; its keys are {shown}{_prefix_hint(state_dict)}")
  return selected


def check_values(state_dict: Any, name: str) -> None:
  if not isinstance(state_dict, Mapping):
    raise TypeError(f"{name} must be a mapping of torch state-dict keys to tensors, got {type(state_dict).__name__}")
  not_arrays = {k: type(v).__name__ for k, v in state_dict.items() if not (hasattr(v, "shape") and hasattr(v, "dtype"))}
  if not_arrays:
    raise TypeError(
      f"{name} must map names to tensors or arrays; these entries are not: {not_arrays}. "
      "A training checkpoint ({'model': ..., 'optimizer': ...}) holds the state dict under one of its keys: pass that."
    )


def state_dict_to_params(state_dict: Mapping[str, Any], *, prefix: str = "", dtype: Any = None) -> Params:
  """A torch ``GRU`` / ``GRUCell`` (``LSTM``, ``RNN``, their cells) state dict as ``jaxgru`` params
  (JAX arrays), bit for bit.

  Args:
    state_dict: torch tensors (or NumPy / JAX arrays) under torch's names, e.g.
      ``torch.nn.GRU(...).state_dict()``.
    prefix: take only the keys under this prefix, without it: ``prefix="rnn."`` takes the GRU
      out of a whole model's state dict (``rnn.weight_ih_l0``, ``encoder.weight``, ...).
    dtype: cast every parameter to this dtype (float16, bfloat16, float32 or float64, in any
      spelling); None keeps the stored dtype and bits.

  Returns:
    ``{"weight_ih_l0": jax.Array, ...}``, ready for :func:`jaxgru.gru` or ``load_state_dict``.

  Raises:
    TypeError: a value is not a tensor, a dtype is not a GRU dtype, dtypes are mixed, or a
      dtype is float64 while JAX runs in 32-bit mode.
    ValueError: the keys or shapes are not a GRU's, LSTM's, RNN's or cell's (every problem
      listed, as a GRU's when the layer is unclear), or no key starts with ``prefix``.

  Example:
    >>> params = parity.state_dict_to_params(torch.nn.GRU(3, 4).state_dict())
    >>> sorted(params)
    ['bias_hh_l0', 'bias_ih_l0', 'weight_hh_l0', 'weight_ih_l0']
  """
  if isinstance(state_dict, Mapping):
    state_dict = select(state_dict, prefix)
  check_values(state_dict, "state_dict")
  arrays = {k: _arrays.array_to_numpy(v, f"state_dict[{prefix + k!r}]") for k, v in state_dict.items()}
  spec = spec_of(arrays, prefix, MODES)
  target = spec.dtype if dtype is None else _arrays.numpy_dtype(dtype)
  _arrays.check_jax_can_hold(target, "the parameters' dtype")
  return {k: _arrays.to_jax(v.astype(target, copy=False), k) for k, v in arrays.items()}


def params_to_state_dict(params: Mapping[str, Any], *, prefix: str = "") -> dict[str, torch.Tensor]:
  """``jaxgru`` params as a torch state dict (CPU tensors, torch's key order), bit for bit.

  ``torch.nn.GRU(...).load_state_dict(params_to_state_dict(params))`` then loads them; with
  ``prefix="rnn."`` the keys are ``rnn.weight_ih_l0``, ..., those of a GRU that a larger model
  holds as ``self.rnn``.

  Args:
    params: torch-layout params of a GRU, LSTM, RNN or cell (JAX or NumPy arrays, or tensors).
    prefix: put before every key.

  Returns:
    ``{prefix + key: torch.Tensor}``, on the CPU, in the params' dtype.

  Raises:
    TypeError: ``prefix`` is not a str, or a value is not an array.
    ValueError: the keys or shapes are not a GRU's or a cell's.

  Example:
    >>> params = jaxgru.init_gru_params(jax.random.key(0), 3, 4)
    >>> torch.nn.GRU(3, 4).load_state_dict(parity.params_to_state_dict(params))
    <All keys matched successfully>
  """
  if not isinstance(prefix, str):
    raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
  check_values(params, "params")
  arrays = {k: _arrays.array_to_numpy(v, f"params[{k!r}]") for k, v in params.items()}
  spec_of(arrays, modes=MODES)
  return {prefix + k: _arrays.to_tensor(v, k) for k, v in arrays.items()}


def _kind(module: Any) -> tuple[str, bool]:
  """``(mode, cell)`` of a torch or jaxgru layer: ``("LSTM", False)`` for ``torch.nn.LSTM``."""
  for table in (TORCH, NNX, LINEN):
    for key, cls in table.items():
      if isinstance(module, cls):
        return key
  raise TypeError(f"not a recurrent layer: {type(module).__name__}")


def _config(module: Any) -> dict[str, Any]:
  mode, cell = _kind(module)
  names = ("input_size", "hidden_size", "bias")
  if not cell:
    names += ("num_layers", "batch_first", "dropout", "bidirectional")
  names += {"LSTM": () if cell else ("proj_size",), "RNN": ("nonlinearity",)}.get(mode, ())
  return {name: getattr(module, name) for name in names}


def from_torch(module: Any, *, training: bool | None = None, linen: bool = False, rngs: nnx.Rngs | None = None) -> Any:
  """A torch GRU, LSTM or RNN as the same ``jaxgru`` module: configuration, dtype and every bit of every weight.

  ``torch.nn.GRU`` -> :class:`jaxgru.GRU`, ``torch.nn.GRUCell`` -> :class:`jaxgru.GRUCell`
  (Flax NNX), and the same for ``LSTM`` (``proj_size`` kept), ``RNN`` (its ``nonlinearity``
  kept) and their cells, with ``param_dtype`` the torch parameters' dtype and ``dtype=None``.

  .. warning:: By default the NNX GRU takes torch's mode, as a copy of the torch module would:
     one converted from a model in ``eval()`` (a pickled model often is) is deterministic, so it
     trains *without dropout* until ``model.train()``. ``training=True`` / ``False`` sets the
     mode explicitly; the repr shows it (``deterministic=True`` is eval mode).
     :func:`module_from_params` builds a fresh module, in training mode unless told otherwise.

  Args:
    module: the torch module (any device; the weights are copied to the host).
    training: the NNX GRU's mode (``True``: dropout on, like ``.train()``); None copies
      ``module.training``. Linen modules take ``deterministic`` at call time instead (Flax's
      convention), so with ``linen=True`` it must be None.
    linen: return ``(jaxgru.linen.GRU(...), {"params": params})`` (or the ``GRUCell`` pair)
      instead: a Linen module and its variables.
    rngs: the NNX module's rngs (its ``dropout`` stream matters when ``dropout > 0``);
      ``nnx.Rngs(0)`` when None.

  Returns:
    The :class:`jaxgru.GRU` or :class:`jaxgru.GRUCell`, or with ``linen=True`` the pair
    ``(Linen module, variables)``.

  Raises:
    TypeError: ``module`` is not a torch ``GRU``, ``LSTM``, ``RNN`` or one of their cells, or
      ``training`` is not a bool or None.
    ValueError: ``training`` given with ``linen=True``.

  Example:
    >>> model = parity.from_torch(torch.nn.GRU(3, 8, num_layers=2, batch_first=True))
    >>> model.num_layers, model.batch_first, model.weight_ih_l1[...].shape
    (2, True, (24, 8))
  """
  if not isinstance(module, TorchLayer):
    raise TypeError(
      f"module must be a torch.nn.GRU, LSTM or RNN or one of their cells (GRUCell, ...), got {type(module).__name__}"
    )
  if training is not None and not isinstance(training, bool):
    raise TypeError(f"training must be True, False or None, got {training!r}")
  params = state_dict_to_params(module.state_dict())
  config = _config(module)
  if linen:
    if training is not None:
      raise ValueError("training applies to the NNX module; a Linen GRU takes deterministic= at call time")
    return LINEN[_kind(module)](**config, param_dtype=next(iter(params.values())).dtype), {"params": params}
  extra = {k: config[k] for k in ("batch_first", "dropout", "nonlinearity") if k in config}
  return module_from_params(params, **extra, training=module.training if training is None else training, rngs=rngs)


def module_from_params(
  params: Mapping[str, Any],
  *,
  batch_first: bool = False,
  dropout: float = 0.0,
  variant: str = "torch",
  nonlinearity: str = "tanh",
  training: bool = True,
  rngs: nnx.Rngs | None = None,
) -> Any:
  """A :class:`jaxgru.GRU` (or :class:`jaxgru.GRUCell`, for cell keys) holding ``params``; an
  LSTM's or RNN's params give :class:`jaxgru.LSTM` or :class:`jaxgru.RNN` (or their cells).

  The sizes, layers, directions and bias are read from the keys and shapes, ``param_dtype``
  from the arrays; what a state dict cannot say (``batch_first``, ``dropout``, ``variant``)
  is given here. Like a freshly built torch or Flax module, the GRU is in training mode
  (dropout on when ``dropout > 0``) unless ``training=False``, which makes it deterministic,
  like torch's ``eval()``. ``rngs`` (``nnx.Rngs(0)`` when None) feeds the GRU's dropout stream.

  Args:
    params: torch-layout params of a GRU or a cell.
    batch_first: the GRU's ``batch_first``.
    dropout: the GRU's dropout between layers.
    variant: ``"torch"`` or ``"classic"`` (a GRU's).
    nonlinearity: ``"tanh"`` or ``"relu"`` (an RNN's: its state dict does not record it).
    training: the module's mode (False: deterministic).
    rngs: the module's rngs; ``nnx.Rngs(0)`` when None.

  Returns:
    The :class:`jaxgru.GRU`, :class:`jaxgru.LSTM`, :class:`jaxgru.RNN` or cell holding ``params``.

  Raises:
    TypeError: ``training`` is not a bool; float64 params while JAX runs in 32-bit mode.
    ValueError: the keys or shapes are not a GRU's or a cell's.

  Example:
    >>> params = jaxgru.init_gru_params(jax.random.key(0), 3, 4, bidirectional=True)
    >>> model = parity.module_from_params(params, batch_first=True)
    >>> model.bidirectional, model.batch_first
    (True, True)
  """
  if not isinstance(training, bool):
    raise TypeError(f"training must be True or False, got {training!r}")
  spec = spec_of(params, modes=MODES)
  _arrays.check_jax_can_hold(spec.dtype, "the parameters' dtype")
  common = dict(input_size=spec.input_size, hidden_size=spec.hidden_size, bias=spec.bias)
  common |= dict(param_dtype=spec.dtype, rngs=nnx.Rngs(0) if rngs is None else rngs)
  common |= {"GRU": {"variant": variant}, "RNN": {"nonlinearity": nonlinearity}}.get(spec.mode, {})
  cls = NNX[spec.mode, is_cell(params)]
  if is_cell(params):
    module = cls(**common)
  else:
    layer = dict(num_layers=spec.num_layers, batch_first=batch_first, dropout=dropout, bidirectional=spec.bidirectional)
    module = cls(**common, **layer, **({"proj_size": spec.proj_size} if spec.mode == "LSTM" else {}), deterministic=not training)
  module.load_state_dict(params)
  return module


def params_and_variant(source: Any, variables: Mapping[str, Any] | None = None) -> tuple[Mapping[str, Any], str | None]:
  """The torch-layout params behind any GRU this package converts, and its ``variant`` when
  ``source`` is a ``jaxgru`` module (None otherwise: a params mapping does not say).

  ``source`` is a ``jaxgru`` NNX module, a ``jaxgru.linen`` module (with ``variables``), a
  torch ``GRU`` / ``GRUCell``, Linen variables ``{"params": {...}}``, or a params mapping.
  """
  if isinstance(source, TorchLayer):
    return source.state_dict(), "torch"
  variant = None
  if isinstance(source, JaxLayer):
    variant = getattr(source, "variant", "torch")
    if isinstance(source, nnx.Module):
      return source.state_dict(), variant
    if variables is None:
      raise ValueError(f"a {type(source).__name__} (Linen) holds no weights: pass its variables too")
    source = variables
  if isinstance(source, Mapping) and isinstance(source.get("params"), Mapping):
    source = source["params"]  # Linen variables: {"params": {...}, other collections}
  if not isinstance(source, Mapping):
    raise TypeError(
      f"expected a jaxgru module, a torch.nn.GRU / GRUCell, Linen variables or a params mapping, got {type(source).__name__}"
    )
  return source, variant


def params_of(source: Any, variables: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
  """Like :func:`params_and_variant`, for torch: a ``variant="classic"`` module is refused,
  since torch computes another function with its weights."""
  params, variant = params_and_variant(source, variables)
  if variant not in (None, "torch"):
    raise ValueError(
      f"this {type(source).__name__} has variant={variant!r}: torch.nn.GRU computes variant='torch', so its "
      "weights would compute something else there. To move the raw weights anyway, pass module.state_dict()."
    )
  return params


def to_torch(module: Any, variables: Mapping[str, Any] | None = None) -> torch.nn.Module:
  """A ``jaxgru`` module as the same torch module (CPU), every weight bit for bit.

  :class:`jaxgru.GRU` -> ``torch.nn.GRU`` (in eval mode when the GRU is deterministic),
  :class:`jaxgru.GRUCell` -> ``torch.nn.GRUCell``, and the same for the LSTM, the RNN and their
  cells; Linen modules take their ``variables``.
  torch computes in the parameters' dtype, so a module ``dtype`` other than ``param_dtype``
  is not carried over.

  Args:
    module: a :class:`jaxgru.GRU`, :class:`jaxgru.LSTM`, :class:`jaxgru.RNN` or a cell, or a Linen
      one with ``variables``.
    variables: the Linen module's variables (``{"params": ...}``); None for NNX modules.

  Returns:
    The torch module (``torch.nn.GRU``, ``LSTM``, ``RNN`` or a cell), configured like ``module``.

  Raises:
    TypeError: ``module`` is not a ``jaxgru`` module.
    ValueError: ``variant="classic"`` (torch has no such GRU), or Linen without ``variables``.

  Example:
    >>> model = jaxgru.GRU(3, 4, num_layers=2, rngs=nnx.Rngs(0))
    >>> parity.to_torch(model)
    GRU(3, 4, num_layers=2)
  """
  if not isinstance(module, JaxLayer):
    raise TypeError(
      "module must be a jaxgru.GRU, LSTM or RNN, one of their cells, or a jaxgru.linen one, "
      f"got {type(module).__name__}; for a plain params mapping use parity.params_to_state_dict"
    )
  state_dict = params_to_state_dict(params_of(module, variables))
  dtype = next(iter(state_dict.values())).dtype
  config = _config(module)
  mode, cell = _kind(module)
  if cell:
    shapes = cell_shapes(config["input_size"], config["hidden_size"], config["bias"], mode)
  else:
    sizes = (config[k] for k in ("input_size", "hidden_size", "num_layers", "bias", "bidirectional"))
    shapes = jaxgru.expected_shapes(*sizes, mode=mode, proj_size=config.get("proj_size", 0))
  check_layout(state_dict, shapes, f"{type(module).__name__}({', '.join(f'{k}={v}' for k, v in config.items())})")
  result = TORCH[mode, cell](**config, dtype=dtype)
  result.load_state_dict(state_dict)
  if not cell and getattr(module, "deterministic", None) is not None:
    result.train(not module.deterministic)
  return result
