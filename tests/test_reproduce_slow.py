"""End to end: every reproduction runs its sweep for two steps into a temporary store, reads the
runs back from MLflow, draws its figure and renders the report; a second run reuses the runs."""

from __future__ import annotations

import re

import pytest

from bpttlab import tracking
from bpttlab.reproduce.__main__ import available, main


def _count_runs(uri: str, experiment: str) -> int:
    client = tracking.get_client(uri)
    exp = client.get_experiment_by_name(experiment)
    return len(client.search_runs([exp.experiment_id], max_results=1000))


@pytest.mark.slow
def test_every_reproduction_runs_end_to_end_in_quick_mode(tmp_path, sqlite_uri):
    out = tmp_path / "reports"
    args = ["--quick", "--tracking-uri", sqlite_uri, "--out", str(out), "--workdir", str(tmp_path)]
    assert main(args) == 0
    md = (out / "reproduce.md").read_text()
    html = (out / "reproduce.html").read_text()
    assert md.index("| result |") < md.index("## 1.")  # verdict table first
    for name in available():
        assert (out / "figures" / f"repro_{name}.png").stat().st_size > 10_000
        assert f"| {name} |" in md  # at least one verdict row per reproduction
    assert "Error" not in md
    assert html.count("data:image/png;base64,") == len(available())
    assert re.search(r"\d+ of \d+ claims reproduced", md)
    assert "| quick |" in md  # every row says which run size it comes from

    # Re-running reuses the finished runs (the sweep skips them) and the stored analytic run.
    before = _count_runs(sqlite_uri, "bpttlab-repro-gradnorm-time")
    before_cliff = _count_runs(sqlite_uri, "bpttlab-repro-cliff")
    assert main([*args, "--only", "gradnorm_time,cliff"]) == 0
    assert _count_runs(sqlite_uri, "bpttlab-repro-gradnorm-time") == before
    assert _count_runs(sqlite_uri, "bpttlab-repro-cliff") == before_cliff
