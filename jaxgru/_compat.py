"""What differs between the JAX releases jaxgru supports (0.7.0 to the newest), in one place.

Each name is what the newer JAX offers, or the nearest that the older one does; the guide
'Supported versions' (docs/guides/versions.md) lists what an older JAX lacks.
"""

from __future__ import annotations

import inspect

import jax
import jax.experimental
from jax.experimental.custom_partitioning import SdyShardingRule

# jax.enable_x64 (a context manager) is jax.experimental.enable_x64 before jax 0.8
enable_x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64

# jax.random.bernoulli(..., out_sharding=) from jax 0.8: under an explicit-sharding mesh the mask
# is sharded like x
BERNOULLI_OUT_SHARDING = "out_sharding" in inspect.signature(jax.random.bernoulli).parameters

# A custom_partitioning sharding rule with need_replication_factors (axes Shardy must keep
# replicated) from jax 0.8; before it, the rule's string alone
SHARDING_RULE_REPLICATION = "need_replication_factors" in inspect.signature(SdyShardingRule.__init__).parameters


try:  # JAX has no public test for a known value; its tracers have answered this since before 0.7
  from jax._src.core import to_concrete_value as _to_concrete_value
except ImportError:  # a JAX without it: only plain arrays count as known
  _to_concrete_value = lambda x: None if isinstance(x, jax.core.Tracer) else x


def known_now(*trees) -> bool:
  """Whether every array in ``trees`` has its value already: a concrete array, or the tracer of
  a transformation applied eagerly to one (``jax.grad`` outside ``jit``); False inside ``jit``
  or any other staging."""
  return all(_to_concrete_value(leaf) is not None for leaf in jax.tree.leaves(trees))
