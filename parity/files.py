"""GRU weights in files: safetensors with torch's key names, and torch ``.pt`` / ``.pth`` state dicts.

:func:`save` writes what ``torch.nn.GRU(...).load_state_dict(safetensors.torch.load_file(path))``
reads unchanged. :func:`load` reads that back, or a torch state-dict file, always with
``torch.load(..., weights_only=True)``: a checkpoint is untrusted input, and unpickling
arbitrary objects would run arbitrary code.

Writes are atomic: the bytes go to a temporary file beside the target, are flushed to disk,
and only then renamed over it, so a crash at any point leaves either the old file or the new
one under the target name, never a truncated one.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pickle
import secrets
import zipfile
from collections.abc import Callable, Mapping
from typing import IO, Any

import jax
import safetensors
import safetensors.torch
import torch

from parity import _arrays, convert

_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive; the legacy pickle format
_CHUNK = 1 << 20


def save(source: Any, path: str | os.PathLike, *, variables: Mapping[str, Any] | None = None) -> pathlib.Path:
  """Writes a GRU's weights to ``path`` as safetensors, under torch's state-dict names.

  Args:
    source: a ``jaxgru`` module (NNX; Linen with ``variables``), Linen variables, a params
      mapping (JAX, NumPy or torch arrays), or a torch ``GRU`` / ``GRUCell``.
    path: the file to write (conventionally ``*.safetensors``); its directory must exist.
      An existing file is replaced atomically.
    variables: a Linen module's variables.

  Returns:
    The path written.

  Raises:
    TypeError, ValueError: ``source`` is not a GRU's weights (every layout problem listed),
      or is a ``variant="classic"`` module, which torch cannot compute.

  Example:
    >>> parity.save(jaxgru.GRU(3, 8, rngs=nnx.Rngs(0)), "gru.safetensors")  # doctest: +SKIP
    >>> torch.nn.GRU(3, 8).load_state_dict(safetensors.torch.load_file("gru.safetensors"))  # doctest: +SKIP
  """
  tensors = convert.params_to_state_dict(convert.params_of(source, variables))
  data = safetensors.torch.save(tensors, metadata={"format": "pt"})
  path = pathlib.Path(path)
  atomic_write(path, lambda f: _write_all(f, data))
  return path


def _write_all(file: IO[bytes], data: bytes) -> None:
  for start in range(0, len(data), _CHUNK):
    file.write(data[start : start + _CHUNK])


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
  """Calls ``write(file)`` on a new file beside ``path``, syncs it, and renames it to ``path``.

  If ``write`` (or anything before the rename) raises, the temporary file is removed and
  ``path`` keeps whatever it held before. The new file gets the usual permissions (0666
  minus the umask), like a plain ``open(path, "wb")``.
  """
  path = pathlib.Path(path)
  directory = path.parent
  if not directory.is_dir():
    raise FileNotFoundError(f"path's directory {str(directory)!r} does not exist")
  temp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
  fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, "wb") as file:
      write(file)
      file.flush()
      os.fsync(file.fileno())
    os.replace(temp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(temp)
    raise
  _sync_directory(directory)


def _sync_directory(directory: pathlib.Path) -> None:
  """Makes the rename itself durable (POSIX); a no-op where directories cannot be opened."""
  with contextlib.suppress(OSError):
    fd = os.open(directory, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


def load(path: str | os.PathLike, *, prefix: str = "", dtype: Any = None) -> dict[str, jax.Array]:
  """Reads a GRU's weights as ``jaxgru`` params: a safetensors file or a torch state-dict file.

  The format is read from the file's first bytes, not its name. torch files are read with
  ``torch.load(path, map_location="cpu", weights_only=True)``.

  Args:
    path: a ``.safetensors`` file (e.g. from :func:`save`), or a ``.pt`` / ``.pth`` file
      from ``torch.save(gru.state_dict(), path)``.
    prefix: read only the keys under this prefix, without it: ``prefix="gru."`` takes the GRU
      out of a whole model's state dict (``gru.weight_ih_l0``, ``fc.weight``, ...).
    dtype: cast the parameters to this dtype; None keeps the stored bits.

  Returns:
    ``{"weight_ih_l0": jax.Array, ...}`` (or a ``GRUCell``'s keys), checked strictly.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is corrupt or truncated, is in neither format, holds pickled objects
      other than tensors (a whole ``nn.Module``, say), or is not a GRU's state dict (every
      missing, unexpected and wrongly shaped key listed).
    TypeError: a bad ``prefix`` or ``dtype``; float64 weights while JAX runs in 32-bit mode.
  """
  if not isinstance(prefix, str):
    raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
  if dtype is not None:
    _arrays.numpy_dtype(dtype)
  path = pathlib.Path(path)
  with open(path, "rb") as file:
    head = file.read(9)
  if _is_safetensors(head):
    state_dict = _read_safetensors(path)
  elif head.startswith(_TORCH_MAGIC):
    state_dict = _read_torch(path)
  else:
    raise ValueError(
      f"{path} is neither a safetensors file nor a torch.save file (its first bytes are {head!r}); "
      "empty, truncated or another format?"
    )
  if prefix:
    selected = {k[len(prefix) :]: v for k, v in state_dict.items() if isinstance(k, str) and k.startswith(prefix)}
    if not selected:
      raise ValueError(f"{path} has no key starting with prefix={prefix!r}; its keys are {sorted(map(str, state_dict))}")
    state_dict = selected
  nested = [k for k, v in state_dict.items() if isinstance(v, Mapping)]
  if nested:
    raise ValueError(
      f"{path} holds a checkpoint, not a state dict: entries {sorted(map(str, state_dict))}, of which {nested} are "
      f"mappings. Take the GRU's state dict out of it: parity.state_dict_to_params(torch.load(path, "
      f"weights_only=True)[{nested[0]!r}])"
    )
  try:
    convert.check_values(state_dict, "the file's state dict")
  except TypeError as err:
    raise ValueError(f"{path} does not hold a torch GRU / GRUCell state dict: {err}") from None
  try:
    return convert.state_dict_to_params(state_dict, dtype=dtype)
  except ValueError as err:
    raise ValueError(f"{path} does not hold a torch GRU / GRUCell state dict: {err}") from None
  except TypeError as err:
    raise TypeError(f"{path}: {err}") from None


def _is_safetensors(head: bytes) -> bool:
  """safetensors starts with its JSON header's length (8 bytes, little-endian), then ``{``."""
  return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < (1 << 40)


