"""The benchmark suite runs and writes its reports (no timing is asserted: timings belong in benchmarks)."""

from __future__ import annotations

import json
import os
import sys

import matplotlib.image
import pytest

import benchmarks
from benchmarks import memory, report, shapes, suite


def test_parse_shape():
  assert suite.parse_shape("100x64x128x128") == suite.Shape(100, 64, 128, 128)
  assert suite.parse_shape("100x64x256x256xL2xbi") == suite.Shape(100, 64, 256, 256, 2, True)
  assert suite.parse_shape(" 200x32x64x64bi") == suite.Shape(200, 32, 64, 64, 1, True)
  assert str(suite.Shape(100, 64, 256, 256, 2, True)) == "100x64x256x256xL2xbi"
  assert suite.parse_shape(str(suite.DEFAULT_SHAPES[-1])) == suite.DEFAULT_SHAPES[-1]
  assert suite.parse_shape("lstm:100x64x128x128") == suite.Shape(100, 64, 128, 128, cell="lstm")
  assert str(suite.Shape(100, 64, 256, 256, 2, True, "rnn")) == "rnn:100x64x256x256xL2xbi"


@pytest.mark.parametrize(
  "bad", ["100x64x128", "0x1x1x1", "10x1x1x1xL0", "axbxcxd", "10x1x1x1xbixL2", "10x1x1x1xL", "gruu:10x1x1x1"]
)
def test_bad_shapes_are_argparse_errors(bad, capsys):
  with pytest.raises(SystemExit) as exit_:
    suite.parser().parse_args(["--shape", bad])
  assert exit_.value.code == 2
  err = capsys.readouterr().err
  assert "--shape" in err and (
    "shape must look like [gru:|lstm:|rnn:]TxBxIxH" in err or "every size in a shape must be >= 1" in err
  )


@pytest.mark.parametrize(
  "argv, message",
  [
    (["--repeats", "0"], "must be a positive integer"),
    (["--warmup", "two"], "must be a positive integer"),
    (["--budget", "-1"], "must be a number of seconds >= 0"),
    (["--modes", "backward"], "invalid choice"),
    (["--contenders", "tensorflow"], "invalid choice"),
    (["--name", "../../x"], "--name: must be a plain file name"),
    (["--name", "sub/cpu"], "--name: must be a plain file name"),
    (["--name", ".hidden"], "--name: must be a plain file name"),
  ],
)
def test_bad_options_are_argparse_errors(argv, message, capsys):
  with pytest.raises(SystemExit) as exit_:
    suite.parser().parse_args(argv)
  assert exit_.value.code == 2
  assert message in capsys.readouterr().err


def test_flops_by_hand():
  # one layer: 2 * T * B * 3H * (I + H) = 2 * 10 * 4 * 24 * (3 + 8) for the products, 16 per unit elementwise
  one = suite.Shape(10, 4, 3, 8)
  assert suite.matmul_flops(one, "forward") == 21_120
  assert suite.elementwise_flops(one, "forward") == 16 * 10 * 4 * 8 == 5_120
  assert suite.flops(one, "forward") == 26_240
  assert suite.flops(one, "fwd+bwd") == 3 * 26_240  # backward: twice the forward
  params = 3 * 8 * (3 + 8) + 6 * 8  # torch.nn.GRU(3, 8): 312 weights and biases
  assert one.num_params == params == 312
  assert suite.flops(one, "train") == 3 * 26_240 + 3 * 10 * 4 * 8 + 12 * params
  # two bidirectional layers: the second reads 2H inputs
  two = suite.Shape(5, 2, 3, 4, 2, True)
  forward = 2 * (2 * 5 * 2 * 12 * (3 + 4)) + 2 * (2 * 5 * 2 * 12 * (8 + 4))
  assert suite.matmul_flops(two, "forward") == forward
  assert suite.matmul_flops(two, "fwd+bwd") == suite.matmul_flops(two, "train") == 3 * forward
  assert suite.elementwise_flops(two, "forward") == 16 * 2 * 2 * 5 * 2 * 4
  with pytest.raises(ValueError, match="mode must be one of"):
    shapes.flops(one, "backward")


