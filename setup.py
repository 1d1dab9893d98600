"""Builds the optional native kernel (native/gru_kernel.cc); everything else is in pyproject.toml.

The kernel is an XLA FFI custom call that ``jaxgru._native_library`` loads with ``ctypes``: a plain shared
library, not a CPython extension. So it is named ``jaxgru/_gru_kernel.so`` whatever the Python,
and the wheel is tagged ``py3-none-<platform>``: one wheel serves every Python the project
supports. It is compiled against the XLA FFI headers of the oldest jaxlib in the supported range
(a build requirement in pyproject.toml), whose FFI API version every newer XLA accepts: one
binary for the whole range. libstdc++ is linked statically (its symbols hidden, unused sections
dropped), so the library needs only the C library and libgcc_s, which keeps the wheel's manylinux
policy as low as the build machine's glibc allows (``scripts/wheel.sh`` repairs and checks it).

The built library is stripped (never linked with ``-s``: see ``_strip``) and then run against the
reference implementation in a subprocess (``native/check_kernel.py``): a kernel that crashes or
disagrees there is not installed. Where the compiler or the headers are missing, the build fails
or the check does, the install goes on without the kernel (``optional=True``) and jaxgru runs on
its XLA paths; ``jaxgru.native_available()`` and ``jaxgru.native_status()`` say which and why
(the reason is installed as ``jaxgru/_gru_kernel.txt``). ``JAXGRU_BUILD_NATIVE=0`` builds the pure
``py3-none-any`` wheel, with no kernel.
"""

import importlib.util
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

try:
  from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
  from wheel.bdist_wheel import bdist_wheel


def _ffi_include() -> str | None:
  spec = importlib.util.find_spec("jaxlib")
  if spec is None or not spec.submodule_search_locations:
    return None
  include = pathlib.Path(next(iter(spec.submodule_search_locations))) / "include"
  return str(include) if (include / "xla" / "ffi" / "api" / "ffi.h").exists() else None


HERE = pathlib.Path(__file__).resolve().parent


def _strip(library: str) -> None:
  """Strips the linked library (``$STRIP``, else ``strip``; kept as it is where there is none).

  Never ``-s`` at link time: binutils 2.35 (Debian 11) then mislinks the ``target_clones``
  functions (their R_X86_64_IRELATIVE relocations are dropped), and their first call crashes
  the process. Stripped after linking, the same build runs; :func:`_check` proves it each time."""
  strip = shlex.split(os.environ.get("STRIP", "strip"))
  if shutil.which(strip[0]):
    subprocess.run([*strip, "--strip-unneeded", library], check=True)


