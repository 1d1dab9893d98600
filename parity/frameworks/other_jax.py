r"""Weights between ``jaxgru`` and the GRU, LSTM and simple RNN cells of Flax Linen, Flax NNX,
Equinox and Haiku.

The entry points below take a ``jaxgru`` (or torch) cell or its params and check the values
(NumPy); each also takes an LSTM cell (to Flax's ``LSTMCell`` and ``OptimizedLSTMCell``,
Equinox's ``LSTMCell``, Haiku's ``LSTM``) and a tanh RNN cell (to Flax's ``SimpleCell``), and
back, by the table of :mod:`parity.frameworks.cell_trees`. Its ``to_tree`` and ``from_tree``,
also here as ``parity.other_jax.to_tree`` / ``from_tree``, are the same conversions in
``jax.numpy``, traceable under ``jit`` and ``grad``. The GRU cells:

Each library computes a GRU cell, but not all with torch's parameters. In torch's notation
(gates r, z, n; ``jaxgru`` and torch keep both biases of every gate):

.. math::

  r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}), \quad
  z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}), \quad
  n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})), \quad
  h' = (1 - z) \odot n + z \odot h

=================== ==================================================== =====================================
target              its parameters                                       what converting from ``jaxgru`` loses
=================== ==================================================== =====================================
``flax.linen``      ``ir, iz, in`` (kernel, bias), ``hr, hz`` (kernel),   nothing forward; ``b_ir + b_hr`` and
``GRUCell``         ``hn`` (kernel, bias); kernels ``(in, H)``            ``b_iz + b_hz`` become one bias each
``equinox.nn``      ``weight_ih, weight_hh`` as torch; ``bias`` (3H) =    as Linen
``GRUCell``         ``b_ih`` with r, z folded; ``bias_n`` = ``b_hn``
``flax.nnx``        ``dense_i`` kernel ``(I, 3H)`` + bias, ``dense_h``    as Linen, and it has **no** ``b_hn``:
``GRUCell``         kernel ``(H, 3H)``, no bias                           refused unless ``b_hn == 0``
``hk.GRU``          ``w_i (I, 3H)``, ``w_h (H, 3H)``, ``b (3H)``, gates   all three biases folded; only the
(classic variant)   in order (z, r, a); reset *before* the product        ``variant="classic"`` GRU converts
=================== ==================================================== =====================================

"Folded" means the target holds one bias where ``jaxgru`` holds two that enter the same sum.
The forward function is then the same in exact arithmetic (the sum is rounded once, to the
parameters' dtype, so floating-point results differ in the last bits), but **training is not**:
the gradient reaches each of ``jaxgru``'s two biases in full, so one SGD step moves their sum
twice as far as the target's single bias moves, and weight decay penalises ``b_i² + b_h²``
rather than ``(b_i + b_h)²``. Converting *into* ``jaxgru`` is exact forward (the folded bias
goes to ``b_i``, zeros to ``b_h``) and keeps every bit of every weight; only training from
there differs in the same way, and from NNX ``b_hn`` starts at zero but is then trained.

A ``jaxgru`` source is a :class:`jaxgru.GRUCell` (NNX; Linen with ``variables``), its params
(``weight_ih``, ...), or a one-layer, one-direction GRU's (``weight_ih_l0``, ...), or a torch
``GRUCell`` / ``GRU``. Every conversion keeps the parameters' dtype, and ``from_*`` returns
``GRUCell`` params: ``parity.module_from_params(params)`` makes them a :class:`jaxgru.GRUCell`.

All cells here use the default ``gate_fn`` (sigmoid) and ``activation_fn`` (tanh); a Flax cell
built with others computes something else, and :func:`from_flax_nnx` refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from flax import nnx

from parity import _arrays
from parity.frameworks import _other_cells
from parity.frameworks.cell_trees import FORMATS, from_tree, to_tree  # noqa: F401  (parity.other_jax.to_tree, ...)
from parity.weights import convert

if TYPE_CHECKING:
  import equinox as eqx  # optional (the `others` extra): imported where used

__all__ = [  # and cell_trees' FORMATS, from_tree and to_tree, documented there
  "from_equinox",
  "from_flax_linen",
  "from_flax_nnx",
  "from_haiku",
  "to_equinox",
  "to_flax_linen",
  "to_flax_nnx",
  "to_haiku",
]

CELL_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _cell_arrays(source: Any, variables: Any, variant: str | None, target: str, library: str) -> dict[str, np.ndarray]:
  """``source``'s cell params as NumPy arrays (bits kept), checked, with the variant the target computes."""
  params, module_variant = convert.params_and_variant(source, variables)
  if variant is not None and module_variant is not None and variant != module_variant:
    raise ValueError(f"variant={variant!r} contradicts the module's variant={module_variant!r}")
  variant = variant or module_variant or "torch"
  if variant != target:
    hint = " (a params mapping is taken as variant='torch'; pass variant='classic' if it was trained as one)"
    raise ValueError(
      f"{library} computes the {target!r} GRU, but the source computes variant={variant!r}: its weights would "
      f"compute another function there{hint if module_variant is None else ''}"
    )
  convert.check_values(params, "params")
  arrays = {k: _arrays.array_to_numpy(v, f"params[{k!r}]") for k, v in params.items()}
  spec = convert.spec_of(arrays)
  if not convert.is_cell(arrays):
    if spec.num_layers != 1 or spec.bidirectional:
      raise ValueError(
        f"{library} holds one GRU cell, but the source has num_layers={spec.num_layers}, "
        f"bidirectional={spec.bidirectional}; convert one layer and direction at a time "
        "(its weight_ih_l{k}[_reverse], ... keys without the suffix)"
      )
    arrays = {k.removesuffix("_l0"): v for k, v in arrays.items()}
  return arrays