def test_suite_writes_json_markdown_and_chart(tmp_path, capsys):
  argv = ["--shape", "6x3x2x4xL2xbi", "--repeats", "1", "--max-repeats", "1", "--budget", "0", "--parts", "grid"]
  assert suite.main(argv + ["--out", str(tmp_path)]) == 0
  assert not (tmp_path / "cpu.json").exists()  # a custom grid never replaces the default run's report
  saved = json.loads((tmp_path / "cpu-custom.json").read_text())
  assert [c["mode"] for c in saved["cells"]] == list(suite.MODES)
  for cell in saved["cells"]:  # ONNX Runtime, an inference engine, runs forward only; pallas is GPU-only
    forward_only = set() if cell["mode"] == "forward" else set(suite.FORWARD_ONLY)
    assert set(cell["results"]) == set(suite.CONTENDERS) - forward_only - {"jaxgru_pallas"}
    assert cell["gflop"] == suite.flops(suite.parse_shape("6x3x2x4xL2xbi"), cell["mode"]) / 1e9
    for r in cell["results"].values():
      assert r["median_ms"] > 0 and r["min_ms"] <= r["median_ms"] and r["iqr_ms"] >= 0 and r["repeats"] == 1
      assert r["fraction_of_peak"] > 0
    assert cell["results"]["torch"]["compile_s"] is None and cell["results"]["jaxgru"]["compile_s"] > 0
  assert saved["cells"][0]["max_abs_error_vs_torch"] < 1e-5  # the timed jaxgru computes torch's numbers ...
  assert saved["cells"][0]["onnxruntime_max_abs_error_vs_torch"] < 1e-5  # ... and so does ONNX Runtime's GRU ...
  assert saved["cells"][1]["max_rel_grad_error_vs_torch"] < 1e-4  # ... and its gradients
  assert saved["machine"]["cores"] >= 1 and "jax " in saved["machine"]["versions"] and saved["peak_gflops"] > 0
  table = (tmp_path / "cpu-custom.md").read_text()
  assert "| 6x3x2x4xL2xbi | fwd+bwd |" in table and "torch/jaxgru" in table and "flax/jaxgru" in table
  assert "onnxruntime ms" in table and "onnxruntime compile s" in table
  assert "matmul precision highest" in table and "% peak" in table and "Load average" in table
  assert matplotlib.image.imread(tmp_path / "cpu-custom.png").ndim == 3
  assert "wrote" in capsys.readouterr().out
  assert not list(tmp_path.glob("*.tmp*"))


def test_onnxruntime_is_skipped_with_a_note_when_missing(monkeypatch, tmp_path, capsys):
  monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
  monkeypatch.setattr(suite.machine, "peak_gflops", lambda device: (1.0, "not measured"))
  argv = ["--shape", "4x2x2x3", "--modes", "forward", "--repeats", "1", "--max-repeats", "1", "--budget", "0"]
  assert suite.main(argv + ["--parts", "grid", "--contenders", "torch", "jaxgru", "onnxruntime", "--out", str(tmp_path)]) == 0
  assert "note: onnxruntime skipped" in capsys.readouterr().out
  (cell,) = json.loads((tmp_path / "cpu-custom.json").read_text())["cells"]
  assert set(cell["results"]) == {"torch", "jaxgru"}


def test_report_names_and_parts():
  args = suite.parser().parse_args([])
  assert suite._resolve(args) == (list(suite.DEFAULT_SHAPES), ["grid", "seed", "memory", "rl"])
  args = suite.parser().parse_args(["--add-shape", "20x2x2x2", "--no-memory", "--no-rl"])
  assert suite._resolve(args) == ([*suite.DEFAULT_SHAPES, suite.Shape(20, 2, 2, 2)], ["grid", "seed"])
  assert suite._resolve(suite.parser().parse_args(["--memory"]))[1] == ["memory"]
  args = suite.parser().parse_args(["--quick"])
  assert suite._resolve(args) == ([suite.DEFAULT_SHAPES[0]], ["grid"]) and args.repeats == 2


