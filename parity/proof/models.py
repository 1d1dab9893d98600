r"""Whole models: a torch module and its JAX port, the same inputs, outputs and every gradient compared.

:func:`parity.compare` takes a GRU; a port is usually a whole model (an embedding, a GRU, a head)
written once in torch and once in JAX. :func:`compare_models` runs both on the same inputs, pulls
the same random cotangents back through each, and reports, by torch's parameter names, the
difference of every output, of the gradient of every parameter and of every floating input, in
the table and with the pass rule of :class:`parity.Report`.

The JAX side is either an NNX module, called ``model(*inputs)``, whose ``nnx.Param`` leaves are
named by their paths joined with dots (``rnn.weight_ih_l0``, ``decoder.kernel``), or a function
``fn(params, *inputs)`` of a flat mapping of arrays (a state dict as :func:`parity.load_tensors`
gives it). Names that match torch's need no map: a ported ``jaxgru.GRU`` keeps torch's names. The
others are mapped with ``name_map={torch_name: jax_name}``; a value ``(jax_name, "T")`` says that
the JAX array is the transpose of torch's (``nnx.Linear``'s ``kernel`` against
``torch.nn.Linear``'s ``weight``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from parity import _arrays
from parity.proof import report as _report
from parity.proof import runs as _runs

NameMap = Mapping[str, "str | tuple[str, str]"]


def _jax_params(jax_model: Any, params: Mapping[str, Any] | None) -> tuple[dict[str, jax.Array], Callable]:
  """The JAX side's flat parameters and ``run(params, *inputs)``."""
  if isinstance(jax_model, nnx.Module):
    if params is not None:
      raise ValueError("params is for a JAX function fn(params, *inputs); an NNX module holds its own parameters")
    graphdef, state, rest = nnx.split(jax_model, nnx.Param, ...)
    paths = {".".join(map(str, path)): path for path, _ in nnx.to_flat_state(state)}  # names -> paths (ints kept)
    values = {".".join(map(str, path)): jnp.asarray(leaf[...]) for path, leaf in nnx.to_flat_state(state)}

    def run(values, *inputs):
      new = nnx.from_flat_state({paths[name]: nnx.Param(v) for name, v in values.items()})
      return nnx.merge(graphdef, new, rest)(*inputs)

    return values, run
  if not callable(jax_model):
    raise TypeError(f"jax_model must be an NNX module or a function fn(params, *inputs), got {type(jax_model).__name__}")
  if not isinstance(params, Mapping):
    raise TypeError(f"a JAX function needs params, a mapping of names to arrays; got {type(params).__name__}")
  return {k: jnp.asarray(v) for k, v in params.items()}, jax_model


def _leaves(value: Any, side: str) -> list[Any]:
  """The outputs of one side as a flat list (tuples, lists and dicts of arrays)."""
  if side == "torch":
    if isinstance(value, torch.Tensor):
      return [value]
    if isinstance(value, Mapping):
      return [leaf for key in sorted(value) for leaf in _leaves(value[key], side)]
    if isinstance(value, Sequence):
      return [leaf for item in value for leaf in _leaves(item, side)]
    raise TypeError(
      f"the torch module returned a {type(value).__name__}; outputs must be tensors, tuples, lists or dicts of them"
    )
  if isinstance(value, Mapping):
    return [leaf for key in sorted(value) for leaf in _leaves(value[key], side)]
  return jax.tree.leaves(value)


