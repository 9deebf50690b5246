"""End to end: a real smoke sweep into a temporary store, then the full report from it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bpttlab.report import load as L
from bpttlab.report.__main__ import main as report_main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "smoke.yaml"


@pytest.mark.slow
@pytest.mark.skipif(not SMOKE.is_file(), reason="experiments/smoke.yaml not in this checkout")
def test_report_from_a_real_smoke_sweep(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "bpttlab",
        "-m",
        "experiments=smoke",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        "hydra.launcher.n_jobs=2",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    data = L.load_sweep(uri)
    assert len(data.runs) >= 1 and data.incomplete.empty
    assert {"loss", "grad_norm"} <= set(data.steps.metric)
    assert data.profiles.run_id.nunique() == len(data.runs)
    assert data.runs.final_test_loss_rel.notna().any()

    out = tmp_path / "reports"
    assert report_main(["--tracking-uri", uri, "--out", str(out)]) == 0
    for name in (
        "forest",
        "temporal_profile",
        "decay_vs_bound",
        "grad_norm_training",
        "loss_vs_seqlen",
        "heatmaps",
        "divergence_rate",
    ):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 7
    assert data.sweep_id in (out / "report.md").read_text()
