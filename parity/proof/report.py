r"""The proof: one torch layer and its ``jaxgru`` twin (a GRU, an LSTM, an RNN or one of their
cells), the same inputs, every difference measured.

:func:`compare` runs both forward and backward with the same random output cotangents and
reports, for the output, ``h_n`` (and an LSTM's ``c_n``) and the gradient of every parameter,
the input and the initial state (``h0``, and an LSTM's ``c0``),

.. math::

  \text{abs} = \max_i |a_i - t_i|, \qquad \text{rel} = \text{abs} / \max_i |t_i|

with :math:`t` torch's value (the reference) and :math:`a` JAX's. A quantity passes when
:math:`\text{abs} \le \text{tol} \cdot \max(1, \max_i |t_i|)`: absolute for magnitudes up to 1,
relative to the largest reference magnitude above 1. Matrix products run at full precision
(JAX ``"highest"``, torch TF32 off) and dropout is off on both sides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import torch

from parity import _arrays
from parity.proof import runs as _runs
from parity.weights import convert

TOLERANCES = {"float64": 1e-10, "float32": 1e-5, "float16": 1e-2, "bfloat16": 1e-1}
"""The default pass threshold of :func:`compare` by the less precise dtype of the two sides.
float64 proves the maths and float32 the kernels (both measured by ``python -m parity``); the
half-precision ones are rough defaults a few units of their epsilon (9.8e-4, 7.8e-3) wide, not
established by any sweep: pass ``tol`` for them."""


@dataclasses.dataclass(frozen=True)
class Row:
  """One compared quantity: ``name`` (``output``, ``h_n``, ``c_n``, ``grad weight_ih_l0``, ``grad x``, ...)."""

  name: str
  max_abs: float
  max_rel: float
  reference: float  # max |torch value|

  def ok(self, tol: float) -> bool:
    return bool(self.max_abs <= tol * max(1.0, self.reference))  # NaN fails


@dataclasses.dataclass(frozen=True)
class Report:
  """What :func:`compare` measured; ``str(report)`` is a table, ``report.ok`` the verdict.

  Attributes:
    rows: one :class:`Row` per quantity (``output``, ``h_n``, ``c_n``, ``grad NAME`` ...), with its
      largest absolute and relative error and torch's largest magnitude.
    tol: the pass threshold the rows were judged by (see :data:`TOLERANCES`).
    torch_side: what ran on torch's side, e.g. ``"torch float32 cpu"``.
    jax_side: what ran on JAX's side, e.g. ``"jaxgru float32 cpu"``.
  """

  rows: tuple[Row, ...]
  tol: float
  torch_side: str  # e.g. "torch float32 cpu"
  jax_side: str

  @property
  def ok(self) -> bool:
    """Whether every quantity passed, each within ``max abs <= tol * max(1, max |torch|)`` (NaN fails)."""
    return all(row.ok(self.tol) for row in self.rows)

  @property
  def failures(self) -> tuple[Row, ...]:
    """The rows that did not pass, in table order (empty when :attr:`ok`)."""
    return tuple(row for row in self.rows if not row.ok(self.tol))

  def worst(self) -> Row:
    """The row closest to (or furthest past) its tolerance."""
    return max(self.rows, key=lambda row: row.max_abs / max(1.0, row.reference))

  def __str__(self) -> str:
    width = max(len("quantity"), *(len(row.name) for row in self.rows))
    lines = [
      f"{self.torch_side} vs {self.jax_side}; pass: max abs <= {self.tol:g} x max(1, max |torch|)",
      f"{'quantity':<{width}}  {'max |torch|':>11}  {'max abs':>9}  {'max rel':>9}  ok",
    ]
    for row in self.rows:
      lines.append(
        f"{row.name:<{width}}  {row.reference:11.3g}  {row.max_abs:9.2e}  {row.max_rel:9.2e}  {'yes' if row.ok(self.tol) else 'NO'}"
      )
    return "\n".join(lines)


def _row(name: str, got: np.ndarray, want: np.ndarray) -> Row:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  if got.shape != want.shape:
    raise ValueError(f"{name}: JAX gives shape {got.shape}, torch {want.shape}; are the two modules configured alike?")
  if not got.size:
    return Row(name, 0.0, 0.0, 0.0)
  err, ref = float(np.max(np.abs(got - want))), float(np.max(np.abs(want)))
  rel = err / ref if ref > 0 else (0.0 if err == 0 else float("inf"))
  return Row(name, err, rel, ref)


def _jax_module(torch_module: Any, jax_module: Any) -> Any:
  """The NNX twin of ``torch_module`` that ``jax_module`` describes, its configuration checked."""
  if not isinstance(torch_module, convert.TorchLayer):
    raise TypeError(
      "torch_module must be a torch.nn.GRU, LSTM or RNN or one of their cells (GRUCell, LSTMCell, RNNCell), "
      f"got {type(torch_module).__name__}"
    )
  kind = convert._kind(torch_module)
  batch_first = getattr(torch_module, "batch_first", False)
  nonlinearity = {"nonlinearity": torch_module.nonlinearity} if kind[0] == "RNN" else {}
  if isinstance(jax_module, tuple) and len(jax_module) == 2 and isinstance(jax_module[0], tuple(convert.LINEN.values())):
    linen_module, variables = jax_module
    params = convert.params_of(linen_module, variables)
    nonlinearity = {"nonlinearity": linen_module.nonlinearity} if hasattr(linen_module, "nonlinearity") else nonlinearity
    jax_module = convert.module_from_params(params, batch_first=getattr(linen_module, "batch_first", False), **nonlinearity)
  elif isinstance(jax_module, Mapping):
    jax_module = convert.module_from_params(convert.params_of(jax_module), batch_first=batch_first, **nonlinearity)
  want = convert.NNX[kind]
  if not isinstance(jax_module, want):
    raise TypeError(
      f"jax_module must be a jaxgru.{want.__name__}, its params, or a (jaxgru.linen module, variables) pair to compare "
      f"with a {type(torch_module).__name__}, got {type(jax_module).__name__}"
    )
  if getattr(jax_module, "variant", "torch") != "torch":
    raise ValueError(f"jax_module has variant={jax_module.variant!r}; torch computes variant='torch'")
  names = [name for name in convert._config(torch_module) if name != "dropout"]  # dropout is off on both sides
  differ = [
    f"{name}: torch {getattr(torch_module, name)!r}, JAX {getattr(jax_module, name)!r}"
    for name in names
    if getattr(torch_module, name) != getattr(jax_module, name)
  ]
  if differ:
    raise ValueError("torch_module and jax_module are configured differently: " + "; ".join(differ))
  return jax_module


def _as_numpy(value: Any, name: str) -> np.ndarray | None:
  if value is None:
    return None
  if isinstance(value, tuple | list):
    raise TypeError(f"{name} must be one array, got a {type(value).__name__}")
  if isinstance(value, torch.Tensor):
    return _arrays.tensor_to_numpy(value, name)
  result = np.asarray(value)
  if not np.issubdtype(result.dtype, np.floating) and result.dtype != _arrays.TORCH_TO_NUMPY[torch.bfloat16]:
    raise TypeError(f"{name} must be a floating-point array, got dtype {result.dtype}")
  return result


def _state(h0: Any, lstm: bool) -> Any:
  """``h0`` as NumPy: one array, or an LSTM's pair ``(h0, c0)`` (torch's ``hx``); None stays None."""
  if h0 is None:
    return None
  if not lstm:
    return _as_numpy(h0, "h0")
  if not isinstance(h0, tuple | list) or len(h0) != 2:
    raise TypeError(f"an LSTM's h0 must be the pair (h0, c0), as torch's hx, got {type(h0).__name__}")
  return tuple(_as_numpy(a, name) for a, name in zip(h0, ("h0", "c0"), strict=True))


def _check_lengths(lengths: Any, x: np.ndarray, torch_module: Any) -> np.ndarray | None:
  if lengths is None:
    return None
  if isinstance(torch_module, _runs.TORCH_CELLS):
    raise ValueError(f"lengths is for a layer over sequences; a {type(torch_module).__name__} runs one step")
  if x.ndim != 3:
    raise ValueError(f"lengths needs batched input x of rank 3, got x of shape {x.shape}")
  batch, steps = (x.shape[0], x.shape[1]) if torch_module.batch_first else (x.shape[1], x.shape[0])
  lengths = np.asarray(lengths.cpu() if isinstance(lengths, torch.Tensor) else lengths)
  if not np.issubdtype(lengths.dtype, np.integer) or lengths.shape != (batch,):
    raise ValueError(f"lengths must be {batch} integers (one per sequence), got {lengths.dtype} array of shape {lengths.shape}")
  if lengths.min() < 1 or lengths.max() > steps:
    raise ValueError(f"lengths must lie in [1, {steps}] (the input's time steps), got {lengths.tolist()}")
  return lengths


def compare(
  torch_module: torch.nn.Module,
  jax_module: Any,
  x: Any,
  h0: Any = None,
  *,
  lengths: Any = None,
  grads: bool = True,
  seed: int = 0,
  tol: float | None = None,
  jax_device: jax.Device | None = None,
) -> Report:
  """Runs both modules on the same inputs and measures every difference.

  Args:
    torch_module: the reference, a ``torch.nn.GRU``, ``LSTM``, ``RNN`` or one of their cells, on
      its own device; put in eval mode for the run, then restored.
    jax_module: its ``jaxgru`` twin (:class:`jaxgru.GRU`, :class:`jaxgru.LSTM`,
      :class:`jaxgru.RNN` or their cells), torch-layout params or Linen variables (then
      ``batch_first`` and an RNN's ``nonlinearity`` are the torch module's), or a
      ``(jaxgru.linen module, variables)`` pair; its ``__call__`` runs with dropout off. Its
      configuration must be the torch module's (a ValueError lists every difference).
    x: the input, any float array; each side gets it cast to its parameters' dtype.
    h0: the initial state (``h`` for a cell; an LSTM's pair ``(h0, c0)``, torch's ``hx``), or
      None for zeros.
    lengths: (B,) valid steps per sequence: torch runs ``pack_padded_sequence``.
    grads: also compare gradients, for output cotangents drawn from ``seed``.
    tol: the pass threshold; by default :data:`TOLERANCES` of the less precise side's dtype.
    jax_device: where JAX runs (its default device when None).

  Returns:
    A :class:`Report`; print it for the table.

  Raises:
    TypeError: ``torch_module`` is not a torch recurrent layer or cell, ``jax_module`` is not a
      matching ``jaxgru`` module or params, ``x`` is not a floating array, or an LSTM's ``h0``
      is not a pair.
    ValueError: the two modules are configured differently (every difference listed), the JAX
      side computes ``variant="classic"``, or ``lengths`` does not fit ``x``.

  Example:
    >>> gru = torch.nn.GRU(3, 8)
    >>> report = parity.compare(gru, parity.from_torch(gru), np.ones((5, 2, 3), np.float32))
    >>> report.ok, [row.name for row in report.rows][:3]
    (True, ['output', 'h_n', 'grad weight_ih_l0'])
  """
  jax_module = _jax_module(torch_module, jax_module)
  torch_dtype = _arrays.TORCH_TO_NUMPY[next(torch_module.parameters()).dtype]
  jax_dtype = _arrays.numpy_dtype(convert.spec_of(jax_module.state_dict(), modes=convert.MODES).dtype)
  _arrays.check_jax_can_hold(jax_dtype, "jax_module's parameters' dtype")
  if tol is None:
    tol = max(TOLERANCES[torch_dtype.name], TOLERANCES[jax_dtype.name])
  lstm = isinstance(torch_module, torch.nn.LSTM | torch.nn.LSTMCell)
  x, h0 = _as_numpy(x, "x"), _state(h0, lstm)
  lengths = _check_lengths(lengths, x, torch_module)
  cast = lambda a, dtype: None if a is None else (tuple(p.astype(dtype) for p in a) if isinstance(a, tuple) else a.astype(dtype))
  finals = ("h_n", "c_n") if lstm else ("h_n",)
  was_training = torch_module.training
  torch_module.eval()
  try:
    with _runs.exact_matmuls():
      torch_run = _runs.run_torch(torch_module, cast(x, torch_dtype), cast(h0, torch_dtype), lengths=lengths)
      cotangents = None
      if grads:
        rng = np.random.default_rng(seed)
        cotangents = tuple(rng.standard_normal(torch_run[k].shape) for k in ("output", *finals))
        torch_run = _runs.run_torch(
          torch_module,
          cast(x, torch_dtype),
          cast(h0, torch_dtype),
          lengths=lengths,
          cotangents=tuple(cast(c, torch_dtype) for c in cotangents),
        )
      jax_run = _runs.run_jax(
        jax_module,
        cast(x, jax_dtype),
        cast(h0, jax_dtype),
        lengths=lengths,
        cotangents=None if cotangents is None else tuple(cast(c, jax_dtype) for c in cotangents),
        device=jax_device,
      )
  finally:
    torch_module.train(was_training)
  rows = [_row(k, jax_run[k], torch_run[k]) for k in ("output", *finals)]
  if grads:
    if set(jax_run["grads"]) != set(torch_run["grads"]):
      raise ValueError(
        f"the two sides have different parameters: JAX {sorted(jax_run['grads'])}, torch {sorted(torch_run['grads'])}"
      )
    rows += [_row(f"grad {k}", jax_run["grads"][k], want) for k, want in torch_run["grads"].items()]
  torch_device = next(torch_module.parameters()).device.type
  jax_platform = (jax_device or jax.devices()[0]).platform
  return Report(tuple(rows), tol, f"torch {torch_dtype.name} {torch_device}", f"jaxgru {jax_dtype.name} {jax_platform}")


def assert_close(
  torch_module: torch.nn.Module,
  jax_module: Any,
  x: Any,
  h0: Any = None,
  **kwargs: Any,
) -> Report:
  """:func:`compare`, raising an AssertionError with the table when any quantity is past ``tol``.

  Args:
    torch_module: as :func:`compare`'s.
    jax_module: as :func:`compare`'s.
    x: as :func:`compare`'s.
    h0: as :func:`compare`'s.
    **kwargs: :func:`compare`'s keyword arguments (``lengths``, ``grads``, ``seed``, ``tol``, ``jax_device``).

  Returns:
    The :class:`Report`, when every quantity passed.

  Raises:
    AssertionError: a quantity is past ``tol``; the message names them and holds the table.
    TypeError, ValueError: as :func:`compare`.

  Example:
    >>> gru = torch.nn.GRU(3, 8, num_layers=2)
    >>> parity.assert_close(gru, parity.from_torch(gru), np.ones((5, 2, 3), np.float32))  # doctest: +ELLIPSIS
    Report(...)
  """
  report = compare(torch_module, jax_module, x, h0, **kwargs)
  if not report.ok:
    raise AssertionError(f"torch and JAX disagree on {[row.name for row in report.failures]}:\n{report}")
  return report