def compare_models(
  torch_module: torch.nn.Module,
  jax_model: Any,
  *inputs: Any,
  params: Mapping[str, Any] | None = None,
  name_map: NameMap | None = None,
  seed: int = 0,
  tol: float | None = None,
) -> _report.Report:
  """Runs a torch model and its JAX port on the same inputs; measures every output and gradient.

  Args:
    torch_module: the reference; run in ``eval()`` (dropout off), then restored.
    jax_model: an NNX module (in evaluation mode: dropout off) or a function ``fn(params, *inputs)``.
    *inputs: the model's inputs, NumPy or JAX arrays; each side gets them as they are (floating
      ones cast to the side's parameter dtype). Integer inputs (token ids) have no gradient.
    params: the function's parameters, a flat mapping of names to arrays; None for a module.
    name_map: ``{torch_name: jax_name}`` or ``{torch_name: (jax_name, "T")}`` for a transposed
      array; names not in it are looked up as they are.
    seed: draws the output cotangents pulled back on both sides.
    tol: the pass threshold; by default :data:`parity.proof.report.TOLERANCES` of the less precise
      side's parameter dtype.

  Returns:
    A :class:`parity.Report` with rows ``output[i]`` (the outputs in order, flattened like a
    pytree), ``grad NAME`` for every torch parameter and ``grad input[i]`` for every floating input.

  Raises:
    ValueError: a torch parameter has no JAX counterpart (or the reverse), shapes differ, or the
      two sides give different numbers of outputs.
    TypeError: ``jax_model`` is neither an NNX module nor a function, or ``params`` is missing.

  Example:
    >>> torch_model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh())
    >>> state = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    >>> def jax_model(p, x):
    ...   return jnp.tanh(x @ p["0.weight"].T + p["0.bias"])
    >>> parity.compare_models(torch_model, jax_model, np.ones((2, 3), np.float32), params=state).ok
    True
  """
  if not isinstance(torch_module, torch.nn.Module):
    raise TypeError(f"torch_module must be a torch.nn.Module, got {type(torch_module).__name__}")
  values, run = _jax_params(jax_model, params)
  name_map = dict(name_map or {})
  torch_params = dict(torch_module.named_parameters())
  mapped: dict[str, tuple[str, bool]] = {}
  for name in torch_params:
    target = name_map.get(name, name)
    jax_name, transposed = (target[0], target[1] == "T") if isinstance(target, tuple) else (target, False)
    mapped[name] = (jax_name, transposed)
  missing = sorted(f"{t} -> {j}" for t, (j, _) in mapped.items() if j not in values)
  unused = sorted(set(values) - {j for j, _ in mapped.values()})
  if missing or unused:
    raise ValueError(
      f"torch's parameters and the JAX side's do not correspond: torch names with no JAX array {missing}; "
      f"JAX arrays with no torch parameter {unused}; JAX names: {sorted(values)} (pass name_map)"
    )
  for t, (j, transposed) in mapped.items():
    want = tuple(torch_params[t].shape)[::-1] if transposed else tuple(torch_params[t].shape)
    if tuple(values[j].shape) != want:
      raise ValueError(
        f"{t} has shape {tuple(torch_params[t].shape)} in torch, {j} {tuple(values[j].shape)} in JAX (want {want})"
      )
  torch_dtype = _arrays.TORCH_TO_NUMPY[next(iter(torch_params.values())).dtype]
  jax_dtype = np.dtype(next(iter(values.values())).dtype)
  _arrays.check_jax_can_hold(jax_dtype, "the JAX side's parameters' dtype")
  tol = max(_report.TOLERANCES[torch_dtype.name], _report.TOLERANCES[jax_dtype.name]) if tol is None else tol
  arrays = [np.asarray(a) for a in inputs]
  floating = [np.issubdtype(a.dtype, np.floating) for a in arrays]

  was_training = torch_module.training
  torch_module.eval()
  try:
    with _runs.exact_matmuls():
      device = next(iter(torch_params.values())).device
      torch_inputs = [
        torch.tensor(a.astype(torch_dtype) if f else a, device=device, requires_grad=f)
        for a, f in zip(arrays, floating, strict=True)
      ]
      for p in torch_params.values():
        p.grad = None
      torch_out = _leaves(torch_module(*torch_inputs), "torch")
      rng = np.random.default_rng(seed)
      cotangents = [rng.standard_normal(tuple(o.shape)) for o in torch_out]
      loss = sum((o * torch.tensor(c, dtype=o.dtype, device=device)).sum() for o, c in zip(torch_out, cotangents, strict=True))
      wrt = [*torch_params.values(), *(t for t, f in zip(torch_inputs, floating, strict=True) if f)]
      torch_grads = torch.autograd.grad(loss, wrt, allow_unused=True)

      jax_inputs = [jnp.asarray(a.astype(jax_dtype) if f else a) for a, f in zip(arrays, floating, strict=True)]

      def loss_jax(values, float_inputs):
        it = iter(float_inputs)
        full = [next(it) if f else a for a, f in zip(jax_inputs, floating, strict=True)]
        outs = _leaves(run(values, *full), "jax")
        if len(outs) != len(cotangents):
          raise ValueError(f"the torch module gives {len(cotangents)} outputs, the JAX side {len(outs)}")
        return sum(jnp.sum(o * c.astype(o.dtype)) for o, c in zip(outs, cotangents, strict=True)), outs

      float_inputs = [a for a, f in zip(jax_inputs, floating, strict=True) if f]
      (g_values, g_inputs), jax_out = jax.grad(loss_jax, argnums=(0, 1), has_aux=True)(values, float_inputs)
  finally:
    torch_module.train(was_training)

  rows = []
  for k, (a, b) in enumerate(zip(jax_out, torch_out, strict=True)):
    rows.append(_report._row(f"output[{k}]", np.asarray(a), _arrays.tensor_to_numpy(b.detach(), f"output[{k}]")))
  for (name, p), g in zip(torch_params.items(), torch_grads, strict=False):
    jax_name, transposed = mapped[name]
    got = np.asarray(g_values[jax_name])
    want = np.zeros(tuple(p.shape)) if g is None else _arrays.tensor_to_numpy(g, name)
    rows.append(_report._row(f"grad {name}", got.T if transposed else got, want))
  input_grads = iter(torch_grads[len(torch_params) :])
  float_index = iter(range(len(float_inputs)))
  for k, f in enumerate(floating):
    if f:
      rows.append(
        _report._row(
          f"grad input[{k}]", np.asarray(g_inputs[next(float_index)]), _arrays.tensor_to_numpy(next(input_grads), "input")
        )
      )
  side = "NNX module" if isinstance(jax_model, nnx.Module) else "JAX function"
  return _report.Report(tuple(rows), tol, f"torch {type(torch_module).__name__} {torch_dtype.name}", f"{side} {jax_dtype.name}")
