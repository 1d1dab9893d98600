"""A bounded property-based sweep: random GRU configurations, lengths, h0 and weights, torch
against jaxgru through parity.compare in float64 (1e-10).

Shapes are fixed (T=4, B=3) and the flags few, so examples share compiled functions; values
(weights, inputs, lengths) vary freely, as they are traced and cost no compile."""

from __future__ import annotations

import jax
import numpy as np
import torch
from _helpers import random_torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parity

I, H, T, B = 2, 3, 4, 3


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
  num_layers=st.integers(1, 2),
  bidirectional=st.booleans(),
  bias=st.booleans(),
  batch_first=st.booleans(),
  lengths=st.none() | st.lists(st.integers(1, T), min_size=B, max_size=B),
  with_h0=st.booleans(),
  seed=st.integers(0, 2**16),
  scale=st.sampled_from([0.1, 1.0, 3.0]),
)
def test_random_configurations_agree(num_layers, bidirectional, bias, batch_first, lengths, with_h0, seed, scale):
  module = random_torch(
    torch.nn.GRU(I, H, num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional), seed, torch.float64
  )
  rng = np.random.default_rng(seed)
  x = scale * rng.standard_normal((B, T, I) if batch_first else (T, B, I))
  h0 = rng.standard_normal((num_layers * (2 if bidirectional else 1), B, H)) if with_h0 else None
  with jax.enable_x64(True):
    report = parity.assert_close(module, parity.from_torch(module), x, h0, lengths=lengths, seed=seed)
  assert len(report.rows) == 2 + len(module.state_dict()) + 1 + with_h0