def test_seed_task_is_skipped_with_a_message_without_parity_sine_task(monkeypatch, capsys):
  import parity.sine

  monkeypatch.delitem(sys.modules, "benchmarks.seed_task", raising=False)
  monkeypatch.delattr(benchmarks, "seed_task", raising=False)
  monkeypatch.delattr(parity.sine, "task", raising=False)  # from parity.sine import task reads this first
  monkeypatch.setitem(sys.modules, "parity.sine.task", None)  # as if the module did not exist
  result = suite._seed_task("cpu")
  assert "seed task skipped" in result["skipped"] and "parity.sine.task" in result["skipped"]
  assert "seed task skipped" in capsys.readouterr().out
  saved = {"machine": {"cpu": "x", "cores": 2, "device": "CPU", "versions": "v", "threads": "t", "matmul_precision": "highest"}}
  text = report.markdown({**saved, "peak_gflops": 1.0, "peak_source": "s", "cells": [], "seed_task": result})
  assert result["skipped"] in text


def test_memory_measurement_runs_in_a_subprocess():
  result = memory.run(shape=(40, 2, 3, 4), cases=(("fused", True),))
  (case,) = result["cases"]
  assert "error" not in case, case
  assert case["temp_bytes"] > 0 and case["peak_rss_bytes"] > 0
  assert "impl=fused" in memory.describe(result)


