"""What a run records agrees with what runs, and the command line beats every experiment file.

Every file in ``experiments/`` is composed as Hydra composes it; each group's recorded choice
(``hydra.runtime.choices``, logged with every run as ``.hydra/``) must name the option whose
fields the composed config holds, and a different choice given on the command line must win.
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bpttlab import config as C
from bpttlab import preflight as P
from bpttlab.tracking import project_root
from bpttlab.tracking.lifecycle import run_tags

ROOT = project_root()
CONF = ROOT / "conf"
EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
#: (experiment file, bundle folder, bundle) for every bundle added with +experiments/FOLDER=NAME
BUNDLES = [
    (experiment, folder, p.stem)
    for experiment, folder in (("repro_adding", "repro_cells"), ("default", "study_arms"))
    for p in sorted((ROOT / "experiments" / folder).glob("*.yaml"))
]

#: group -> (field of the composed group node that names the option, registry of valid choices)
CHOICE_FIELDS = {
    "model": ("cell", C.CELL_CHOICES),
    "activation": ("name", C.ACTIVATION_CHOICES),
    "init": ("name", C.INIT_CHOICES),
    "task": ("name", C.TASK_CHOICES),
    "clip": ("mode", C.CLIP_CHOICES),
    "optim": ("name", C.OPTIM_CHOICES),
}


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def _val(node, group: str) -> str:
    """The option a composed group node holds (its choice field, an Enum in the typed config)."""
    value = node[group][CHOICE_FIELDS[group][0]]
    return str(getattr(value, "value", value))


def _assert_choices_true(cfg, where: str) -> None:
    choices = cfg.hydra.runtime.choices
    for group in CHOICE_FIELDS:
        assert choices[group] == _val(cfg, group), f"{where}: {group}"


@pytest.mark.parametrize("group", sorted(CHOICE_FIELDS))
def test_choice_lists_come_from_the_registries_and_match_the_option_files(group):
    fld, registry = CHOICE_FIELDS[group]
    files = {p.stem for p in (CONF / group).glob("*.yaml")}
    assert files == set(registry), f"conf/{group}/ and the registry disagree"
    for option in registry:  # each option file names itself in its own choice field
        node = OmegaConf.load(CONF / group / f"{option}.yaml")
        assert node[fld] == option


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_records_the_options_it_runs(experiment):
    cfg = _compose(f"experiments={experiment}")
    _assert_choices_true(cfg, experiment)
    assert cfg.hydra.runtime.choices["experiments"] == experiment
    C.to_config(cfg)  # and it validates
    # every swept group level, and every bundle of experiments/repro_cells, records truly too
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    for key, values in params.items():
        name = str(key).lstrip("+")
        if name in CHOICE_FIELDS or name.startswith("experiments/"):
            for value in str(values).split(","):
                sub = _compose(f"experiments={experiment}", f"{key}={value}")
                _assert_choices_true(sub, f"{experiment} {key}={value}")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_a_command_line_choice_beats_the_experiment_file(experiment):
    base = _compose(f"experiments={experiment}")
    for group, (_, registry) in CHOICE_FIELDS.items():
        other = next(o for o in registry if o not in (_val(base, group), "digits"))
        cfg = _compose(f"experiments={experiment}", f"{group}={other}")
        assert _val(cfg, group) == other, (experiment, group)
        assert cfg.hydra.runtime.choices[group] == other


@pytest.mark.parametrize(("experiment", "folder", "bundle"), BUNDLES)
def test_a_command_line_choice_beats_a_bundle(experiment, folder, bundle):
    added = f"+experiments/{folder}={bundle}"
    cfg = _compose(f"experiments={experiment}", added, "model=gru")
    assert _val(cfg, "model") == "gru" and cfg.hydra.runtime.choices["model"] == "gru"
    cfg = _compose(f"experiments={experiment}", added, "activation=sigmoid")
    assert _val(cfg, "activation") == "sigmoid"
    cfg = _compose(f"experiments={experiment}", added, "optim=momentum")
    assert _val(cfg, "optim") == "momentum" and "beta1" not in cfg.optim


def test_smart_init_is_recorded_as_smart():
    cfg = C.to_config(_compose("experiments=repro_temporal_order"))
    assert cfg.init.name.value == "smart"
    assert run_tags(cfg)["init"] == "smart"
    params = C.flatten(C.to_dict(cfg))
    assert params["init.name"] == "smart" and params["optim.name"] == "sgd"


def test_each_option_records_only_its_own_fields():
    adam = C.flatten(C.to_dict(C.to_config(_compose("optim=adam"))))
    assert {"optim.beta1", "optim.beta2", "optim.eps"} <= set(adam)
    assert "optim.momentum" not in adam
    momentum = C.flatten(C.to_dict(C.to_config(_compose("optim=momentum"))))
    assert momentum["optim.momentum"] == 0.9 and "optim.beta1" not in momentum
    none = C.flatten(C.to_dict(C.to_config(_compose("clip=none"))))
    assert "clip.threshold" not in none
    rnn = C.flatten(C.to_dict(C.to_config(_compose("model=rnn"))))
    assert "model.forget_bias" not in rnn and "task.solve_frac" in rnn
    latch = C.flatten(C.to_dict(C.to_config(_compose("task=latch"))))
    assert "task.solve_frac" not in latch and latch["task.noise_var"] == 0.2


def test_task_schemas_cover_only_options_the_tasks_accept():
    from bpttlab.tasks import _REGISTRY, _accepted_kwargs

    for _, option, schema in (s for s in C.OPTION_SCHEMAS if s[0] == "task"):
        names = {f for f in schema.__dataclass_fields__ if f not in ("name", "seq_len")}
        assert names <= set(_accepted_kwargs(_REGISTRY[option])), option


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_preflight_assembles_each_job_exactly_as_hydra_composes_it(experiment):
    """The one-composition-per-override assembly equals a full composition, job by job."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):

        def _c(ovs):
            return compose("config", overrides=list(ovs), return_hydra_config=True)

        jobs, base = P.job_overrides(_c, [f"experiments={experiment}"], multirun=True)
        assembled = P.assemble_jobs(_c, jobs, base, ROOT)
        step = max(1, len(assembled) // 12)  # every job of a small grid, a spread of a big one
        for job, plain in assembled[::step]:
            assert P.typed(plain) == C.to_config(_c(job)), job


def test_preflight_handles_the_command_line_replacing_a_swept_key():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):

        def _c(ovs):
            return compose("config", overrides=list(ovs), return_hydra_config=True)

        jobs, _ = P.job_overrides(_c, ["experiments=smoke", "model=lstm"], multirun=True)
        assert len(jobs) == 2 and all("model=lstm" in j for j in jobs)  # clip none,norm left
        jobs, _ = P.job_overrides(_c, ["experiments=smoke", "seed=0,1,2"], multirun=True)
        assert len(jobs) == 3 * 2 * 3
