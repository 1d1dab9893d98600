"""Module paths that name a module living elsewhere in :mod:`parity`.

``parity`` was once 17 flat files; it is now four folders (weights, proof, frameworks, sine).
The three frameworks keep their short names for good (``parity.keras`` is
``parity.frameworks.keras``); the other old paths still import, with a ``DeprecationWarning``
that names the new one. Either way the name is the new module itself, not a copy, so its
functions, classes and globals are the same objects under both names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings

from parity import _extras

# short names kept for good
ALIASES = {
  "parity.keras": "parity.frameworks.keras",
  "parity.onnx": "parity.frameworks.onnx",
  "parity.other_jax": "parity.frameworks.other_jax",
  "parity.torchrl": "parity.frameworks.torchrl",
}
# the flat layout's paths, deprecated
DEPRECATED = {
  "parity.convert": "parity.weights.convert",
  "parity.files": "parity.weights.files",
  "parity.report": "parity.proof.report",
  "parity.sine_task": "parity.sine.task",
  "parity.sine_cli": "parity.sine.cli",
}
MOVED = ALIASES | DEPRECATED


def resolve(old: str) -> types.ModuleType:
  """The module ``old`` names (imported on first use), warning if ``old`` is deprecated. A missing
  optional package is named with the extra that installs it, however ``old`` was imported."""
  new = MOVED[old]
  if old in DEPRECATED:
    warnings.warn(f"{old} is deprecated: import {new} instead", DeprecationWarning, stacklevel=_caller_level())
  try:
    return importlib.import_module(new)
  except ModuleNotFoundError as error:
    raise _extras.missing(error, old) from error


def _caller_level() -> int:
  """The ``stacklevel`` of the first frame outside parity and the import machinery (``warnings``
  itself skips the frames of ``importlib._bootstrap``, so those are not counted)."""
  frame, level = sys._getframe(2), 2
  while frame is not None:
    filename = frame.f_code.co_filename
    if not ("importlib" in filename and "_bootstrap" in filename):
      if frame.f_globals.get("__name__", "").partition(".")[0] not in ("parity", "importlib"):
        break
      level += 1
    frame = frame.f_back
  return level


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Finds ``import parity.convert`` and the like, and loads them as the module they name."""

  def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201  (importlib's protocol)
    return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

  def __init__(self) -> None:
    self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

  def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
    module = resolve(spec.name)
    self._specs[module.__name__] = module.__spec__  # the import system sets the alias's spec; put it back
    return module

  def exec_module(self, module: types.ModuleType) -> None:
    module.__spec__ = self._specs[module.__name__]


def install() -> None:
  if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
    sys.meta_path.append(_Finder())
