"""The report on a synthetic MLflow store: loading, the CLI, the full render, the screenshot."""

import base64
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from bpttlab.report import build
from bpttlab.report import load as L
from bpttlab.report.__main__ import main as report_main
from bpttlab.tracking import reader
from synthetic_store import synthetic_runs, write_synthetic_store

pytest.importorskip("mlflow")

GRID = dict(
    cells=("rnn", "lstm"),
    activations=("tanh", "relu"),
    inits=("xavier",),
    clips=("none", "norm"),
    seq_lens=(12,),
    seeds=(0, 1),
    steps=25,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two sweeps: ``sweep-a`` (16 runs, 1 FAILED + 1 KILLED, older) and ``sweep-b`` (newer)."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    runs_a = synthetic_runs(n_failed=1, n_killed=1, **GRID)
    pid_a, runs_a = write_synthetic_store(
        uri, "bpttlab", sweep_id="sweep-a", runs=runs_a, start_time=1_700_000_000_000
    )
    runs_b = synthetic_runs(**dict(GRID, cells=("gru",), activations=("tanh",), seeds=(0,)))
    pid_b, runs_b = write_synthetic_store(
        uri, "other", sweep_id="sweep-b", runs=runs_b, start_time=1_700_000_100_000
    )
    return {"uri": uri, "root": root, "a": (pid_a, runs_a), "b": (pid_b, runs_b)}


@pytest.fixture(scope="module")
def sweep_a(store):
    return L.load_sweep(store["uri"], sweep_id="sweep-a")


def test_runs_steps_profiles_shapes(store, sweep_a):
    _, runs = store["a"]
    d = sweep_a
    assert len(d.runs) == len(runs) == 16
    assert set(d.runs.run_id) == {r.run_id for r in runs}
    assert d.runs.seq_len.dtype.kind == "i" and d.runs.seed.dtype.kind == "i"
    assert d.runs["params.task.seq_len"].dtype.kind == "i"
    for col in L.SUMMARY_METRICS:
        assert col in d.runs
    # Steps: every per-step point of every run, none of the summaries or profiles.
    expect = sum(
        len(s) for r in runs for k, (s, _) in r.series.items() if not k.startswith("profile_")
    )
    assert len(d.steps) == expect
    assert list(d.steps.columns) == ["run_id", "metric", "step", "value"]
    assert not set(d.steps.metric) & set(L.SUMMARY_METRICS)
    assert {"loss", "grad_norm", "grad_norm_clipped", "clip_fired", "grad_norm.weight_hh"} <= set(
        d.steps.metric
    )
    one = runs[0]
    got = d.steps[(d.steps.run_id == one.run_id) & (d.steps.metric == "grad_norm")]
    np.testing.assert_allclose(got.value, one.series["grad_norm"][1])
    # Profiles: K checkpoints x T steps for each finished run; lag = T - t.
    finished = [r for r in runs if r.status == "FINISHED"]
    assert d.profiles.run_id.nunique() == len(finished)
    assert len(d.profiles) == sum(r.norms.size for r in finished)
    assert (d.profiles.lag == 12 - d.profiles.t).all()
    assert set(d.profiles.phase) == {"init", "mid", "final"}
    p = d.profiles[(d.profiles.run_id == finished[0].run_id) & (d.profiles.phase == "final")]
    np.testing.assert_allclose(p.sort_values("t").norm, finished[0].norms[-1])


def test_incomplete_runs_are_reported_not_fatal(sweep_a):
    assert sorted(sweep_a.incomplete.status) == ["FAILED", "KILLED"]
    assert len(sweep_a.finished) == 14


def test_client_path_reads_the_same_points_as_sql(store, sweep_a):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store["uri"])
    runs = L.load_runs(client, client.get_run(store["a"][0]))
    fast = reader.metric_points(client, store["uri"], runs)
    slow = reader.metric_points(client, "http://unused", runs.head(3))  # not SQL: client API
    fast3 = fast[fast.run_id.isin(runs.run_id.head(3))].reset_index(drop=True)
    key = ["run_id", "metric", "step"]
    slow = slow.sort_values(key).reset_index(drop=True)
    fast3 = fast3.sort_values(key).reset_index(drop=True)
    np.testing.assert_array_equal(slow[key].to_numpy(), fast3[key].to_numpy())
    np.testing.assert_allclose(slow.value, fast3.value)


def test_sweep_selection(store):
    client = L.open_store(store["uri"])
    newest = L.find_sweep(client)
    assert newest.data.tags["sweep_id"] == "sweep-b"  # newest over all experiments
    assert L.find_sweep(client, experiment="bpttlab").data.tags["sweep_id"] == "sweep-a"
    pid_a = store["a"][0]
    assert L.find_sweep(client, sweep_id=pid_a).info.run_id == pid_a  # parent run id works too
    with pytest.raises(L.NoSweepError, match="no sweep with id 'nope'"):
        L.find_sweep(client, sweep_id="nope")
    with pytest.raises(L.NoSweepError, match="no experiment named 'missing'"):
        L.find_sweep(client, experiment="missing")
    assert list(L.list_sweeps(client).sweep_id) == ["sweep-b", "sweep-a"]


