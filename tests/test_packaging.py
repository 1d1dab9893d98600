"""jaxgru stands alone: it never imports torch, and it ships its type marker."""

import pathlib
import subprocess
import sys

import jaxgru


def test_jaxgru_never_imports_torch():
  code = "import sys, jaxgru, jaxgru.linen; jaxgru.GRU; assert 'torch' not in sys.modules, 'torch imported'"
  subprocess.run([sys.executable, "-c", code], check=True)


def test_py_typed_marker():
  assert (pathlib.Path(jaxgru.__file__).parent / "py.typed").exists()
