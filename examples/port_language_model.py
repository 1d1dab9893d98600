"""A whole torch model with a GRU inside, ported to JAX and back: PyTorch's word-level language model.

The model has the structure of ``word_language_model`` in pytorch/examples: Embedding -> 2-layer
GRU with dropout -> Linear decoder whose weight is tied to the embedding, log-softmax, trained
with truncated backpropagation through time. This script

1. makes a small corpus (a toy grammar, train/valid/test; ``--data DIR`` reads ``train.txt``,
   ``valid.txt`` and ``test.txt`` instead, e.g. wikitext-2) and trains the torch model briefly;
2. saves ``model.state_dict()`` and ports it to Flax NNX with ``parity.load`` (the GRU) and
   ``parity.load_tensors`` (everything else, the tied weight once);
3. evaluates both, the hidden state carried from window to window: equal perplexities;
4. trains a few steps in JAX (optax, dropout on), saves the whole state dict with
   ``parity.save(..., prefix="rnn.", extra=...)`` and loads it into a fresh torch model with
   ``load_state_dict(strict=True)``: equal perplexities again.

Run: ``python examples/port_language_model.py`` (``--help`` for the sizes and steps).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import safetensors.torch
import torch
from flax import nnx

import parity

# ---- the corpus: words to ids, like the example's data.Corpus --------------------------------------


def make_corpus(sentences: int, seed: int) -> dict[str, list[str]]:
  """Lines of a toy grammar ("the old dog sees a red bird"), split 80/10/10 like a real corpus."""
  rng = np.random.default_rng(seed)
  adjectives, nouns = "small big red old quiet".split(), "cat dog bird child farmer river house tree".split()
  transitive, intransitive, places = "sees likes follows finds".split(), "sleeps runs sings".split(), "near under behind".split()

  def noun_phrase() -> list[str]:
    adjective = [rng.choice(adjectives)] if rng.random() < 0.4 else []
    return [rng.choice(["the", "a"]), *adjective, rng.choice(nouns)]

  lines = []
  for _ in range(sentences):
    if rng.random() < 0.6:
      words = noun_phrase() + [rng.choice(transitive)] + noun_phrase()
    else:
      words = noun_phrase() + [rng.choice(intransitive)] + ([rng.choice(places), *noun_phrase()] if rng.random() < 0.5 else [])
    lines.append(" ".join(words))
  cut1, cut2 = int(0.8 * sentences), int(0.9 * sentences)
  return {"train": lines[:cut1], "valid": lines[cut1:cut2], "test": lines[cut2:]}


def read_corpus(folder: pathlib.Path) -> dict[str, list[str]]:
  return {split: (folder / f"{split}.txt").read_text(encoding="utf8").splitlines() for split in ("train", "valid", "test")}


def tokenize(corpus: dict[str, list[str]]) -> tuple[list[str], dict[str, np.ndarray]]:
  """Every line's words and ``<eos>``, as ids; the dictionary grows over train, valid, test."""
  index: dict[str, int] = {}
  ids = {
    split: [index.setdefault(w, len(index)) for line in lines for w in line.split() + ["<eos>"]]
    for split, lines in corpus.items()
  }
  return list(index), {split: np.asarray(v, np.int64) for split, v in ids.items()}


def batchify(data: np.ndarray, batch_size: int) -> np.ndarray:
  """``(steps, batch)``: the stream cut into ``batch_size`` columns, as the example does."""
  steps = len(data) // batch_size
  return data[: steps * batch_size].reshape(batch_size, steps).T.copy()


def windows(source: np.ndarray, bptt: int):
  """``(inputs, targets)`` of ``bptt`` steps (the last one shorter): the example's ``get_batch``."""
  for i in range(0, len(source) - 1, bptt):
    n = min(bptt, len(source) - 1 - i)
    yield source[i : i + n], source[i + 1 : i + 1 + n]


# ---- torch: the example's RNNModel (GRU, tied), its training loop and evaluate() ------------------


