"""A first look: torch.nn.GRU and jaxgru.GRU with the same weights give the same numbers.

Run: ``python examples/demo.py`` (after ``bash scripts/setup.sh``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import jaxgru


def main() -> None:
  jax.config.update("jax_default_matmul_precision", "highest")
  torch.backends.cuda.matmul.allow_tf32 = False
  torch.manual_seed(0)
  ref = torch.nn.GRU(input_size=4, hidden_size=8, num_layers=2, bidirectional=True, batch_first=True)
  model = jaxgru.GRU(4, 8, num_layers=2, bidirectional=True, batch_first=True, rngs=nnx.Rngs(0))
  model.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})

  x = np.random.default_rng(0).standard_normal((3, 12, 4)).astype(np.float32)
  lengths = np.array([12, 5, 9])
  packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths), True, False)
  t_out, t_h = ref(packed)
  t_out, _ = torch.nn.utils.rnn.pad_packed_sequence(t_out, batch_first=True, total_length=12)
  j_out, j_h = model(jnp.asarray(x), lengths=jnp.asarray(lengths))

  print(f"torch {torch.__version__} vs jax {jax.__version__} on {jax.devices()[0].platform}, float32, TF32 off")
  print("torch.nn.GRU(4, 8, num_layers=2, bidirectional=True, batch_first=True), packed lengths", lengths.tolist())
  print(f"  output {tuple(j_out.shape)}: max |jax - torch| = {np.abs(np.asarray(j_out) - t_out.detach().numpy()).max():.2e}")
  print(f"  h_n    {tuple(j_h.shape)}: max |jax - torch| = {np.abs(np.asarray(j_h) - t_h.detach().numpy()).max():.2e}")


if __name__ == "__main__":
  main()