def _check(library: str) -> str | None:
  """Runs the built kernel against the reference in a subprocess (native/check_kernel.py);
  returns why it must not be installed, or None. A kernel that crashes ends the subprocess only.

  ``JAXGRU_KERNEL_CHECK=0`` skips this, for a cross-compiled kernel that cannot run on the build
  machine: its wheel is then checked where it runs (scripts/check_release.sh, under emulation)."""
  if os.environ.get("JAXGRU_KERNEL_CHECK") == "0":
    print("jaxgru: JAXGRU_KERNEL_CHECK=0: the native kernel was not checked against the reference here")
    return None
  with tempfile.TemporaryDirectory() as tmp:
    package = pathlib.Path(tmp) / "jaxgru"
    shutil.copytree(HERE / "jaxgru", package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(library, package / "_gru_kernel.so")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JAXGRU_NATIVE_ISA", None)
    try:
      done = subprocess.run(
        [sys.executable, str(HERE / "native" / "check_kernel.py"), str(package)],
        capture_output=True, text=True, timeout=900, env=env, cwd=tmp,
      )  # fmt: skip
    except subprocess.TimeoutExpired:
      return "its check against the reference did not finish in 900 s"
  if done.returncode < 0:
    return f"it crashed when run against the reference ({signal.Signals(-done.returncode).name})"
  lines = (done.stdout + done.stderr).strip().splitlines() or ["(no output)"]
  if done.returncode != 0:
    return f"its check against the reference failed: {lines[-1]}"
  print(f"jaxgru: the native CPU kernel agrees with the reference in {len(lines)} cases (native/check_kernel.py)")
  return None


# Why the installed jaxgru has no kernel, written beside where the kernel would be (read by
# jaxgru._native_library.native_status()); absent when the kernel was built and passed its check.
WHY_NOT = "_gru_kernel.txt"


def _say_why_not(folder: str, reason: str | None) -> None:
  why = pathlib.Path(folder) / WHY_NOT
  if reason is None:
    why.unlink(missing_ok=True)
    return
  why.parent.mkdir(parents=True, exist_ok=True)
  why.write_text(reason + "\n")
  print(f"jaxgru: installing without the native CPU kernel: {reason}; jaxgru runs on its XLA paths")


class BuildKernel(build_ext):
  """Names the library ``_gru_kernel.so`` (no Python ABI in the name: ctypes loads it), strips it,
  runs it against the reference in a subprocess, and installs it only if that passed; where it
  is not installed, says why (on the console and in ``jaxgru/_gru_kernel.txt``)."""

  def get_ext_filename(self, fullname: str) -> str:
    return os.path.join(*fullname.split(".")) + ".so"

  def build_extension(self, ext: Extension) -> None:
    library = self.get_ext_fullpath(ext.name)
    try:
      super().build_extension(ext)
    except Exception as error:  # optional=True: setuptools reports the compiler's failure and goes on
      reason = f"the C++17 compiler failed ({type(error).__name__}; pip install -v shows its message)"
      _say_why_not(os.path.dirname(library), reason)
      if getattr(self, "editable_mode", False):
        _say_why_not(str(HERE / "jaxgru"), reason)
      raise
    _strip(library)
    reason = _check(library)
    if reason is not None:
      os.remove(library)
    _say_why_not(os.path.dirname(library), reason)
    if getattr(self, "editable_mode", False):  # the package runs from the source tree: say it there too
      _say_why_not(str(HERE / "jaxgru"), reason)


class BuildPy(build_py):
  """Where no kernel is built at all, says why in ``jaxgru/_gru_kernel.txt``."""

  def run(self) -> None:
    super().run()
    if NO_KERNEL is not None:
      _say_why_not(str(HERE / "jaxgru") if self.editable_mode else os.path.join(self.build_lib, "jaxgru"), NO_KERNEL)


class Wheel(bdist_wheel):
  """A platform wheel for any Python 3 (``py3-none-<platform>``: the only binary is the
  ctypes-loaded kernel), or, built with ``JAXGRU_BUILD_NATIVE=0``, the pure ``py3-none-any``
  wheel, with no kernel, for every platform that has no wheel of its own."""

  def finalize_options(self) -> None:
    super().finalize_options()
    self.root_is_pure = NO_KERNEL is not None

  def get_tag(self) -> tuple[str, str, str]:
    return ("py3", "none", "any") if NO_KERNEL is not None else ("py3", "none", super().get_tag()[2])


include = _ffi_include()
if os.environ.get("JAXGRU_BUILD_NATIVE") == "0":
  NO_KERNEL = (
    "this is jaxgru's pure Python wheel (py3-none-any), for the platforms that have no wheel with the kernel "
    "(the kernel ships for Linux x86-64 and aarch64 with glibc 2.24 or newer)"
  )
elif include is None:
  NO_KERNEL = "jaxlib's XLA FFI headers were not found when it was built"
else:
  NO_KERNEL = None
kernel = Extension(
  "jaxgru._gru_kernel",
  sources=["native/gru_kernel.cc"],
  depends=["native/gru_support.h", "native/gru_gemm.h", "native/gru_gemm_isa.h"],
  include_dirs=[include] if include else [],
  language="c++",
  # -fno-trapping-math: no FP exception flags are read, and without it GCC vectorises the gate
  # loops only in their AVX-512 clone, not the AVX2 one
  extra_compile_args=[
    *("-std=c++17", "-O3", "-g0", "-fno-trapping-math", "-Wno-attributes", "-Wno-return-type"),
    *("-ffunction-sections", "-fdata-sections"),  # for --gc-sections below
  ],
  # libstdc++ inside the library, its symbols kept to itself (jaxlib brings its own); libgcc stays
  # shared (its static unwinder needs glibc 2.35's _dl_find_object); stripped after linking (_strip)
  extra_link_args=["-static-libstdc++", "-Wl,--exclude-libs,ALL", "-Wl,--gc-sections"],
  optional=True,
)
if __name__ == "__main__":  # as pip's build runs it; the tests import the helpers above
  setup(
    ext_modules=[kernel] if NO_KERNEL is None else [],
    cmdclass={"build_ext": BuildKernel, "build_py": BuildPy, "bdist_wheel": Wheel},
  )
