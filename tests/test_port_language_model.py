"""examples/port_language_model.py, short: a torch language model with a tied decoder ported to
JAX, evaluated, trained with dropout and ported back, perplexities equal on both sides."""

import importlib.util
import pathlib

import pytest

PATH = pathlib.Path(__file__).parent.parent / "examples" / "port_language_model.py"


@pytest.fixture(scope="module")
def example():
  spec = importlib.util.spec_from_file_location("port_language_model", PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_short_run_agrees_both_ways(example, tmp_path, capsys):
  args = example.parse_args(
    ["--sentences", "300", "--size", "16", "--bptt", "12", "--torch-epochs", "1", "--jax-steps", "6", "--out", str(tmp_path)]
  )
  result = example.run(args)
  printed = capsys.readouterr().out
  assert "ported to JAX: validation perplexity" in printed and "back to torch: validation perplexity" in printed
  assert example.agree(result)
  assert result["logprob_diff"] < 1e-5 and result["after_logprob_diff"] < 1e-5
  assert result["after_ppl_torch"] != result["ppl_torch"]  # JAX's training changed the weights torch evaluates
  assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "trained.safetensors"]


def test_reads_a_corpus_folder_and_rejects_bad_flags(example, tmp_path):
  for split in ("train", "valid", "test"):
    (tmp_path / f"{split}.txt").write_text("a b c\nb c a\n" * 20)
  words, ids = example.tokenize(example.read_corpus(example.parse_args(["--data", str(tmp_path)]).data))
  assert words == ["a", "b", "c", "<eos>"] and len(ids["valid"]) == 160
  with pytest.raises(SystemExit):
    example.parse_args(["--data", str(tmp_path / "missing")])
  with pytest.raises(SystemExit):
    example.parse_args(["--dropout", "1.5"])
  with pytest.raises(SystemExit):
    example.parse_args(["--bptt", "0"])


def test_a_corpus_too_small_for_the_window_is_refused(example):
  with pytest.raises(SystemExit, match="too small"):
    example.run(example.parse_args(["--sentences", "20", "--bptt", "35"]))