class TorchLanguageModel(torch.nn.Module):
  def __init__(self, vocab: int, size: int, layers: int, dropout: float):
    super().__init__()
    self.drop = torch.nn.Dropout(dropout)
    self.encoder = torch.nn.Embedding(vocab, size)
    self.rnn = torch.nn.GRU(size, size, layers, dropout=dropout)
    self.decoder = torch.nn.Linear(size, vocab)
    self.decoder.weight = self.encoder.weight  # tied ("Using the Output Embedding", Press & Wolf 2016)
    torch.nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
    torch.nn.init.zeros_(self.decoder.bias)

  def forward(self, tokens: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    output, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
    return torch.log_softmax(self.decoder(self.drop(output)), dim=-1), hidden


def train_torch(model: TorchLanguageModel, data: np.ndarray, args: argparse.Namespace) -> None:
  model.train()
  hidden = torch.zeros(model.rnn.num_layers, data.shape[1], model.rnn.hidden_size)
  for _ in range(args.torch_epochs):
    for tokens, targets in windows(data, args.bptt):
      hidden = hidden.detach()  # the example's repackage_hidden: truncated BPTT
      model.zero_grad()
      log_probs, hidden = model(torch.from_numpy(tokens), hidden)
      loss = torch.nn.functional.nll_loss(log_probs.flatten(0, 1), torch.from_numpy(targets).flatten())
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
      with torch.no_grad():
        for p in model.parameters():
          p.add_(p.grad, alpha=-args.lr)


def evaluate_torch(model: TorchLanguageModel, data: np.ndarray, bptt: int) -> tuple[float, np.ndarray]:
  """Mean NLL over the stream, hidden state carried across windows; and the first window's log-probs."""
  model.eval()
  hidden, total, first = torch.zeros(model.rnn.num_layers, data.shape[1], model.rnn.hidden_size), 0.0, None
  with torch.no_grad():
    for tokens, targets in windows(data, bptt):
      log_probs, hidden = model(torch.from_numpy(tokens), hidden)
      total += len(tokens) * torch.nn.functional.nll_loss(log_probs.flatten(0, 1), torch.from_numpy(targets).flatten()).item()
      first = log_probs.numpy() if first is None else first
  return total / (len(data) - 1), first


# ---- JAX: the same model in Flax NNX around the ported jaxgru.GRU ---------------------------------


class LanguageModel(nnx.Module):
  """Embedding -> ``jaxgru.GRU`` -> decoder tied to the embedding (``nnx.Embed.attend``)."""

  def __init__(self, path: pathlib.Path, dropout: float, *, rngs: nnx.Rngs):
    tensors = parity.load_tensors(path)  # every tensor, bit for bit; tied names share one array
    assert tensors["decoder.weight"] is tensors["encoder.weight"], "the decoder is tied to the embedding"
    vocab, size = tensors["encoder.weight"].shape
    self.encoder = nnx.Embed(vocab, size, rngs=rngs)
    self.encoder.embedding[...] = jnp.asarray(tensors["encoder.weight"])
    self.decoder_bias = nnx.Param(jnp.asarray(tensors["decoder.bias"]))
    self.rnn = parity.module_from_params(parity.load(path, prefix="rnn."), dropout=dropout, rngs=rngs)
    self.drop = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, tokens: jax.Array, hidden: jax.Array) -> tuple[jax.Array, jax.Array]:
    output, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
    return jax.nn.log_softmax(self.encoder.attend(self.drop(output)) + self.decoder_bias), hidden

  def state_dict(self) -> dict[str, jax.Array]:
    """The model's other tensors under torch's names: the tied weight under both."""
    weight = self.encoder.embedding[...]
    return {"encoder.weight": weight, "decoder.weight": weight, "decoder.bias": self.decoder_bias[...]}


def nll(log_probs: jax.Array, targets: jax.Array) -> jax.Array:
  return -jnp.mean(jnp.take_along_axis(log_probs, targets[..., None], axis=-1))


@nnx.jit
def eval_step(model: LanguageModel, tokens: jax.Array, targets: jax.Array, hidden: jax.Array):
  log_probs, hidden = model(tokens, hidden)
  return nll(log_probs, targets), log_probs, hidden


