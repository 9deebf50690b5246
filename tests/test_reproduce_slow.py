"""End to end: every reproduction of both profiles runs its sweep for two steps (smoke size) into a
temporary store, reads the runs back from MLflow, draws its figure and renders the report; a
second run reuses the runs."""

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
@pytest.mark.parametrize("profile", ["quick", "full"])
def test_every_reproduction_runs_end_to_end_smoke_sized(tmp_path, sqlite_uri, profile):
    out = tmp_path / "reports"
    args = [
        "--profile",
        profile,
        "--smoke",
        "--tracking-uri",
        sqlite_uri,
        "--out",
        str(out),
        "--workdir",
        str(tmp_path),
    ]
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
    # every row says which profile it comes from
    cells = [
        [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        for line in md.splitlines()
        if line.startswith("| ")
    ]
    verdict_rows = [c for c in cells if len(c) == 7 and c[5] in ("PASS", "FAIL", "n/a")]
    assert verdict_rows and {c[6] for c in verdict_rows} == {f"{profile} smoke"}

    # Re-running reuses the finished runs (the sweep skips them) and the stored analytic run.
    before = _count_runs(sqlite_uri, "bpttlab-repro-gradnorm-time")
    before_cliff = _count_runs(sqlite_uri, "bpttlab-repro-cliff")
    assert main([*args, "--only", "gradnorm_time,cliff"]) == 0
    assert _count_runs(sqlite_uri, "bpttlab-repro-gradnorm-time") == before
    assert _count_runs(sqlite_uri, "bpttlab-repro-cliff") == before_cliff


def _rows(md: str, name: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith(f"| {name} |")]


@pytest.mark.slow
def test_a_report_renders_again_from_its_run_archive_into_an_empty_store(tmp_path, new_store):
    """What a new machine does with a committed report: the archive is loaded into its empty
    store and the same verdicts come out, with nothing trained."""
    a, b = new_store("a"), new_store("b")
    runs = tmp_path / "runs"
    common = ["--workdir", str(tmp_path), "--archive", str(runs), "--jobs", "2"]
    assert (
        main([*common, "--only", "bound,cliff", "--tracking-uri", a, "--out", str(tmp_path / "a")])
        == 0
    )
    assert len(list((runs / "bpttlab-repro-bound").glob("*.zip"))) == 109  # 108 runs + the sweep
    assert len(list((runs / "bpttlab-repro-cliff").glob("*.zip"))) == 1  # the analytic run
    assert main([*common, "--no-run", "--tracking-uri", b, "--out", str(tmp_path / "b")]) == 0
    md_a = (tmp_path / "a" / "reproduce.md").read_text()
    md_b = (tmp_path / "b" / "reproduce.md").read_text()
    loaded = re.search(
        r"; (\d+) runs were loaded into it from the run archive `[^`]+` "
        r"and (\d+) were there already",
        md_b,
    )
    assert loaded and loaded.groups() == ("110", "0"), md_b.splitlines()[:6]
    for name in ("bound", "cliff"):
        rows = _rows(md_a, name)
        assert rows and all("| PASS |" in r for r in rows)
        assert _rows(md_b, name) == rows
    assert _count_runs(b, "bpttlab-repro-bound") == 109