def test_empty_store_and_missing_store_exit_nonzero(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    missing = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    assert report_main(["--tracking-uri", missing, "--out", str(tmp_path / "r")]) == 1
    assert "no MLflow store" in capsys.readouterr().err
    assert not (tmp_path / "none" / "mlflow.db").exists()  # the report never creates a store
    empty = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=empty).search_experiments()  # an initialised, empty store
    assert report_main(["--tracking-uri", empty, "--out", str(tmp_path / "r")]) == 1
    assert "no sweep found" in capsys.readouterr().err
    with pytest.raises(L.NoSweepError):
        L.load_sweep(empty)


@pytest.fixture(scope="module")
def rendered(store, tmp_path_factory):
    """The full CLI run on sweep-a: (output dir, exit code)."""
    out = tmp_path_factory.mktemp("reports")
    code = report_main(["--tracking-uri", store["uri"], "--sweep-id", "sweep-a", "--out", str(out)])
    return out, code


def test_full_render_writes_files_and_logs_artifacts(store, rendered):
    out, code = rendered
    assert code == 0
    names = [
        "forest",
        "temporal_profile",
        "decay_vs_bound",
        "grad_norm_training",
        "loss_vs_seqlen",
        "heatmaps",
        "divergence_rate",
    ]
    for name in names:
        for ext in ("png", "svg"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "sweep-a" in md and "## Incomplete runs" in md and "FAILED" in md
    assert md.count("![") == len(names) and "norm clipping vs none" in md
    html = (out / "report.html").read_text()
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) == len(names)
    assert base64.b64decode(imgs[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in re.sub(r"data:image/png;base64,[^\"]+", "", html)  # no external assets
    # The same files are artifacts of the sweep's parent run.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store["uri"])
    pid = store["a"][0]
    logged = {a.path for a in client.list_artifacts(pid, "report")}
    assert {"report/report.md", "report/report.html", "report/remedy_table.csv"} <= logged
    figs = {Path(a.path).name for a in client.list_artifacts(pid, "report/figures")}
    assert {f"{n}.png" for n in names} <= figs


def test_screenshot_of_the_report(rendered, tmp_path):
    from bpttlab.tools.screenshot import find_chromium, screenshot

    if find_chromium() is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    out, _ = rendered
    png = screenshot(out / "report.html", tmp_path / "shot.png", height=2500)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a page with figures


def test_a_corrupt_or_missing_artifact_is_named_and_the_rest_renders(tmp_path):
    """One truncated profile artifact and one deleted one: the report says so and still renders."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, runs = write_synthetic_store(uri, "bpttlab", sweep_id="damaged", runs=synthetic_runs(**GRID))
    done = [r for r in runs if r.status == "FINISHED"]
    art = tmp_path / "mlartifacts"
    truncated = next(art.rglob(f"{done[0].run_id}/artifacts/profiles/temporal_profiles.npz"))
    truncated.write_bytes(truncated.read_bytes()[:40])
    deleted = next(art.rglob(f"{done[1].run_id}/artifacts/profiles"))
    shutil.rmtree(deleted)
    data = L.load_sweep(uri, sweep_id="damaged")
    assert set(data.artifact_problems) == {done[0].run_id, done[1].run_id}
    assert "unreadable" in data.artifact_problems[done[0].run_id]
    assert "no profiles/temporal_profiles.npz" in data.artifact_problems[done[1].run_id]
    # both still have profiles, from their metrics
    sources = data.profiles.groupby("run_id")["source"].first()
    assert sources[done[0].run_id] == sources[done[1].run_id] == "metrics"
    text, table = build.incomplete_notice(data)
    assert "missing or damaged artifact" in text
    assert set(table["run_id"]) >= {done[0].run_id, done[1].run_id}
    result = build.write_report(data, tmp_path / "out", ("png",), log_artifacts=False)
    report = result.markdown.read_text()
    assert done[0].run_name in report and "unreadable" in report


def test_a_read_only_store_still_gets_its_report_files(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_synthetic_store(uri, "bpttlab", sweep_id="ro", runs=synthetic_runs(**GRID))
    data = L.load_sweep(uri, sweep_id="ro")

    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("mlflow.tracking.MlflowClient.log_artifact", refuse)
    result = build.write_report(data, tmp_path / "out", ("png",), log_artifacts=True)
    assert result.markdown.is_file() and result.html.is_file() and result.logged_to is None