@nnx.jit
def train_step(model: LanguageModel, optimizer: nnx.Optimizer, tokens: jax.Array, targets: jax.Array, hidden: jax.Array):
  # hidden is an input: gradients stop at the window's start, no repackage_hidden needed.
  def loss_fn(model):
    log_probs, new_hidden = model(tokens, hidden)
    return nll(log_probs, targets), new_hidden

  (loss, hidden), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
  optimizer.update(model, grads)
  return loss, hidden


def evaluate_jax(model: LanguageModel, data: np.ndarray, bptt: int) -> tuple[float, np.ndarray]:
  model.eval()
  hidden, total, first = jnp.zeros((model.rnn.num_layers, data.shape[1], model.rnn.hidden_size)), 0.0, None
  for tokens, targets in windows(data, bptt):
    loss, log_probs, hidden = eval_step(model, tokens, targets, hidden)  # h_n of one window is h0 of the next
    total += len(tokens) * float(loss)
    first = np.asarray(log_probs) if first is None else first
  return total / (len(data) - 1), first


def train_jax(model: LanguageModel, data: np.ndarray, args: argparse.Namespace) -> list[float]:
  model.train()  # dropout on, in the GRU and around it
  optimizer = nnx.Optimizer(model, optax.chain(optax.clip_by_global_norm(args.clip), optax.sgd(args.lr)), wrt=nnx.Param)
  hidden, losses = jnp.zeros((model.rnn.num_layers, data.shape[1], model.rnn.hidden_size)), []
  batches = [w for w in windows(data, args.bptt) if len(w[0]) == args.bptt]  # one shape: one compilation
  for step in range(args.jax_steps):
    tokens, targets = batches[step % len(batches)]
    hidden = hidden if step % len(batches) else jnp.zeros_like(hidden)
    loss, hidden = train_step(model, optimizer, tokens, targets, hidden)
    losses.append(float(loss))
  return losses


