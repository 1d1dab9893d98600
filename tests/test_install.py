"""A built native kernel is installed only after it ran against the reference in a subprocess
(``setup.py``'s ``_check``, ``native/check_kernel.py``): one that crashes (as a kernel mislinked by
an old binutils did) or disagrees is refused with one line saying why, and jaxgru then runs on
its XLA paths, ``native_status()`` repeating that line.

The faulty kernels here are the real one behind a shim: every symbol forwards to it, but each
FFI call crashes (``crash``) or, after the real call, adds 1 to the first output (``wrong``).
The wheels themselves, an old toolchain's build included, are checked by
``scripts/check_release.sh``.
"""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
import subprocess

import pytest
from _helpers import needs_native, run_python

import jaxgru

ROOT = pathlib.Path(__file__).resolve().parents[1]
KERNEL = pathlib.Path(jaxgru.__file__).parent / "_gru_kernel.so"

SHIM = r"""
#include <dlfcn.h>
#include <signal.h>
#include "xla/ffi/api/c_api.h"

static void* real() {
  static void* library = dlopen(REAL_KERNEL, RTLD_NOW | RTLD_LOCAL);
  return library;
}
template <typename F> static F get(const char* name) { return reinterpret_cast<F>(dlsym(real(), name)); }

extern "C" void jaxgru_set_blas(void* s, void* d) { get<void (*)(void*, void*)>("jaxgru_set_blas")(s, d); }
extern "C" const char* jaxgru_isa() { return get<const char* (*)()>("jaxgru_isa")(); }
extern "C" int jaxgru_select_isa(const char* name) { return get<int (*)(const char*)>("jaxgru_select_isa")(name); }

static XLA_FFI_Error* call(const char* name, XLA_FFI_CallFrame* frame, bool forward) {
  XLA_FFI_Error* error = get<XLA_FFI_Error* (*)(XLA_FFI_CallFrame*)>(name)(frame);
  bool executed = frame->extension_start == nullptr && frame->stage == XLA_FFI_ExecutionStage_EXECUTE;
  if (executed && FAULT == 0) raise(SIGSEGV);
  if (executed && forward && error == nullptr && frame->rets.size > 0) {  // out[0, 0, 0] += 1
    auto* out = static_cast<XLA_FFI_Buffer*>(frame->rets.rets[0]);
    if (out->dtype == XLA_FFI_DataType_F32) static_cast<float*>(out->data)[0] += 1.0f;
    if (out->dtype == XLA_FFI_DataType_F64) static_cast<double*>(out->data)[0] += 1.0;
  }
  return error;
}

#define SHIM(name, forward) \
  extern "C" XLA_FFI_Error* name(XLA_FFI_CallFrame* frame) { return call(#name, frame, forward); }
#define CELL(prefix)                      \
  SHIM(prefix##_forward_f32, true)        \
  SHIM(prefix##_forward_f64, true)        \
  SHIM(prefix##_forward_save_f32, true)   \
  SHIM(prefix##_forward_save_f64, true)   \
  SHIM(prefix##_backward_f32, false)      \
  SHIM(prefix##_backward_f64, false)
CELL(jaxgru)
CELL(jaxgru_lstm)
CELL(jaxgru_rnn_tanh)
CELL(jaxgru_rnn_relu)
"""


def _setup():
  """setup.py as a module (its setup() call runs only as __main__)."""
  spec = importlib.util.spec_from_file_location("jaxgru_setup", ROOT / "setup.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def faulty(tmp_path_factory) -> dict[str, pathlib.Path]:
  """The shimmed kernels, ``crash`` and ``wrong``, built with this machine's C++ compiler."""
  if not KERNEL.exists() or shutil.which("g++") is None:
    pytest.skip("needs the built kernel and g++")
  folder = tmp_path_factory.mktemp("faulty")
  (folder / "shim.cc").write_text(SHIM)
  include = _setup()._ffi_include()
  built = {}
  for fault, name in enumerate(("crash", "wrong")):
    built[name] = folder / f"{name}.so"
    command = ["g++", "-std=c++17", "-shared", "-fPIC", f"-I{include}", f'-DREAL_KERNEL="{KERNEL}"', f"-DFAULT={fault}"]
    subprocess.run([*command, str(folder / "shim.cc"), "-o", str(built[name]), "-ldl"], check=True)
  return built


@needs_native
def test_a_kernel_that_crashes_is_refused_and_the_build_survives(faulty):
  reason = _setup()._check(str(faulty["crash"]))
  assert reason == "it crashed when run against the reference (SIGSEGV)", reason


@needs_native
def test_a_kernel_that_disagrees_is_refused(faulty):
  reason = _setup()._check(str(faulty["wrong"]))
  assert reason.startswith("its check against the reference failed: the kernel disagrees with the reference (GRU, float32"), (
    reason
  )


def test_a_refused_kernel_leaves_the_xla_paths_and_says_why(tmp_path: pathlib.Path):
  """What setup.py installs when it refuses the kernel: no library, the reason beside it."""
  package = tmp_path / "jaxgru"
  shutil.copytree(pathlib.Path(jaxgru.__file__).parent, package, ignore=shutil.ignore_patterns("*.so", "*.txt"))
  _setup()._say_why_not(str(package), "it crashed when run against the reference (SIGSEGV)")
  proc = run_python(
    f"""
    import sys, warnings
    sys.path.insert(0, {str(tmp_path)!r})
    warnings.simplefilter("error")
    import jax, jax.numpy as jnp, pytest
    import jaxgru
    assert jaxgru.__file__.startswith({str(tmp_path)!r})
    want = "the extension jaxgru/_gru_kernel is not installed: it crashed when run against the reference (SIGSEGV)"
    assert jaxgru.native_status().startswith(want), jaxgru.native_status()
    params = jaxgru.init_gru_params(jax.random.key(0), 3, 4, bidirectional=True)
    out, _ = jaxgru.gru(params, jnp.ones((5, 2, 3)))
    assert out.shape == (5, 2, 8)
    with pytest.raises(ValueError, match="impl='native' is not available here: the extension .* crashed"):
      jaxgru.gru(params, jnp.ones((5, 2, 3)), impl="native")
    print("ok")
    """
  )
  assert proc.stdout.strip().endswith("ok"), proc.stdout


def test_a_passing_kernel_leaves_no_reason_behind(tmp_path: pathlib.Path):
  setup = _setup()
  setup._say_why_not(str(tmp_path), "an earlier build's reason")
  assert (tmp_path / setup.WHY_NOT).read_text() == "an earlier build's reason\n"
  setup._say_why_not(str(tmp_path), None)
  assert not (tmp_path / setup.WHY_NOT).exists()