def test_memory_shape_must_be_one_layer(capsys):
  with pytest.raises(SystemExit):
    memory.main(["--shape", "10x2x3x4xL2"])
  assert "one layer, one direction" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_out_that_cannot_be_written_is_refused_before_running(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(suite.machine, "describe", lambda *a: pytest.fail("ran before checking --out"))
  (tmp_path / "file").write_text("x")
  for out, message in [
    ("/proc/bench", "argument --out: cannot create the folder '/proc/bench'"),
    ("/proc", "argument --out: cannot write in the folder '/proc'"),
    (str(tmp_path / "file"), "is a file, not a folder"),
  ]:
    with pytest.raises(SystemExit) as exit_:
      suite.main(["--quick", "--out", out])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
  assert suite.parser().parse_args(["--name", "gpu-a100_2.x"]).name == "gpu-a100_2.x"


def test_chart_carries_the_busy_warning():
  cell = {
    "shape": "10x2x3x4",
    "mode": "forward",
    "results": {k: {"median_ms": 2.0 if k != "jaxgru" else 0.01} for k in suite.CONTENDERS},
  }
  machine = {"device": "CPU", "matmul_precision": "highest"}
  texts = lambda m: [t.get_text() for t in report.chart_figure({"machine": m, "cells": [cell]}).axes[0].texts]
  assert texts(machine) == []
  busy = "load average 3.10 before, 4.20 after, on 2 cores: other processes shared the machine, timings are unreliable"
  (warning,) = texts({**machine, "busy": busy})
  assert warning.startswith("Warning: load average 3.10") and " ".join(warning.split()) == f"Warning: {busy}"


def test_gpu_script_dry_run_writes_its_reports(tmp_path, capsys):
  """``python -m benchmarks.gpu --dry-run``: the GPU script's whole code path on the CPU at tiny
  sizes (Pallas interpreted, torch's CPU GRU): parity of reference, fused and Pallas against torch
  in float32 and bfloat16, then the timed cells, and its three reports."""
  from benchmarks import gpu

  assert gpu.main(["--out", str(tmp_path), "--dry-run", "--budget", "60"]) == 0
  saved = json.loads((tmp_path / "gpu-dry-run.json").read_text())
  assert saved["dry_run"] and saved["parity"] and all(r["ok"] is True for r in saved["parity"]), saved["parity"]
  assert {r["impl"] for r in saved["parity"]} == set(gpu.PARITY_IMPLS) and {r["dtype"] for r in saved["parity"]} == set(
    gpu.TOLERANCE
  )
  assert {c["mode"] for c in saved["cells"]} == set(shapes.MODES)
  assert all(set(c["results"]) == set(gpu.CONTENDERS) for c in saved["cells"])
  text = (tmp_path / "gpu-dry-run.md").read_text()
  assert {r["cell"] for r in saved["parity"]} == {"gru", "lstm"}
  assert "| gru | pallas | L=2 bi | bfloat16 | yes |" in text and "| lstm | pallas | L=2 bi | float32 | yes |" in text
  assert "torch/pallas" in text
  assert [(c["shape"], c["mode"]) for c in saved["rl"]["cases"]] == [([8, 3, 2, 4], "train")]
  assert "## Recurrent-policy rollouts with episode resets" in text and "| 8x3x2x4 |" in text
  assert matplotlib.image.imread(tmp_path / "gpu-dry-run.png").shape[0] > 100


def test_gpu_script_without_a_gpu_says_so(tmp_path, capsys):
  from benchmarks import gpu

  with pytest.raises(SystemExit) as exit_:
    gpu.main(["--out", str(tmp_path)])
  assert exit_.value.code == 2 and "--dry-run" in capsys.readouterr().err


def test_first_call_runs_each_kind_in_a_fresh_process_and_compares():
  """python -m benchmarks.first_call, one process of each kind: every part of jaxgru's first call
  timed, torch's loop timed, and the ratio printed."""
  from benchmarks import first_call

  results = first_call.run(repeats=1)
  assert {kind: len(runs) for kind, runs in results.items()} == {"jax": 1, "jax-cached": 1, "torch": 1}
  for kind in ("jax", "jax-cached"):
    parts = results[kind][0]
    assert all(parts[k] > 0 for k in ("trace", "lower", "compile", "run"))
    assert parts["first_call"] == pytest.approx(sum(parts[k] for k in ("trace", "lower", "compile", "run")))
  assert results["torch"][0]["loop"] > 0
  text = first_call.describe(results)
  assert "jax-cached" in text and "torch's loop / first call" in text and "nan" not in text


def test_first_call_refuses_no_repeats(capsys):
  from benchmarks import first_call

  with pytest.raises(SystemExit) as exit_:
    first_call.main(["--repeats", "0"])
  assert exit_.value.code == 2 and "--repeats: must be >= 1, got 0" in capsys.readouterr().err


def test_eager_benchmark_counts_compiles_and_memory_per_impl(capsys):
  """python -m benchmarks.eager at a few calls: each case in its own process, its compilations
  after the first call counted (none for jaxgru), and the bare lax.scan's (many) beside them.
  (Every impl's repeat eager call is counted in-process by test_transforms.)"""
  from benchmarks import eager

  assert eager.main(["--calls", "12", "--impls", "reference", "--with-scan", "--scan-calls", "12"]) == 0
  out = capsys.readouterr().out
  rows = {
    line.split("|")[1].strip(): line.split("|")[2:-1] for line in out.splitlines() if line.startswith("| ") and "case" not in line
  }
  for case in ("reference forward", "reference grad"):
    assert rows[case][1].strip() == "0", out
  scan = next(k for k in rows if k.startswith("bare lax.scan"))
  assert int(rows[scan][1]) > 0, out
  assert "compiled only at its first call" in out


def test_eager_benchmark_refuses_unknown_impls(capsys):
  from benchmarks import eager

  with pytest.raises(SystemExit) as exit_:
    eager.main(["--impls", "cudnn"])
  assert exit_.value.code == 2 and "unknown impls ['cudnn']" in capsys.readouterr().err


def test_rl_rollouts_run_every_contender_and_mode(tmp_path):
  """The recurrent-policy benchmark on tiny rollouts of a GRU and an LSTM: every contender timed in
  both modes, the report written as JSON and Markdown with both ratios."""
  from benchmarks import rl

  out = tmp_path / "rl"
  shapes = ["--shape", "8x3x2x4", "--shape", "lstm:8x3x2x4"]
  assert rl.main([*shapes, "--repeats", "1", "--block", "1", "--reset-rate", "0.2", "--out", str(out)]) == 0
  report = json.loads(out.with_suffix(".json").read_text())
  cases = [(c["shape"], c["mode"]) for c in report["cases"]]
  assert cases == [([8, 3, 2, 4, cell], mode) for cell in ("gru", "lstm") for mode in ("forward", "train")]
  for case in report["cases"]:
    assert set(case["results"]) == set(rl.CONTENDERS)
    assert all(r["median_ms"] > 0 for r in case["results"].values())
  text = out.with_suffix(".md").read_text()
  assert "| 8x3x2x4 | lstm |" in text and "flax_scan/jaxgru" in text and "torchrl/jaxgru" in text


def test_rl_refuses_bad_options(capsys):
  from benchmarks import rl

  with pytest.raises(SystemExit):
    rl.main(["--shape", "8x3x2"])
  assert "a rollout shape is [gru:|lstm:]TxBxIxH" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    rl.main(["--reset-rate", "2"])
  assert "--reset-rate must be a probability" in capsys.readouterr().err
