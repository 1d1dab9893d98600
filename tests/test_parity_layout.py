"""parity's folders (weights, proof, frameworks, sine) and the paths that name their modules:
the short names of the frameworks for good, the flat layout's old paths with a warning."""

from __future__ import annotations

import importlib
import pathlib
import subprocess
import sys
import warnings

import pytest

import parity
from parity import _moved

ROOT = pathlib.Path(__file__).parent.parent


def test_the_folders_hold_the_four_concerns():
  folders = sorted(p.name for p in (ROOT / "parity").iterdir() if (p / "__init__.py").exists())
  assert folders == ["frameworks", "proof", "sine", "weights"]
  for new in _moved.MOVED.values():
    assert importlib.util.find_spec(new) is not None, new


@pytest.mark.parametrize("old", sorted(_moved.ALIASES))
def test_the_frameworks_short_names_are_their_modules_without_a_warning(old):
  pytest.importorskip(_moved.ALIASES[old], reason="needs its extra")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    module = importlib.import_module(old)
    name = old.rpartition(".")[2]
    assert getattr(parity, name) is module is importlib.import_module(_moved.ALIASES[old])
  assert module.__name__ == module.__spec__.name == _moved.ALIASES[old]  # the alias left the module as it was
  assert name in dir(parity)


def test_from_a_short_name_imports_the_same_function():
  pytest.importorskip("parity.frameworks.keras", reason="needs the keras extra")
  from parity.frameworks.keras import to_keras
  from parity.keras import to_keras as short

  assert short is to_keras


@pytest.mark.parametrize("old", sorted(_moved.DEPRECATED))
def test_an_old_path_still_imports_with_a_warning_at_the_users_line(old):
  code = (
    "import warnings, sys\n"
    "warnings.simplefilter('always')\n"
    f"import {old} as module\n"
    f"import {_moved.DEPRECATED[old]} as new\n"
    "assert module is new\n"
  )
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
  assert result.returncode == 0, result.stderr
  # once, at line 3 of the user's code (not inside importlib or parity), naming the new path
  assert result.stderr.count("DeprecationWarning") == 1, result.stderr
  assert f"<string>:3: DeprecationWarning: {old} is deprecated: import {_moved.DEPRECATED[old]} instead" in result.stderr


def test_an_old_name_as_an_attribute_warns_too():
  parity.__dict__.pop("report", None)
  with pytest.warns(DeprecationWarning, match=r"parity\.report is deprecated: import parity\.proof\.report") as caught:
    module = parity.report
  assert module is importlib.import_module("parity.proof.report")
  assert caught[0].filename == __file__


def test_an_unknown_name_is_an_attribute_error():
  with pytest.raises(AttributeError, match="no attribute 'nope'"):
    parity.nope  # noqa: B018
  with pytest.raises(ModuleNotFoundError):
    importlib.import_module("parity.nope")


@pytest.mark.parametrize("statement", ["import parity.keras", "from parity import keras"])
def test_a_short_name_without_its_extra_names_the_extra(monkeypatch, statement):
  for name in ("parity.keras", "parity.frameworks.keras"):
    monkeypatch.delitem(sys.modules, name, raising=False)
  monkeypatch.delattr(parity, "keras", raising=False)
  monkeypatch.setitem(sys.modules, "keras", None)  # as if Keras were not installed
  with pytest.raises(ModuleNotFoundError, match=r"parity\.keras needs keras.*pip install 'jaxgru\[keras\]'"):
    exec(statement, {})