def _biases(arrays: Mapping[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """``([b_ir, b_iz, b_in], [b_hr, b_hz, b_hn])``, zeros for a GRU without bias."""
  hidden = arrays["weight_hh"].shape[1]
  zeros = np.zeros((3 * hidden,), arrays["weight_hh"].dtype)
  return (np.split(arrays.get("bias_ih", zeros), 3), np.split(arrays.get("bias_hh", zeros), 3))


def _jax(tree: Any) -> Any:
  return jax.tree.map(lambda a: _arrays.to_jax(a), tree)


def _params(weight_ih, weight_hh, bias_ih, bias_hh, bias: bool, library: str) -> dict[str, jax.Array]:
  """jaxgru cell params; ``bias=False`` only when every bias is zero (else refused: not exact)."""
  params = {"weight_ih": weight_ih, "weight_hh": weight_hh}
  if bias_ih is None:
    pass
  elif bias:
    params |= {"bias_ih": bias_ih, "bias_hh": bias_hh}
  elif np.any(bias_ih != 0) or np.any(bias_hh != 0):
    raise ValueError(f"bias=False, but the {library} cell has nonzero biases, which a GRU without bias cannot hold")
  convert.spec_of(params)
  return _jax(params)


def _numpy_leaf(tree: Any, path: tuple[str, ...], library: str) -> np.ndarray:
  node = tree
  for key in path:
    if not isinstance(node, Mapping) or key not in node:
      raise ValueError(f"not {library} GRU parameters: no entry {'/'.join(path)} (got {_describe(tree)})")
    node = node[key]
  return _arrays.array_to_numpy(node, "/".join(path))


def _describe(tree: Any) -> str:
  if isinstance(tree, Mapping):
    return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in tree.items()) + "}"
  shape = getattr(tree, "shape", None)
  return type(tree).__name__ if shape is None else f"array{tuple(shape)}"


def _check_shapes(library: str, **arrays: np.ndarray) -> None:
  """Every kernel and bias must fit ``weight_hh``'s hidden size and ``weight_ih``'s input size."""
  try:
    convert.spec_of({k: v for k, v in arrays.items()})
  except ValueError as err:
    raise ValueError(f"the {library} parameters do not fit together: {err}") from None


# flax.linen.GRUCell ------------------------------------------------------------------------


def to_flax_linen(source: Any, variables: Any = None, *, variant: str | None = None) -> dict[str, Any]:
  """Variables for ``flax.linen.GRUCell(features=H)`` computing ``source``'s cell; for an LSTM
  cell, variables of ``flax.linen.LSTMCell`` and ``OptimizedLSTMCell`` (the same tree; ``b_ih +
  b_hh`` folded into the recurrent side's biases), and for a tanh RNN cell of ``SimpleCell``
  (folded into ``i/bias``) (:func:`parity.frameworks.cell_trees.to_tree`).

  ``b_ir + b_hr`` goes to ``ir/bias``, ``b_iz + b_hz`` to ``iz/bias`` (folded: same forward, not
  the same training), ``b_in`` to ``in/bias``, ``b_hn`` to ``hn/bias``; kernels are transposed.

  Args:
    source: a ``jaxgru`` cell (``GRUCell``, NNX or Linen with ``variables``), its params, or a
      ``torch.nn.GRUCell``.
    variables: a Linen cell's variables; None otherwise.
    variant: the source's equations when its params do not say (``"torch"`` or ``"classic"``).

  Returns:
    ``{"params": {"ir": ..., "iz": ..., "in": ..., "hr": ..., "hz": ..., "hn": ...}}``.

  Raises:
    TypeError: ``source`` is not a cell or cell params.
    ValueError: the source is ``variant="classic"``, which Flax's cell does not compute.

  Example:
    >>> variables = parity.other_jax.to_flax_linen(jaxgru.GRUCell(3, 8, rngs=nnx.Rngs(0)))
    >>> h, _ = flax.linen.GRUCell(features=8).apply(variables, jnp.zeros(8), jnp.ones(3))
  """
  if (mode := _other_cells.mode_of(source, variables)) != "GRU":
    fmt = "flax.linen.LSTMCell" if mode == "LSTM" else "flax.linen.SimpleCell"
    return {"params": _other_cells.to_library(source, variables, fmt)}
  arrays = _cell_arrays(source, variables, variant, "torch", "flax.linen.GRUCell")
  (b_ir, b_iz, b_in), (b_hr, b_hz, b_hn) = _biases(arrays)
  w_ir, w_iz, w_in = np.split(arrays["weight_ih"], 3)
  w_hr, w_hz, w_hn = np.split(arrays["weight_hh"], 3)
  params = {
    "ir": {"kernel": w_ir.T, "bias": b_ir + b_hr},
    "iz": {"kernel": w_iz.T, "bias": b_iz + b_hz},
    "in": {"kernel": w_in.T, "bias": b_in},
    "hr": {"kernel": w_hr.T},
    "hz": {"kernel": w_hz.T},
    "hn": {"kernel": w_hn.T, "bias": b_hn},
  }
  return {"params": _jax(params)}


def from_flax_linen(variables: Mapping[str, Any], *, bias: bool = True) -> dict[str, jax.Array]:
  """``jaxgru`` cell params computing what ``flax.linen.GRUCell`` computes with ``variables``
  (an ``LSTMCell``'s or ``OptimizedLSTMCell``'s variables give an LSTM cell's params, their
  biases in ``bias_hh``; a ``SimpleCell``'s a tanh RNN cell's, its bias in ``bias_ih``).

  Exact forward, every bit kept: ``ir/bias`` becomes ``b_ir`` and ``b_hr = 0`` (likewise z);
  ``in`` and ``hn`` keep their own biases. ``bias=False`` is allowed when every bias is zero.

  Args:
    variables: the cell's variables (``{"params": {...}}``) or their ``params``.
    bias: whether the result has biases (False only when every bias is zero).

  Returns:
    ``{"weight_ih", "weight_hh"[, "bias_ih", "bias_hh"]}`` for :func:`jaxgru.gru_cell` or a
    :class:`jaxgru.GRUCell`.

  Raises:
    ValueError: a kernel or bias is missing or misshapen, or ``bias=False`` with nonzero biases.

  Example:
    >>> variables = flax.linen.GRUCell(features=4).init(jax.random.key(0), jnp.zeros(4), jnp.zeros(3))
    >>> sorted((k, v.shape) for k, v in parity.other_jax.from_flax_linen(variables).items())
    [('bias_hh', (12,)), ('bias_ih', (12,)), ('weight_hh', (12, 4)), ('weight_ih', (12, 3))]
  """
  tree = variables.get("params", variables) if isinstance(variables, Mapping) else variables
  if (fmt := _other_cells.linen_format(tree)) != "flax.linen.GRUCell":
    return _other_cells.from_library(tree, fmt, bias)
  library = "flax.linen.GRUCell"
  get = lambda *path: _numpy_leaf(tree, path, library)
  kernels_i = [get(g, "kernel") for g in ("ir", "iz", "in")]
  kernels_h = [get(g, "kernel") for g in ("hr", "hz", "hn")]
  b_ir, b_iz, b_in, b_hn = get("ir", "bias"), get("iz", "bias"), get("in", "bias"), get("hn", "bias")
  zeros = np.zeros_like(b_hn)
  weight_ih, weight_hh = np.concatenate([k.T for k in kernels_i]), np.concatenate([k.T for k in kernels_h])
  bias_ih, bias_hh = np.concatenate([b_ir, b_iz, b_in]), np.concatenate([zeros, zeros, b_hn])
  _check_shapes(library, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh)
  return _params(weight_ih, weight_hh, bias_ih, bias_hh, bias, library)


# flax.nnx.GRUCell --------------------------------------------------------------------------


def to_flax_nnx(
  source: Any, variables: Any = None, *, variant: str | None = None, rngs: nnx.Rngs | None = None, optimized: bool = False
) -> nnx.Module:
  """A ``flax.nnx.GRUCell`` computing ``source``'s cell; for an LSTM cell an ``nnx.LSTMCell``
  (``nnx.OptimizedLSTMCell`` with ``optimized=True``), for a tanh RNN cell an ``nnx.SimpleCell``,
  their one bias ``b_ih + b_hh`` folded.

  NNX's cell has no ``b_hn`` (its recurrent ``Linear`` has no bias), so a source with any
  nonzero ``b_hn`` is refused: no NNX cell computes it. ``b_ir + b_hr`` and ``b_iz + b_hz``
  are folded into ``dense_i.bias`` (same forward, not the same training).

  Args:
    source: a ``jaxgru`` cell (``GRUCell``, NNX or Linen with ``variables``), its params, or a
      ``torch.nn.GRUCell``.
    variables: a Linen cell's variables; None otherwise.
    variant: the source's equations when its params do not say (``"torch"`` or ``"classic"``).
    rngs: for building the cell (its values are all overwritten); ``nnx.Rngs(0)`` when None.
    optimized: an LSTM's: ``nnx.OptimizedLSTMCell`` rather than ``nnx.LSTMCell``.

  Returns:
    The ``flax.nnx.GRUCell`` (``LSTMCell``, ``OptimizedLSTMCell``, ``SimpleCell``).

  Example:
    >>> params = jaxgru.init_gru_cell_params(jax.random.key(0), 3, 4)
    >>> params["bias_hh"] = jnp.zeros(12)  # NNX's cell has no recurrent bias
    >>> cell = parity.other_jax.to_flax_nnx(params)
    >>> cell.in_features, cell.hidden_features
    (3, 4)

  Raises:
    ValueError: nonzero ``b_hn``; a ``variant="classic"`` source; more than one layer or direction.
  """
  if (mode := _other_cells.mode_of(source, variables)) != "GRU":
    fmt = {"LSTM": "flax.nnx.OptimizedLSTMCell" if optimized else "flax.nnx.LSTMCell", "RNN": "flax.nnx.SimpleCell"}[mode]
    return _nnx_cell(_other_cells.to_library(source, variables, fmt), fmt, rngs)
  library = "flax.nnx.GRUCell"
  arrays = _cell_arrays(source, variables, variant, "torch", library)
  (b_ir, b_iz, b_in), (b_hr, b_hz, b_hn) = _biases(arrays)
  if np.any(b_hn != 0):
    raise ValueError(
      f"{library} has no b_hn (the bias inside r * (W_hn h + b_hn); its dense_h has no bias), and this GRU's "
      f"b_hn = bias_hh[2H:] is nonzero (max |b_hn| = {float(np.max(np.abs(b_hn.astype(np.float64)))):.3g}): "
      "no NNX GRUCell computes it. Use jaxgru.GRUCell, which runs in nnx.RNN and has b_hn, or to_flax_linen / to_equinox"
    )
  hidden, inputs = arrays["weight_hh"].shape[1], arrays["weight_ih"].shape[1]
  dtype = arrays["weight_hh"].dtype
  _arrays.check_jax_can_hold(dtype, "the parameters' dtype")
  zeros = nnx.initializers.zeros_init()  # every value is set below; orthogonal init has no bfloat16 QR
  rngs = nnx.Rngs(0) if rngs is None else rngs
  cell = nnx.GRUCell(inputs, hidden, kernel_init=zeros, recurrent_kernel_init=zeros, param_dtype=dtype, rngs=rngs)
  cell.dense_i.kernel[...] = _arrays.to_jax(arrays["weight_ih"].T)
  cell.dense_i.bias[...] = _arrays.to_jax(np.concatenate([b_ir + b_hr, b_iz + b_hz, b_in]))
  cell.dense_h.kernel[...] = _arrays.to_jax(arrays["weight_hh"].T)
  return cell


def _nnx_cell(tree: Mapping[str, Any], fmt: str, rngs: nnx.Rngs | None) -> nnx.Module:
  """An NNX cell of ``fmt`` holding ``tree``'s values."""
  kernels = [v["kernel"] for k, v in tree.items() if k.startswith(("i", "dense_i"))]
  inputs, hidden = kernels[0].shape[0], tree["dense_h" if "dense_h" in tree else "hi"]["kernel"].shape[0]
  zeros = nnx.initializers.zeros_init()  # every value is set below; orthogonal init has no bfloat16 QR
  cls = getattr(nnx, fmt.rpartition(".")[2])
  dtype = kernels[0].dtype
  cell = cls(
    inputs, hidden, kernel_init=zeros, recurrent_kernel_init=zeros, dtype=dtype, param_dtype=dtype, rngs=rngs or nnx.Rngs(0)
  )
  state = nnx.state(cell, nnx.Param)
  nnx.replace_by_pure_dict(state, tree)
  nnx.update(cell, state)
  return cell


_NNX_FORMATS = {
  "LSTMCell": "flax.nnx.LSTMCell",
  "OptimizedLSTMCell": "flax.nnx.OptimizedLSTMCell",
  "SimpleCell": "flax.nnx.SimpleCell",
}


def from_flax_nnx(cell: nnx.Module, *, bias: bool = True) -> dict[str, jax.Array]:
  """``jaxgru`` cell params computing what ``cell`` computes: exact forward, every bit kept.
  An ``nnx.LSTMCell`` or ``nnx.OptimizedLSTMCell`` gives an LSTM cell's params (its bias in
  ``bias_hh``), an ``nnx.SimpleCell`` a tanh RNN cell's (its bias in ``bias_ih``).

  ``dense_i.bias`` becomes ``b_ih``, and ``b_hh = 0`` (NNX has no recurrent bias). A ``jaxgru``
  cell then trains ``b_hh`` too, ``b_hn`` included, which NNX cannot: training differs.

  Args:
    cell: a ``flax.nnx.GRUCell`` (the default gate function and activation).
    bias: whether the result has biases (False only when ``dense_i.bias`` is zero).

  Returns:
    ``jaxgru`` cell params, torch's layout.

  Raises:
    TypeError: ``cell`` is not a ``flax.nnx.GRUCell``.
    ValueError: the cell uses other activations, or ``bias=False`` with a nonzero bias.

  Example:
    >>> params = parity.other_jax.from_flax_nnx(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0)))
    >>> params["weight_ih"].shape, params["bias_hh"].shape
    ((12, 3), (12,))
  """
  kind = type(cell).__name__
  if isinstance(cell, nnx.LSTMCell | nnx.OptimizedLSTMCell | nnx.SimpleCell) and kind in _NNX_FORMATS:
    lstm = kind != "SimpleCell"
    if (lstm and cell.gate_fn is not jax.nn.sigmoid) or cell.activation_fn is not jax.nn.tanh:
      raise ValueError(
        f"cell uses a gate_fn or activation_fn other than sigmoid and tanh: no torch {'LSTM' if lstm else 'RNN'} computes it"
      )
    if getattr(cell, "residual", False):
      raise ValueError("cell has residual=True (h' = tanh(W x + U h + b + h)): no torch RNN computes it")
    return _other_cells.from_library(nnx.to_pure_dict(nnx.state(cell, nnx.Param)), _NNX_FORMATS[kind], bias)
  if not isinstance(cell, nnx.GRUCell):
    raise TypeError(f"cell must be a flax.nnx.GRUCell, LSTMCell, OptimizedLSTMCell or SimpleCell, got {type(cell).__name__}")
  if cell.gate_fn is not jax.nn.sigmoid or cell.activation_fn is not jax.nn.tanh:
    raise ValueError("cell uses a gate_fn or activation_fn other than sigmoid and tanh: no torch GRU computes it")
  weight_ih = _arrays.array_to_numpy(cell.dense_i.kernel[...], "dense_i.kernel").T
  weight_hh = _arrays.array_to_numpy(cell.dense_h.kernel[...], "dense_h.kernel").T
  bias_ih = _arrays.array_to_numpy(cell.dense_i.bias[...], "dense_i.bias")
  bias_hh = np.zeros_like(bias_ih)
  return _params(weight_ih, weight_hh, bias_ih, bias_hh, bias, "flax.nnx.GRUCell")


# equinox.nn.GRUCell ------------------------------------------------------------------------


def to_equinox(source: Any, variables: Any = None, *, variant: str | None = None) -> eqx.nn.GRUCell | eqx.nn.LSTMCell:
  """An ``equinox.nn.GRUCell`` computing ``source``'s cell (``use_bias`` as the source's bias);
  for an LSTM cell an ``equinox.nn.LSTMCell`` (its one bias ``b_ih + b_hh``, folded). Equinox
  has no simple RNN cell.

  ``weight_ih`` and ``weight_hh`` are torch's layout and copied as they are; ``bias`` gets
  ``[b_ir + b_hr, b_iz + b_hz, b_in]`` (folded: same forward, not the same training) and
  ``bias_n`` gets ``b_hn``.

  Args:
    source: a ``jaxgru`` cell (``GRUCell``, NNX or Linen with ``variables``), its params, or a
      ``torch.nn.GRUCell``.
    variables: a Linen cell's variables; None otherwise.
    variant: the source's equations when its params do not say (``"torch"`` or ``"classic"``).

  Returns:
    The ``equinox.nn.GRUCell``.

  Raises:
    TypeError: ``source`` is not a cell or cell params.
    ValueError: the source is ``variant="classic"``, which Equinox's cell does not compute.

  Example:
    >>> cell = parity.other_jax.to_equinox(jaxgru.GRUCell(3, 4, rngs=nnx.Rngs(0)))
    >>> cell.weight_ih.shape, cell.bias_n.shape
    ((12, 3), (4,))
  """
  import equinox as eqx

  if (mode := _other_cells.mode_of(source, variables)) != "GRU":
    if mode == "RNN":
      raise ValueError("Equinox has no simple RNN cell: convert an RNN to flax.linen.SimpleCell or flax.nnx.SimpleCell")
    params, _ = convert.params_and_variant(source, variables)
    tree = _other_cells.to_library(source, variables, "equinox.nn.LSTMCell")
    has_bias = any(str(k).startswith("bias") for k in params)
    inputs, hidden = tree["weight_ih"].shape[1], tree["weight_hh"].shape[1]
    cell = eqx.nn.LSTMCell(inputs, hidden, use_bias=has_bias, dtype=tree["weight_hh"].dtype, key=jax.random.key(0))
    fields = ("weight_ih", "weight_hh", "bias") if has_bias else ("weight_ih", "weight_hh")
    return eqx.tree_at(lambda c: tuple(getattr(c, f) for f in fields), cell, tuple(tree[f] for f in fields))
  arrays = _cell_arrays(source, variables, variant, "torch", "equinox.nn.GRUCell")
  hidden, inputs = arrays["weight_hh"].shape[1], arrays["weight_ih"].shape[1]
  has_bias = "bias_ih" in arrays
  dtype = arrays["weight_hh"].dtype
  _arrays.check_jax_can_hold(dtype, "the parameters' dtype")
  cell = eqx.nn.GRUCell(inputs, hidden, use_bias=has_bias, dtype=dtype, key=jax.random.key(0))
  (b_ir, b_iz, b_in), (b_hr, b_hz, b_hn) = _biases(arrays)
  values = [arrays["weight_ih"], arrays["weight_hh"]]
  where = lambda c: (c.weight_ih, c.weight_hh)
  if has_bias:
    values += [np.concatenate([b_ir + b_hr, b_iz + b_hz, b_in]), b_hn]
    where = lambda c: (c.weight_ih, c.weight_hh, c.bias, c.bias_n)
  return eqx.tree_at(where, cell, [_arrays.to_jax(v) for v in values])


def from_equinox(cell: eqx.nn.GRUCell | eqx.nn.LSTMCell) -> dict[str, jax.Array]:
  """``jaxgru`` cell params computing what ``cell`` computes: exact forward, every bit kept
  (an ``equinox.nn.LSTMCell`` gives an LSTM cell's params, its bias in ``bias_ih``).

  ``bias`` becomes ``b_ih``, ``b_hh = [0, 0, bias_n]``; a cell without bias gives params without.

  Args:
    cell: an ``equinox.nn.GRUCell``.

  Returns:
    ``jaxgru`` cell params, torch's layout.

  Raises:
    TypeError: ``cell`` is not an ``equinox.nn.GRUCell``.

  Example:
    >>> import equinox as eqx
    >>> params = parity.other_jax.from_equinox(eqx.nn.GRUCell(3, 4, key=jax.random.key(0)))
    >>> params["weight_hh"].shape, params["bias_hh"].shape
    ((12, 4), (12,))
  """
  import equinox as eqx

  if isinstance(cell, eqx.nn.LSTMCell):  # without bias: zeros, which bias=False then drops
    tree = {"weight_ih": cell.weight_ih, "weight_hh": cell.weight_hh, "bias": cell.bias}
    if not cell.use_bias:
      tree["bias"] = np.zeros(cell.weight_hh.shape[:1], cell.weight_hh.dtype)
    return _other_cells.from_library(tree, "equinox.nn.LSTMCell", cell.use_bias)
  if not isinstance(cell, eqx.nn.GRUCell):
    raise TypeError(f"cell must be an equinox.nn.GRUCell or LSTMCell, got {type(cell).__name__}")
  weight_ih = _arrays.array_to_numpy(cell.weight_ih, "weight_ih")
  weight_hh = _arrays.array_to_numpy(cell.weight_hh, "weight_hh")
  if not cell.use_bias:
    return _params(weight_ih, weight_hh, None, None, False, "equinox.nn.GRUCell")
  bias_ih = _arrays.array_to_numpy(cell.bias, "bias")
  bias_n = _arrays.array_to_numpy(cell.bias_n, "bias_n")
  zeros = np.zeros_like(bias_n)
  return _params(weight_ih, weight_hh, bias_ih, np.concatenate([zeros, zeros, bias_n]), True, "equinox.nn.GRUCell")


# haiku hk.GRU --------------------------------------------------------------------------------


def to_haiku(source: Any, variables: Any = None, *, variant: str | None = None, name: str | None = None) -> dict[str, Any]:
  """Haiku params ``{name: {"w_i", "w_h", "b"}}`` for ``hk.GRU(H, name=name)`` computing
  ``source``'s cell, which must be ``variant="classic"`` (Haiku's GRU resets before the product).
  An LSTM cell gives ``{name + "/linear": {"w", "b"}}`` for ``hk.LSTM(H, name=name)`` (gates
  reordered to Haiku's (i, g, f, o), ``b_ih + b_hh`` folded and 1 taken off the forget gate's,
  which Haiku adds back). Haiku's simple RNN is not carried.

  Gates are reordered from (r, z, n) to Haiku's (z, r, a) and kernels transposed. Haiku has one
  bias per gate, so all three are folded: ``b = [b_iz + b_hz, b_ir + b_hr, b_in + b_hn]``
  (same forward, not the same training). ``name`` is the module's name inside
  ``hk.transform`` (``"gru"`` for an unnamed ``hk.GRU``).

  Args:
    source: a ``jaxgru`` cell (``GRUCell``, NNX or Linen with ``variables``), its params, or a
      ``torch.nn.GRUCell``.
    variables: a Linen cell's variables; None otherwise.
    variant: the source's equations when its params do not say (``"torch"`` or ``"classic"``).
    name: the module's name in the Haiku params (``"gru"``, or ``"lstm"`` for an LSTM, when None).

  Returns:
    ``{name: {"w_i": (I, 3H), "w_h": (H, 3H), "b": (3H,)}}``.

  Example:
    >>> cell = jaxgru.GRUCell(3, 4, variant="classic", rngs=nnx.Rngs(0))
    >>> params = parity.other_jax.to_haiku(cell)
    >>> params["gru"]["w_i"].shape, params["gru"]["w_h"].shape
    ((3, 12), (4, 12))

  Raises:
    ValueError: the source computes ``variant="torch"``: a params mapping counts as such
      unless ``variant="classic"`` is passed.
  """
  if (mode := _other_cells.mode_of(source, variables)) != "GRU":
    if mode == "RNN":
      raise ValueError("parity.other_jax carries Haiku's GRU and LSTM, not its simple RNN: convert an RNN to a Flax SimpleCell")
    return _other_cells.to_library(source, variables, "haiku.LSTM", name)
  name = "gru" if name is None else name
  arrays = _cell_arrays(source, variables, variant, "classic", "hk.GRU")
  (b_ir, b_iz, b_in), (b_hr, b_hz, b_hn) = _biases(arrays)
  w_ir, w_iz, w_in = np.split(arrays["weight_ih"], 3)
  w_hr, w_hz, w_hn = np.split(arrays["weight_hh"], 3)
  params = {
    "w_i": np.concatenate([w_iz, w_ir, w_in]).T,
    "w_h": np.concatenate([w_hz, w_hr, w_hn]).T,
    "b": np.concatenate([b_iz + b_hz, b_ir + b_hr, b_in + b_hn]),
  }
  return {name: _jax(params)}


def from_haiku(params: Mapping[str, Any], *, bias: bool = True) -> dict[str, jax.Array]:
  """``jaxgru`` cell params for ``variant="classic"`` computing what ``hk.GRU`` computes with
  ``params`` (``{name: {"w_i", "w_h", "b"}}`` with one module, or its inner mapping); for one
  ``hk.LSTM``'s (``{name + "/linear": {"w", "b"}}``), an LSTM cell's params: ``b`` in
  ``bias_ih``, and the 1 Haiku adds to the forget gate in ``bias_hh``'s f block (so ``bias=False``
  cannot hold it).

  Exact forward, every bit kept: ``b`` becomes ``b_ih`` (reordered to r, z, n), ``b_hh = 0``.
  Run the result with ``variant="classic"``: ``parity.module_from_params(p, variant="classic")``
  or ``jaxgru.gru_cell(p, x, h, variant="classic")``.

  Args:
    params: Haiku params of one ``hk.GRU``.
    bias: whether the result has biases (False only when ``b`` is zero).

  Returns:
    ``jaxgru`` cell params, torch's layout, for ``variant="classic"``.

  Raises:
    ValueError: the params do not hold one ``hk.GRU``'s ``w_i``, ``w_h`` and ``b``, or shapes differ.

  Example:
    >>> hk_params = {"gru": {"w_i": np.zeros((3, 12), np.float32), "w_h": np.zeros((4, 12), np.float32), "b": np.zeros(12, np.float32)}}
    >>> parity.other_jax.from_haiku(hk_params)["weight_hh"].shape
    (12, 4)
  """
  if (lstm := _other_cells.haiku_lstm_name(params)) is not None:
    return _other_cells.from_library(params, "haiku.LSTM", bias, lstm)
  library = "hk.GRU"
  tree = params
  if isinstance(params, Mapping) and "w_i" not in params:
    inner = [v for v in params.values() if isinstance(v, Mapping) and "w_i" in v]
    if len(inner) != 1:
      raise ValueError(f"params must hold exactly one hk.GRU's w_i, w_h and b; got {_describe(params)}")
    tree = inner[0]
  w_i, w_h, b = (_numpy_leaf(tree, (k,), library) for k in ("w_i", "w_h", "b"))
  for key, value, rank in (("w_i", w_i, 2), ("w_h", w_h, 2), ("b", b, 1)):
    if value.ndim != rank or value.shape[-1] % 3:
      raise ValueError(f"hk.GRU's {key} must have a last axis of 3 * hidden_size and rank {rank}, got shape {value.shape}")
  weight_ih, weight_hh, bias_ih = _zra_to_rzn(w_i.T), _zra_to_rzn(w_h.T), _zra_to_rzn(b)
  bias_hh = np.zeros_like(bias_ih)
  _check_shapes(library, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh)
  return _params(weight_ih, weight_hh, bias_ih, bias_hh, bias, library)


def _zra_to_rzn(a: np.ndarray) -> np.ndarray:
  """Haiku's gate order (z, r, a) along the first axis to torch's (r, z, n)."""
  z, r, n = np.split(a, 3)
  return np.concatenate([r, z, n])
