"""Weights in files: a GRU's, or a whole model's state dict with a GRU inside.

:func:`save` writes what ``torch.nn.GRU(...).load_state_dict(safetensors.torch.load_file(path))``
reads unchanged; with ``prefix`` and ``extra`` it writes a whole model's state dict (the GRU
under ``rnn.``, the embedding, decoder, ...) that the model's own ``load_state_dict(strict=True)``
accepts. :func:`load` reads a GRU back, from that or from a torch state-dict file;
:func:`load_tensors` / :func:`save_tensors` read and write every tensor of a model, for its
parts that are not a GRU. torch files are always read with ``torch.load(..., weights_only=True)``.

Tied weights (one tensor under two names, such as a language model's ``encoder.weight`` and
``decoder.weight``): safetensors cannot store shared memory, so :func:`save_tensors` writes the
tensor under each of its names, which torch's ``load_state_dict`` copies into the one shared
parameter, and records the tie in the file's metadata. :func:`load_tensors` gives tied names
the same array object, as ``torch.load`` gives them the same storage; :func:`tied_names` lists them.

Writes are atomic (see :func:`parity.weights.files.atomic_write`): a crash at any point leaves either
the old file or the new one under the target name, never a truncated one.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.torch
import torch

from jaxgru._coerce import check_flag
from parity import _arrays
from parity.weights import _storage, convert
from parity.weights._storage import atomic_write  # noqa: F401  (importable from here, as before)

_TIED = "tied"  # the safetensors metadata key holding the tied groups, as JSON


def save(
  source: Any,
  path: str | os.PathLike,
  *,
  prefix: str = "",
  extra: Mapping[str, Any] | None = None,
  variables: Mapping[str, Any] | None = None,
) -> pathlib.Path:
  """Writes a GRU's (an LSTM's, an RNN's, a cell's) weights to ``path`` as safetensors, under
  torch's state-dict names.

  Args:
    source: a ``jaxgru`` module (NNX; Linen with ``variables``), Linen variables, a params
      mapping (JAX, NumPy or torch arrays), or a torch ``GRU`` / ``GRUCell`` (``LSTM``, ``RNN``
      and their cells).
    path: the file to write (conventionally ``*.safetensors``); its directory must exist.
      An existing file is replaced atomically; a symbolic link's target is written.
    prefix: put before every GRU key: ``prefix="rnn."`` gives ``rnn.weight_ih_l0``, ... for a
      model that holds the GRU as ``self.rnn``.
    extra: the model's other tensors (any dtype; JAX, NumPy or torch), written beside the GRU's
      as by :func:`save_tensors`, tied ones included: the file is then the whole model's state
      dict, for ``model.load_state_dict(safetensors.torch.load_file(path))``.
    variables: a Linen module's variables.

  Returns:
    The path written.

  Raises:
    TypeError, ValueError: ``source`` is not a GRU's weights (every layout problem listed),
      is a ``variant="classic"`` module, which torch cannot compute, or ``extra`` is not a
      mapping of names to arrays or repeats a GRU key.

  Example:
    >>> parity.save(jaxgru.GRU(3, 4, rngs=nnx.Rngs(0)), "gru.safetensors").name
    'gru.safetensors'
    >>> import safetensors.torch
    >>> torch.nn.GRU(3, 4).load_state_dict(safetensors.torch.load_file("gru.safetensors"))
    <All keys matched successfully>
  """
  tensors: dict[str, Any] = convert.params_to_state_dict(convert.params_of(source, variables), prefix=prefix)
  if extra is not None:
    _check_tensors(extra, "extra")
    clash = sorted(set(tensors) & set(extra))
    if clash:
      raise ValueError(f"extra repeats the GRU's keys {clash}; leave the GRU's entries out of extra")
    tensors = {**extra, **tensors}
  return save_tensors(tensors, path)


def save_tensors(tensors: Mapping[str, Any], path: str | os.PathLike) -> pathlib.Path:
  """Writes a whole state dict (names to arrays of any dtype) to ``path`` as safetensors.

  Bit for bit: bfloat16, float8, integers and bool included. An array under several names (the
  same JAX or NumPy object, or torch tensors sharing memory: tied weights) is written under each
  name, since safetensors cannot share memory and torch's ``load_state_dict(strict=True)`` wants
  every name; torch copies the identical values into the one tied parameter, so the tie holds.
  The tie is recorded in the file's metadata for :func:`load_tensors`.

  Args:
    tensors: names to arrays (JAX, NumPy, torch).
    path: the file to write, whole or not at all (a temporary file beside it, then a rename).

  Returns:
    The path written.

  Raises:
    TypeError: ``tensors`` is not a mapping of str names to arrays, or holds a dtype torch lacks.

  Example:
    >>> path = parity.save_tensors({"w": np.ones((2, 3), np.float32), "steps": np.arange(3)}, "model.safetensors")
    >>> sorted((k, v.dtype.name) for k, v in parity.load_tensors(path).items())
    [('steps', 'int64'), ('w', 'float32')]
  """
  _check_tensors(tensors, "tensors")
  ties = tied_names(tensors)
  out: dict[str, torch.Tensor] = {}
  for name, value in tensors.items():
    out[name] = _arrays.any_to_tensor(value, f"tensors[{name!r}]")
  metadata = {"format": "pt"}
  if ties:
    metadata[_TIED] = json.dumps([list(group) for group in ties])
  data = safetensors.torch.save(out, metadata=metadata)
  _storage.atomic_write(path, lambda f: _storage.write_all(f, data))
  return pathlib.Path(path)


def tied_names(tensors: Mapping[str, Any]) -> list[tuple[str, ...]]:
  """The groups of names that hold one tensor: torch tensors that share memory (same storage,
  offset, shape and strides), or the same JAX / NumPy array object.

  ``tied_names(model.state_dict())`` is ``[("encoder.weight", "decoder.weight")]`` for a
  language model with a tied decoder, and ``tied_names(load_tensors(path))`` finds the same
  group in its file (in the file's key order: safetensors sorts its keys).

  Args:
    tensors: a state dict: names to torch tensors, JAX or NumPy arrays.

  Returns:
    One tuple of names per group of two or more, in the mapping's order; empty when nothing is tied.

  Raises:
    TypeError: ``tensors`` is not a mapping.

  Example:
    >>> embedding = torch.nn.Embedding(10, 4)
    >>> decoder = torch.nn.Linear(4, 10)
    >>> decoder.weight = embedding.weight
    >>> parity.tied_names({"encoder.weight": embedding.weight, "decoder.weight": decoder.weight, "decoder.bias": decoder.bias})
    [('encoder.weight', 'decoder.weight')]
  """
  if not isinstance(tensors, Mapping):
    raise TypeError(f"tensors must be a mapping of names to tensors or arrays, got {type(tensors).__name__}")
  groups: dict[Any, list[str]] = {}
  for name, value in tensors.items():
    if isinstance(value, torch.Tensor):
      if value.numel() == 0:
        continue
      key = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape), value.stride(), value.dtype)
    else:
      key = id(value)
    groups.setdefault(key, []).append(name)
  return [tuple(names) for names in groups.values() if len(names) > 1]


def load_tensors(path: str | os.PathLike, *, prefix: str = "", dtype: Any = None, as_jax: bool = False) -> dict[str, Any]:
  """Every tensor of a safetensors file or torch state-dict file, as NumPy arrays, bit for bit.

  For the parts of a model that are not a GRU (embeddings, decoders, norms). NumPy keeps every
  dtype exactly (bfloat16 and float8 as ``ml_dtypes`` types, which JAX takes as they are), where
  32-bit JAX would narrow int64 and float64: ``jnp.asarray`` of a float64 array gives float32
  there, silently. ``as_jax=True`` gives JAX arrays instead and refuses, as :func:`load` does,
  a tensor that 32-bit JAX would narrow (enable 64-bit JAX, or pass ``dtype`` to say which
  floating dtype you want). torch files are read with ``weights_only=True``. Tied tensors (shared memory in a
  torch file, recorded ties in a file from :func:`save_tensors`) come back as one array object
  under each name.

  Args:
    path: a ``.safetensors`` file, or a ``.pt`` / ``.pth`` file from ``torch.save(model.state_dict(), path)``.
    prefix: read only the keys under this prefix, without it (``"encoder."``).
    dtype: cast the floating-point tensors to this dtype (like torch's ``module.to(dtype)``);
      None keeps the stored bits.
    as_jax: return JAX arrays (tied names still share one array), refusing what JAX would narrow.

  Returns:
    ``{name: array}`` in the file's order, the names without ``prefix``.

  Raises:
    FileNotFoundError: no such file.
    ValueError: a directory; the file is corrupt or truncated, in neither format, holds pickled
      objects other than tensors, is a training checkpoint, has keys that are not str or values
      that are not tensors, holds sparse or meta tensors or ones whose elements would take more
      memory than the file holds (a stride-0 view, say: refused before any is read out), or no
      key starts with ``prefix``.
    TypeError: a bad ``prefix`` or ``dtype``; with ``as_jax``, a float64 or int64 tensor while
      JAX runs in 32-bit mode.

  Example:
    >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 2))
    >>> torch.save(model.state_dict(), "model.pt")
    >>> {k: v.shape for k, v in parity.load_tensors("model.pt").items()}
    {'0.weight': (10, 4), '1.weight': (2, 4), '1.bias': (2,)}
  """
  as_jax = check_flag(as_jax, "as_jax")
  target = None if dtype is None else _arrays.numpy_dtype(dtype)
  path = pathlib.Path(path)
  state_dict, metadata = _storage.read_state_dict(path)
  _check_flat(state_dict, path)
  state_dict = convert.select(state_dict, prefix, str(path))
  ties = tied_names(state_dict) + _recorded_ties(metadata, prefix)
  arrays = {k: _arrays.any_tensor_to_numpy(v, f"{path}: {prefix + k!r}") for k, v in state_dict.items()}
  if target is not None:
    arrays = {k: v.astype(target) if jnp.issubdtype(v.dtype, jnp.floating) else v for k, v in arrays.items()}
  for group in ties:
    first = arrays.get(group[0])
    if first is not None and all(k in arrays and _same_bytes(arrays[k], first) for k in group):
      arrays.update(dict.fromkeys(group, first))
  if as_jax:
    for k, v in arrays.items():
      _arrays.check_jax_can_hold(v.dtype, f"{path}: {prefix + k!r}")
    converted: dict[int, jax.Array] = {}  # one JAX array per NumPy array object: ties stay ties
    arrays = {k: converted.setdefault(id(v), jnp.asarray(v)) for k, v in arrays.items()}
  return arrays


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
  return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _recorded_ties(metadata: Mapping[str, str], prefix: str) -> list[tuple[str, ...]]:
  try:
    groups = json.loads(metadata.get(_TIED, "[]"))
  except json.JSONDecodeError:
    return []
  selected = [[k[len(prefix) :] for k in group if isinstance(k, str) and k.startswith(prefix)] for group in groups]
  return [tuple(group) for group in selected if len(group) > 1]


def load(path: str | os.PathLike, *, prefix: str = "", dtype: Any = None) -> dict[str, jax.Array]:
  """Reads a GRU's (an LSTM's, an RNN's, a cell's) weights as ``jaxgru`` params: a safetensors file
  or a torch state-dict file.

  The format is read from the file's first bytes, not its name. torch files are read with
  ``torch.load(path, map_location="cpu", weights_only=True)``.

  Args:
    path: a ``.safetensors`` file (e.g. from :func:`save`), or a ``.pt`` / ``.pth`` file
      from ``torch.save(gru.state_dict(), path)``.
    prefix: read only the keys under this prefix, without it: ``prefix="rnn."`` takes the GRU
      out of a whole model's state dict (``rnn.weight_ih_l0``, ``encoder.weight``, ...).
    dtype: cast the parameters to this dtype; None keeps the stored bits.

  Returns:
    ``{"weight_ih_l0": jax.Array, ...}`` (or a ``GRUCell``'s keys), checked strictly.

  Raises:
    FileNotFoundError: no such file.
    ValueError: a directory; the file is corrupt or truncated, is in neither format, holds
      pickled objects other than tensors (a whole ``nn.Module``, say) or tensors whose elements
      would take more memory than the file holds, or is not a GRU's state dict (every missing,
      unexpected and wrongly shaped key listed; a prefix to use suggested).
    TypeError: a bad ``prefix`` or ``dtype``; float64 weights while JAX runs in 32-bit mode.

  Example:
    >>> torch.save(torch.nn.GRU(3, 4, num_layers=2).state_dict(), "gru.pt")
    >>> params = parity.load("gru.pt")
    >>> jaxgru.gru(params, jnp.ones((5, 2, 3)))[1].shape
    (2, 2, 4)
  """
  if not isinstance(prefix, str):
    raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
  if dtype is not None:
    _arrays.numpy_dtype(dtype)
  path = pathlib.Path(path)
  state_dict, _ = _storage.read_state_dict(path)
  _check_flat(state_dict, path)
  try:
    convert.check_values(convert.select(state_dict, prefix, str(path)), "the file's state dict")
  except TypeError as err:
    raise ValueError(f"{path} does not hold a torch GRU, LSTM or RNN (or cell) state dict: {err}") from None
  try:
    return convert.state_dict_to_params(state_dict, prefix=prefix, dtype=dtype)
  except ValueError as err:
    raise ValueError(f"{path} does not hold a torch GRU, LSTM or RNN (or cell) state dict: {err}") from None
  except TypeError as err:
    raise TypeError(f"{path}: {err}") from None


def _check_flat(state_dict: Mapping[str, Any], path: pathlib.Path) -> None:
  """A state dict: str names to tensors, not a checkpoint that holds one (a ValueError naming the file)."""
  nested = [k for k, v in state_dict.items() if isinstance(v, Mapping)]
  if nested:
    raise ValueError(
      f"{path} holds a checkpoint, not a state dict: entries {sorted(map(str, state_dict))}, of which {nested} are "
      f"mappings. Take the state dict out of it: parity.state_dict_to_params(torch.load(path, "
      f"weights_only=True)[{nested[0]!r}]), or re-save that entry alone with torch.save"
    )
  not_names = [k for k in state_dict if not isinstance(k, str)]
  if not_names:
    raise ValueError(f"{path} is not a state dict: its keys must be str names, these are not: {not_names[:10]}")
  not_tensors = {k: type(v).__name__ for k, v in state_dict.items() if not isinstance(v, torch.Tensor)}
  if not_tensors:
    raise ValueError(f"{path} is not a state dict: it holds values that are not tensors: {dict(list(not_tensors.items())[:10])}")


def _check_tensors(tensors: Any, name: str) -> None:
  if not isinstance(tensors, Mapping):
    raise TypeError(f"{name} must be a mapping of state-dict names to arrays, got {type(tensors).__name__}")
  bad_keys = [k for k in tensors if not isinstance(k, str)]
  if bad_keys:
    raise TypeError(f"{name} must have str keys (torch's state-dict names); these are not: {bad_keys}")
  convert.check_values(tensors, name)