# ---- the whole round trip ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, float]:
  """Trains in torch, ports, evaluates, trains in JAX, ports back; returns what it printed."""
  corpus = read_corpus(args.data) if args.data else make_corpus(args.sentences, args.seed)
  words, ids = tokenize(corpus)
  train, valid = batchify(ids["train"], args.batch_size), batchify(ids["valid"], args.eval_batch_size)
  if len(train) <= args.bptt or len(valid) < 2 or len(ids["test"]) < 2 * args.eval_batch_size:
    raise SystemExit(
      f"the corpus is too small for --bptt {args.bptt} and these batch sizes: use more --sentences or smaller values"
    )
  folder = pathlib.Path(args.out or tempfile.mkdtemp(prefix="port_lm_"))
  folder.mkdir(parents=True, exist_ok=True)
  print(f"corpus: {len(words)} words in the vocabulary; {len(ids['train'])} / {len(ids['valid'])} tokens train / valid")

  torch.set_num_threads(args.torch_threads)
  torch.manual_seed(args.seed)
  torch_model = TorchLanguageModel(len(words), args.size, args.layers, args.dropout)
  start = time.perf_counter()
  train_torch(torch_model, train, args)
  torch.save(torch_model.state_dict(), folder / "model.pt")  # the state dict, not the pickled module
  print(f"torch: trained {args.torch_epochs} epoch(s) in {time.perf_counter() - start:.1f} s, saved {folder / 'model.pt'}")

  with jax.default_matmul_precision("highest"):
    model = LanguageModel(folder / "model.pt", args.dropout, rngs=nnx.Rngs(args.seed))
    result = {"torch_loss": evaluate_torch(torch_model, valid, args.bptt)}
    result["jax_loss"] = evaluate_jax(model, valid, args.bptt)
    report("ported to JAX", *result["torch_loss"], *result["jax_loss"], result)

    losses = train_jax(model, train, args)
    k = max(1, len(losses) // 5)
    print(
      f"JAX: {args.jax_steps} steps of SGD with dropout, training loss {np.mean(losses[:k]):.4f} (first {k}) -> {np.mean(losses[-k:]):.4f} (last {k})"
    )
    path = parity.save(model.rnn, folder / "trained.safetensors", prefix="rnn.", extra=model.state_dict())
    back = TorchLanguageModel(len(words), args.size, args.layers, args.dropout)
    back.load_state_dict(safetensors.torch.load_file(path), strict=True)  # every key, the tie kept
    assert back.decoder.weight is back.encoder.weight
    after = evaluate_jax(model, valid, args.bptt), evaluate_torch(back, valid, args.bptt)
    report("back to torch", *after[1], *after[0], result, "after_")
    test = batchify(ids["test"], args.eval_batch_size)
    test_torch, test_jax = evaluate_torch(back, test, args.bptt)[0], evaluate_jax(model, test, args.bptt)[0]
    result |= {"test_ppl_torch": math.exp(test_torch), "test_ppl_jax": math.exp(test_jax)}
  print(f"test perplexity: torch {result['test_ppl_torch']:.4f}, JAX {result['test_ppl_jax']:.4f}; wrote {path}")
  return result


def agree(result: dict[str, float], rtol: float = 1e-5) -> bool:
  """Whether every perplexity pair agrees within float32 rounding of a sum over the windows."""
  pairs = [(result[f"{t}ppl_torch"], result[f"{t}ppl_jax"]) for t in ("", "after_", "test_")]
  return all(abs(a - b) <= rtol * a for a, b in pairs)


def report(
  title: str, torch_loss: float, torch_lp: np.ndarray, jax_loss: float, jax_lp: np.ndarray, result: dict, tag: str = ""
) -> None:
  ppl_torch, ppl_jax = math.exp(torch_loss), math.exp(jax_loss)
  diff = float(np.max(np.abs(torch_lp - jax_lp)))
  result.update({f"{tag}ppl_torch": ppl_torch, f"{tag}ppl_jax": ppl_jax, f"{tag}logprob_diff": diff})
  print(
    f"{title}: validation perplexity torch {ppl_torch:.4f}, JAX {ppl_jax:.4f} (|difference| {abs(ppl_torch - ppl_jax):.2e}, ",
    end="",
  )
  print(f"relative {abs(ppl_torch - ppl_jax) / ppl_torch:.1e}); largest |log-prob difference| {diff:.1e}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--data", type=pathlib.Path, help="a folder with train.txt, valid.txt, test.txt (default: a toy grammar)")
  p.add_argument("--sentences", type=_positive, default=3000, help="sentences of the toy corpus")
  p.add_argument("--size", type=_positive, default=64, help="embedding and hidden size (equal: the weights are tied)")
  p.add_argument("--layers", type=_positive, default=2)
  p.add_argument("--dropout", type=float, default=0.2)
  p.add_argument("--bptt", type=_positive, default=35, help="window length")
  p.add_argument("--batch-size", type=_positive, default=20)
  p.add_argument("--eval-batch-size", type=_positive, default=10)
  p.add_argument("--lr", type=float, default=20.0, help="SGD learning rate, as the example's")
  p.add_argument("--clip", type=float, default=0.25, help="gradient norm clipping")
  p.add_argument("--torch-epochs", type=_positive, default=2)
  p.add_argument("--jax-steps", type=_positive, default=50)
  p.add_argument(
    "--torch-threads", type=_positive, default=1, help="torch's threads (more only add synchronisation for a small model)"
  )
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", type=pathlib.Path, help="folder for model.pt and trained.safetensors (default: a new temporary one)")
  args = p.parse_args(argv)
  if not 0 <= args.dropout <= 1:
    p.error(f"--dropout must be in [0, 1], got {args.dropout}")
  if args.data and not all((args.data / f"{s}.txt").is_file() for s in ("train", "valid", "test")):
    p.error(f"--data {args.data} must hold train.txt, valid.txt and test.txt")
  return args


def _positive(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
  return value


if __name__ == "__main__":
  if not agree(run(parse_args())):
    print("the perplexities differ by more than float32 rounding", file=sys.stderr)
    sys.exit(1)