def _read_torch(path: pathlib.Path) -> Mapping[str, Any]:
  try:
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as err:
    text = str(err)
    reason = text.split("WeightsUnpickler error:", 1)[-1].split("Check the documentation", 1)[0]
    reason = " ".join(reason.split()) or type(err).__name__
    if "Unsupported global" in str(err):
      raise ValueError(
        f"{path} holds pickled objects other than tensors (a whole nn.Module or optimizer, say). parity loads "
        "torch files with weights_only=True, since unpickling an untrusted file can run arbitrary code: save "
        f"module.state_dict() instead. torch said: {reason}"
      ) from None
    raise ValueError(f"{path} is not a readable torch file (truncated or corrupt?): {reason}") from None
  except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    raise ValueError(f"{path} is not a readable torch file (truncated or corrupt?): {first}") from None
  if not isinstance(state_dict, Mapping):
    raise ValueError(f"{path} holds a {type(state_dict).__name__}, not a state dict (a mapping of names to tensors)")
  return state_dict


def _read_safetensors(path: pathlib.Path) -> Mapping[str, Any]:
  try:
    return safetensors.torch.load_file(path)
  except (safetensors.SafetensorError, OSError, ValueError, RuntimeError, TypeError) as err:
    raise ValueError(f"{path} is not a valid safetensors file (truncated or corrupt?): {err}") from None
