"""Smoke test of the benchmark's engine section (tiny shapes, a few repeats)."""

from __future__ import annotations

import numpy as np
import pytest

from bpttlab.tools import bench


def test_engine_section_reports_every_configuration():
    lines = []
    rows = bench.bench_engine(
        shapes=((2, 1, 4, 5),), dtypes=(np.float64,), budget=0.01, print_fn=lines.append
    )
    assert [r["cell"] for r in rows] == ["rnn", "lstm", "gru"]
    for row in rows:
        assert row["cpu_ms"] > 0 and row["floor_ms"] > 0
        assert row["ratio"] == pytest.approx(row["cpu_ms"] / row["floor_ms"])
        assert row["gflops"] == pytest.approx(bench.matmul_flops(row["cell"], 2, 1, 4, 5, 1) / 1e9)
    assert len(lines) == 2 + len(rows)  # header, rule, one line per row


def test_matmul_flops_counts_every_product():
    # RNN, B=1, I=1, H=1, T=2, O=1, 2 FLOPs per multiply-add: input projections 4, dW_ih 4,
    # W_hh h / W_hhᵀ da / dW_hh over T-1 = 1 step 6, readout, dW_out, dL/dh_T 6
    assert bench.matmul_flops("rnn", 1, 1, 1, 2, 1) == 20
    assert bench.matmul_flops("lstm", 1, 1, 1, 2, 1) == 2 * (2 * 2 * 4 + 3 * 4 + 3)


def test_unknown_section_is_rejected(capsys):
    with pytest.raises(SystemExit):
        bench.main(["nope"])
    assert "unknown section 'nope'; valid choices: engine" in capsys.readouterr().err


def test_tracking_section_times_both_write_paths():
    lines = []
    per_point = bench.bench_tracking(steps=30, repeats=1, print_fn=lines.append)
    assert set(per_point) == {"database", "log_batch"}
    assert all(v > 0 for v in per_point.values())
    assert len(lines) == 3 and "150 points" in lines[0]
