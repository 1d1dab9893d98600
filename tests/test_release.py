"""What an installed jaxgru promises whatever is missing around it: a native kernel that cannot
register never breaks ``import jaxgru`` (one warning, the XLA paths), and ``parity`` without its
extra says which extra to install, its commands' ``--help`` working without it.

The wheel itself (its tags, the oldest and newest JAX) is checked by ``scripts/check_release.sh``,
which CI runs after this suite.
"""

from __future__ import annotations

import pytest
from _helpers import needs_native, run_python


@needs_native
def test_a_registration_failure_leaves_the_xla_paths_and_warns_once():
  """XLA refusing the kernel's handlers (as jax 0.8.3 refused handlers built for FFI API 0.3):
  ``import jaxgru`` works, the first use warns once with the reason, the XLA paths serve."""
  proc = run_python(
    """
    import warnings
    import jax, jax.numpy as jnp, numpy as np, pytest

    def refuse(name, *args, **kwargs):
      raise RuntimeError(f"XLA FFI handler registration for {name} on platform Host (canonical host) failed because "
                         "the handler's API version (0.3) is incompatible with the framework's API version (0.2)")

    jax.ffi.register_ffi_target = refuse
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      import jaxgru
      assert not caught, caught  # importing touches no kernel
      params = jaxgru.init_gru_params(jax.random.key(0), 3, 4, bidirectional=True)
      x = jnp.ones((5, 2, 3))
      out, h_n = jaxgru.gru(params, x)
      jaxgru.gru(params, x)
      assert not jaxgru.native_available()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert "native CPU kernel is off" in messages[0] and "incompatible with the framework's API version" in messages[0]
    assert "XLA paths" in messages[0], messages[0]
    assert "incompatible" in jaxgru.native_status()
    np.testing.assert_allclose(out, jaxgru.gru(params, x, impl="fused")[0], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="impl='native' is not available here: registering its XLA FFI targets failed"):
      jaxgru.gru(params, x, impl="native")
    print("ok")
    """
  )
  assert proc.stdout.strip().endswith("ok"), proc.stdout


WITHOUT_TORCH = (
  "import sys\nsys.modules['torch'] = None  # import torch raises ModuleNotFoundError, as where it is not installed\n"
)


def test_parity_without_torch_names_the_extra():
  proc = run_python(
    WITHOUT_TORCH
    + """
import pytest
import parity
assert "compare" in dir(parity)
for name in ("compare", "from_torch", "save", "run_torch"):
  with pytest.raises(ModuleNotFoundError, match=r"parity\\." + name + r" needs torch.*pip install 'jaxgru\\[parity\\]'"):
    getattr(parity, name)
with pytest.raises(ModuleNotFoundError, match="jaxgru\\\\[parity\\\\]"):
  from parity import assert_close
with pytest.raises(AttributeError, match="no attribute 'nothing'"):
  parity.nothing
print("ok")
"""
  )
  assert proc.stdout.strip().endswith("ok"), proc.stdout


@pytest.mark.parametrize(
  ("module", "usage", "extra"),
  [("parity", "usage: python -m parity", "jaxgru[parity]"), ("parity.sine.cli", "usage: jaxgru-sine", "jaxgru[parity,examples]")],
)
def test_commands_without_torch_help_and_name_the_extra(module, usage, extra):
  """``--help`` works without the extras; a run says which extra to install (exit status 2)."""
  run = WITHOUT_TORCH + f"import runpy\nsys.argv = ['cmd', *{{args}}]\nrunpy.run_module({module!r}, run_name='__main__')\n"
  helped = run_python(run.format(args=["--help"]), check=False)
  assert helped.returncode == 0 and usage in helped.stdout, helped.stderr
  ran = run_python(run.format(args=[]), check=False)
  assert ran.returncode == 2 and "needs torch, which is not installed" in ran.stderr and extra in ran.stderr, ran.stderr
  assert "Traceback" not in ran.stderr, ran.stderr
