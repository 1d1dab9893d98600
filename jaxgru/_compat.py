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
