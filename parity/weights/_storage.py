"""Bytes on disk: atomic writes (through symlinks) and safe reads of torch and safetensors files.

:func:`atomic_write` puts the bytes in a temporary file beside the target, flushes it to disk
and renames it over the target, so a crash leaves the old file or the new one, never a
truncated one. :func:`read_state_dict` reads a torch file only with ``weights_only=True``: a
checkpoint is untrusted input, and unpickling arbitrary objects would run arbitrary code.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import pickle
import re
import secrets
from collections.abc import Callable, Mapping
from typing import IO, Any

import safetensors
import safetensors.torch
import torch

_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive; the legacy pickle format
_CHUNK = 1 << 20


def write_all(file: IO[bytes], data: bytes) -> None:
  for start in range(0, len(data), _CHUNK):
    file.write(data[start : start + _CHUNK])


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> pathlib.Path:
  """Calls ``write(file)`` on a new file beside ``path``, syncs it, and renames it to ``path``.

  If ``write`` (or anything before the rename) raises, the temporary file is removed and
  ``path`` keeps whatever it held before. A new file gets the usual permissions (0666 minus the
  umask), like a plain ``open(path, "wb")``; a file that is replaced keeps its permissions. When
  ``path`` is a symbolic link, its target is written (atomically, in the target's directory) and
  the link is kept, as ``torch.save`` and ``open`` do.

  Returns:
    The file written, ``path``'s target when ``path`` is a link, else ``path``.
  """
  path = pathlib.Path(path)
  target = path
  if path.is_symlink():
    target = pathlib.Path(os.path.realpath(path))
    if target.is_symlink():  # realpath stops at a loop
      raise OSError(errno.ELOOP, "too many levels of symbolic links", str(path))
  directory = target.parent
  if not directory.is_dir():
    raise FileNotFoundError(f"path's directory {str(directory)!r} does not exist")
  mode = None
  with contextlib.suppress(FileNotFoundError):
    mode = target.stat().st_mode & 0o7777
  temp = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
  fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, "wb") as file:
      write(file)
      file.flush()
      if mode is not None:
        os.fchmod(file.fileno(), mode)
      os.fsync(file.fileno())
    os.replace(temp, target)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(temp)
    raise
  _sync_directory(directory)
  return target


def _sync_directory(directory: pathlib.Path) -> None:
  """Makes the rename itself durable (POSIX); a no-op where directories cannot be opened."""
  with contextlib.suppress(OSError):
    fd = os.open(directory, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


def existing_file(path: str | os.PathLike, what: str) -> pathlib.Path:
  """``path`` as a Path, if a file is there to read: a FileNotFoundError where nothing is, a
  ValueError for a directory, each naming the path and ``what`` was expected there."""
  path = pathlib.Path(path)
  if path.is_dir():
    raise ValueError(f"{path} is a directory, not {what}")
  if not path.exists():
    raise FileNotFoundError(errno.ENOENT, f"No such file or directory (expected {what})", str(path))
  return path


def read_state_dict(path: pathlib.Path) -> tuple[Mapping[str, Any], dict[str, str]]:
  """The mapping a torch or safetensors file holds (torch tensors; tensors that share memory in a
  torch file still do), and the safetensors metadata (empty for torch files).

  The format is read from the file's first bytes, not its name.

  Every tensor is checked before anything is copied out of it (:func:`check_tensors`): a tensor
  whose elements would take more memory than the file holds (a view with stride 0 or
  overlapping strides, which ``torch.save`` keeps as a view of a small storage) is refused, so
  reading a file never takes much more memory than its size.

  Raises:
    FileNotFoundError: no such file.
    ValueError: a directory; empty, truncated, corrupt or foreign files, pickled objects other
      than tensors, anything but a mapping at the top, and tensors that are not plain dense
      ones with data (sparse, meta) or would take more memory than the file holds, each naming
      the path.
  """
  path = existing_file(path, "a safetensors or torch.save file")
  with open(path, "rb") as file:
    head = file.read(9)
  if _is_safetensors(head):
    state_dict, metadata = _read_safetensors(path)
  elif head.startswith(_TORCH_MAGIC):
    state_dict, metadata = _read_torch(path), {}
  else:
    raise ValueError(
      f"{path} is neither a safetensors file nor a torch.save file (its first bytes are {head!r}); "
      "empty, truncated or another format?"
    )
  check_tensors(state_dict, path)
  return state_dict, metadata


def check_tensors(state_dict: Mapping[Any, Any], path: pathlib.Path) -> None:
  """Refuses the tensors of ``state_dict`` that cannot be read as plain arrays, or whose
  elements would take more memory than ``path`` holds, before any is copied.

  A torch file holds each storage's bytes once; a tensor is a view into one. Its elements take
  ``numel * itemsize`` bytes once copied out, which a view with stride 0 or overlapping strides
  makes far more than its storage (a 641-byte file can describe a (16384, 16384) tensor of one
  float: 1 GiB). The bytes the storages themselves hold come from the file, so they are checked
  against its size too. Other entries (not tensors, nested mappings) are left to the callers.
  """
  size = os.path.getsize(path)
  storages: dict[int, int] = {}
  for key, value in state_dict.items():
    if not isinstance(value, torch.Tensor):
      continue
    if value.layout != torch.strided or value.is_meta:
      kind = "a meta tensor (no data)" if value.is_meta else f"a {value.layout} tensor"
      raise ValueError(f"{path}: {key!r} is {kind}; a state dict's tensors are dense ones with data")
    storage = value.untyped_storage()
    materialised = value.numel() * value.element_size()
    if materialised > storage.nbytes():
      raise ValueError(
        f"{path}: {key!r} describes a {tuple(value.shape)} tensor ({_bytes(materialised)} once its elements are "
        f"read) on {_bytes(storage.nbytes())} of stored data (strides {value.stride()}: it repeats elements); "
        "a state dict's tensors hold their own data, so it was refused before anything was read out of it"
      )
    storages[storage.data_ptr()] = storage.nbytes()
  if sum(storages.values()) > size:
    raise ValueError(
      f"{path} describes {_bytes(sum(storages.values()))} of tensor data but holds {_bytes(size)}: truncated or corrupt"
    )


def _bytes(n: int) -> str:
  for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
    if n >= scale:
      return f"{n / scale:.1f} {unit}"
  return f"{n} bytes"


def _is_safetensors(head: bytes) -> bool:
  """safetensors starts with its JSON header's length (8 bytes, little-endian), then ``{``."""
  return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < (1 << 40)


def _read_torch(path: pathlib.Path) -> Mapping[str, Any]:
  try:
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as err:
    text = str(err)
    if re.search(r"GLOBAL [\w.]+", text):
      raise ValueError(_refused(path, text)) from None
    raise ValueError(
      f"{path} is not a readable torch file: it is truncated or corrupt, or holds pickled code that the safe "
      f"loader does not accept (nothing in it was executed): {_reason(text)}"
    ) from None
  except Exception as err:  # torch.load's many ways to fail on a broken file (struct.error, IndexError, ...)
    raise ValueError(
      f"{path} is not a readable torch file (truncated or corrupt?): {type(err).__name__}: {_first_line(err)}"
    ) from None
  if not isinstance(state_dict, Mapping):
    raise ValueError(f"{path} holds a {type(state_dict).__name__}, not a state dict (a mapping of names to tensors)")
  return state_dict


def _refused(path: pathlib.Path, text: str) -> str:
  """What to say when ``weights_only=True`` stopped at a pickled global: never to turn it off."""
  names = re.findall(r"GLOBAL ([\w.]+)", text)
  found = f" ({names[0]})" if names else ""
  return (
    f"{path} holds pickled code or objects that are not tensors{found}, so it is not a state dict. It was "
    "not executed: parity reads torch files with weights_only=True, which stops at the first such object. "
    "To port a model, save its state dict where its code is trusted, torch.save(model.state_dict(), path), "
    "and read that; a whole pickled model whose classes you trust loads with weights_only=True inside "
    "torch.serialization.safe_globals([YourModel, ...]), after which parity.from_torch(model.rnn) converts "
    "its GRU (the guide 'Porting a whole torch model')."
  )


def _reason(text: str) -> str:
  """torch's own reason, without its advice to load with ``weights_only=False``."""
  if "WeightsUnpickler error:" in text:
    text = text.split("WeightsUnpickler error:", 1)[1]
  elif text.startswith("Weights only load failed"):
    text = text.partition("\n")[2]
  text = text.split("Check the documentation", 1)[0]
  return " ".join(text.split()) or "unknown"


def _first_line(err: BaseException) -> str:
  return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _read_safetensors(path: pathlib.Path) -> tuple[Mapping[str, Any], dict[str, str]]:
  try:
    with safetensors.safe_open(path, framework="pt") as file:
      metadata = dict(file.metadata() or {})
    return safetensors.torch.load_file(path), metadata
  except (safetensors.SafetensorError, OSError, ValueError, RuntimeError, TypeError) as err:
    raise ValueError(f"{path} is not a valid safetensors file (truncated or corrupt?): {err}") from None
