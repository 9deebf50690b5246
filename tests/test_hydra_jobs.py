"""A job's config composed in its worker from a composition of its group equals Hydra's own.

Every experiment grid's jobs go through :func:`bpttlab.hydra_jobs.compose_job` in sweep order
(most of them set on a copy of an earlier job's composition) and are compared, whole, ``hydra``
node included, with ``load_sweep_config``: what a run's ``.hydra/`` records is what Hydra would
have composed.
"""

from __future__ import annotations

import os

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import create_config_search_path
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from bpttlab import hydra_jobs as J
from bpttlab.tracking import project_root

ROOT = project_root()
EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))


def _grid(*argv: str):
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(ROOT / "conf")))
    master = loader.load_configuration("config", overrides=list(argv), run_mode=RunMode.MULTIRUN)
    params = [f"{k}={v}" for k, v in (master.hydra.sweeper.params or {}).items()]
    task = list(master.hydra.overrides.task)
    parser = OverridesParser.create()
    [jobs] = BasicSweeper.split_arguments(parser.parse_overrides(params + task), None)
    return loader, master, jobs


def _same(ours, hydras, job) -> None:
    assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras), job
    for flag in ("struct", "readonly"):
        assert OmegaConf.is_struct(ours) == OmegaConf.is_struct(hydras), (flag, job)
        assert OmegaConf.is_readonly(ours.hydra) == OmegaConf.is_readonly(hydras.hydra), job


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_job_equals_hydras_composition(experiment):
    loader, master, jobs = _grid(f"experiments={experiment}", "hydra.launcher.n_jobs=2")
    J.forget_compositions()
    jobs = jobs[:24]  # in sweep order: the first jobs of a big grid
    step = max(1, len(jobs) // 6)  # a spread of them, the last one too
    for i, job in enumerate(jobs):
        ours = J.compose_job(loader, master, job)
        if i % step == 0 or i == len(jobs) - 1:
            _same(ours, loader.load_sweep_config(master, job), job)


def test_jobs_differing_in_field_values_share_one_composition():
    loader, master, jobs = _grid("experiments=default", "seed=0,1,2,3")
    assert len(jobs) == 8 * 2 * 2 * 4
    J.forget_compositions()
    for job in jobs:
        J.compose_job(loader, master, job)
    # one composition per arm and clip; seq_len and seed are set on it
    assert sum(len(v) for v in J._COMPOSED.values()) == 8 * 2
    for job in (jobs[5], jobs[-1], jobs[37]):  # any order: a value set back, a value changed
        _same(J.compose_job(loader, master, job), loader.load_sweep_config(master, job), job)


def test_a_group_choice_a_bundle_or_a_list_value_is_composed_in_full():
    loader, master, _ = _grid("experiments=smoke")
    J.forget_compositions()
    jobs = [
        ["model=rnn", "clip=none", "seed=1"],
        ["model=lstm", "clip=none", "seed=1"],  # another group choice: its own composition
        ["model=rnn", "clip=none", "seed=2"],  # the first job's shape: set on it
        ["model=rnn", "clip=none", "seed=2", "+task.extra=3"],  # an addition: in full
        ["model=rnn", "clip=norm", "seed=2", "clip.threshold=0.5"],
        ["model=rnn", "clip=norm", "seed=2", "clip.threshold=2.5"],
    ]
    for job in jobs:
        _same(J.compose_job(loader, master, job), loader.load_sweep_config(master, job), job)
    # rnn+none, lstm+none, the addition, rnn+norm (its second threshold set on it)
    assert sum(len(v) for v in J._COMPOSED.values()) == 4


# ---------------------------------------------------------------------------------------------
# run_job: what Hydra's run_job does, with fewer copies
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def kept_logging():
    """Hydra's job logging reconfigures the root logger: give it back to pytest afterwards."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


def _run_both(tmp_path, task, argv=("experiments=smoke",), idx=3):
    """One job of the smoke grid run by Hydra's run_job and by ours, each in its own sweep dir;
    returns ``{"hydra": (JobReturn, what the task saw), "ours": ...}``."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import JobRuntime, setup_globals
    from hydra.core.utils import run_job as hydras_run_job
    from hydra.types import HydraContext

    out = {}
    setup_globals()
    JobRuntime.instance().set("name", "bpttlab")
    for name, runner in (("hydra", hydras_run_job), ("ours", J.run_job)):
        loader, master, jobs = _grid(*argv, f"hydra.sweep.dir={tmp_path / name}")
        cfg = loader.load_sweep_config(master, jobs[idx])
        with open_dict(cfg):
            cfg.hydra.job.id, cfg.hydra.job.num = f"{cfg.hydra.job.name}_{idx}", idx
        before = HydraConfig.instance().cfg
        seen = []

        def recording(task_cfg, seen=seen):
            hc = HydraConfig.get()
            seen.append(
                {
                    "task": OmegaConf.to_yaml(task_cfg),
                    "type": OmegaConf.get_type(task_cfg),
                    "struct": OmegaConf.is_struct(task_cfg),
                    "hydra": OmegaConf.to_yaml(hc),
                    # resolved (${now:} aside, which differs between the two runs' clocks)
                    "job": OmegaConf.to_yaml(hc.job, resolve=True),
                    "runtime": OmegaConf.to_yaml(hc.runtime, resolve=True),
                    "subdir": hc.sweep.subdir,
                    "output_dir": hc.runtime.output_dir,
                    "cwd": os.getcwd(),
                }
            )
            return task(task_cfg)

        ret = runner(
            hydra_context=HydraContext(config_loader=loader, callbacks=Callbacks()),
            config=cfg,
            task_function=recording,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        assert HydraConfig.instance().cfg is before  # given back as it was
        assert seen, ret.return_value
        out[name] = (ret, seen[0])
    return out


def _as_hydras(text: str, tmp_path) -> str:
    return text.replace(str(tmp_path / "ours"), str(tmp_path / "hydra"))


def test_run_job_writes_and_passes_what_hydras_run_job_does(tmp_path, kept_logging):
    both = _run_both(tmp_path, lambda cfg: {"seed": cfg.seed})
    (h_ret, h_seen), (o_ret, o_seen) = both["hydra"], both["ours"]
    for key in h_seen:
        assert _as_hydras(str(o_seen[key]), tmp_path) == str(h_seen[key]), key
    assert o_seen["type"].__name__ == "Config" and o_seen["struct"]
    for f in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        h = (tmp_path / "hydra" / "3" / ".hydra" / f).read_text()
        o = (tmp_path / "ours" / "3" / ".hydra" / f).read_text()
        assert _as_hydras(o, tmp_path) == h, f
    assert "num: 3" in (tmp_path / "ours" / "3" / ".hydra" / "hydra.yaml").read_text()
    for attr in ("status", "return_value", "overrides", "working_dir", "task_name"):
        assert getattr(o_ret, attr) == getattr(h_ret, attr), attr
    assert OmegaConf.to_yaml(o_ret.cfg) == OmegaConf.to_yaml(h_ret.cfg)
    assert _as_hydras(OmegaConf.to_yaml(o_ret.hydra_cfg), tmp_path) == OmegaConf.to_yaml(
        h_ret.hydra_cfg
    )
    assert OmegaConf.is_readonly(o_ret.hydra_cfg.hydra)


def test_run_job_reports_a_failing_task_as_hydra_does(tmp_path, kept_logging):
    def failing(cfg):
        raise ValueError(f"bad seed {cfg.seed}")

    both = _run_both(tmp_path, failing)
    (h_ret, _), (o_ret, _) = both["hydra"], both["ours"]
    assert o_ret.status == h_ret.status
    assert o_ret.status.name == "FAILED"
    assert repr(o_ret._return_value) == repr(h_ret._return_value)  # (.return_value re-raises)
    assert (tmp_path / "ours" / "3" / ".hydra" / "config.yaml").is_file()


def test_the_shared_state_is_unpickled_once_per_worker():
    import pickle

    J.Shared._LOADED.clear()
    shared = J.Shared({"state": [1, 2]}, key="launch-1")
    first = pickle.loads(pickle.dumps(shared))
    again = pickle.loads(pickle.dumps(shared))
    assert first == {"state": [1, 2]} and again is first  # one object for the jobs of a launch
    other = pickle.loads(pickle.dumps(J.Shared({"state": [3]}, key="launch-2")))
    assert other == {"state": [3]} and list(J.Shared._LOADED) == ["launch-2"]


def test_run_job_changes_directory_when_asked_as_hydra_does(tmp_path, kept_logging):
    before = os.getcwd()
    both = _run_both(
        tmp_path, lambda cfg: os.getcwd(), argv=("experiments=smoke", "hydra.job.chdir=true")
    )
    (h_ret, h_seen), (o_ret, o_seen) = both["hydra"], both["ours"]
    assert o_seen["cwd"] == str(tmp_path / "ours" / "3")
    assert _as_hydras(o_seen["cwd"], tmp_path) == h_seen["cwd"]
    assert _as_hydras(o_ret.working_dir, tmp_path) == h_ret.working_dir
    assert os.getcwd() == before  # given back


@pytest.mark.parametrize("quick", [False, True])
def test_the_temporal_orders_arms_of_a_seed_run_side_by_side(quick):
    # A sweep runs its jobs in this order, and a stop can come anywhere: length first, then the
    # seed, then the arm, so that a partly run length has both arms within one run of each other.
    argv = ["experiments=repro_temporal_order"] + (["task.seq_len=20,50"] if quick else [])
    _, _, jobs = _grid(*argv)
    jobs = [dict(o.split("=", 1) for o in job) for job in jobs]
    order = [(j["task.seq_len"], j["seed"], j["clip"]) for j in jobs]
    lengths = ["20", "50"] if quick else ["50", "100", "200"]
    assert order == [
        (L, s, c) for L in lengths for s in ("0", "1", "2", "3", "4") for c in ("none", "norm")
    ]
