"""The Hydra config tree composes onto the typed schema; bad configs fail with clear messages."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from bpttlab import config as C


def test_default_config_composes_and_validates(compose_cfg):
    cfg = C.to_config(compose_cfg())
    assert cfg.model.cell.value == "rnn"
    assert cfg.task.name.value == "adding"
    assert cfg.dtype.value == "float64"


def test_overrides_reach_the_typed_config(compose_cfg):
    cfg = C.to_config(compose_cfg("model=lstm", "task.seq_len=50", "clip=norm", "seed=3"))
    assert (cfg.model.cell.value, cfg.task.seq_len, cfg.clip.mode.value) == ("lstm", 50, "norm")
    assert C.run_name(cfg) == "lstm-tanh-xavier-T50-norm1-s3"


def test_run_names_tell_the_optimizer_apart_when_it_is_not_adam(compose_cfg):
    # the study's irnn and irnn_sgd arms differ in the optimizer alone
    sgd = C.to_config(compose_cfg("activation=relu", "init=identity", "optim=sgd"))
    adam = C.to_config(compose_cfg("activation=relu", "init=identity"))
    assert C.run_name(sgd) == "rnn-relu-identity-sgd-T50-none-s0"
    assert C.run_name(adam) == "rnn-relu-identity-T50-none-s0"


@pytest.mark.parametrize(
    ("overrides", "exc", "match"),
    [
        (["activation=tanhh"], MissingConfigException, "activation/tanhh"),
        (["init=orthogonall"], MissingConfigException, "init/orthogonall"),
        (["model.hidden_siz=3"], ConfigCompositionException, "hidden_siz"),
        (["steps=abc"], ConfigCompositionException, "steps=abc"),
    ],
)
def test_typos_and_wrong_types_fail_at_compose_time(compose_cfg, overrides, exc, match):
    with pytest.raises(exc, match=match):
        compose_cfg(*overrides)


def test_unknown_choice_names_the_valid_ones(compose_cfg):
    with pytest.raises(ConfigCompositionException) as info:
        compose_cfg("activation.name=softplus")
    cause = str(info.value.__cause__)
    assert "softplus" in cause
    for name in C.ACTIVATION_CHOICES:
        assert name in cause


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["task.seq_len=0"], r"task.seq_len=0: expected an integer >= 1"),
        (["clip=norm", "clip.threshold=-1"], r"clip.threshold=-1.0: expected a number > 0"),
        (["optim.lr=0"], r"optim.lr=0.0"),
        (["model.hidden_size=0"], r"model.hidden_size=0"),
        (["steps=0"], r"steps=0"),
        (["init.rho=-0.5"], r"init.rho=-0.5"),
    ],
)
def test_out_of_range_values_are_rejected_before_training(compose_cfg, overrides, match):
    with pytest.raises(ValueError, match=match):
        C.to_config(compose_cfg(*overrides))


def test_every_group_option_composes(compose_cfg):
    from pathlib import Path

    conf = Path(__file__).resolve().parents[1] / "conf"
    for group in ("model", "activation", "init", "task", "clip", "optim", "tracking"):
        for option in sorted((conf / group).glob("*.yaml")):
            C.to_config(compose_cfg(f"{group}={option.stem}"))


def test_schema_choices_match_the_engine():
    from bpttlab.activations import ACTIVATIONS
    from bpttlab.init import RECURRENT_INITS
    from bpttlab.models import CELLS
    from bpttlab.optim import CLIP_MODES, OPTIMIZERS

    assert set(C.CELL_CHOICES) == set(CELLS)
    assert set(C.ACTIVATION_CHOICES) <= set(ACTIVATIONS)
    assert set(C.INIT_CHOICES) == set(RECURRENT_INITS)
    assert set(C.OPTIM_CHOICES) == set(OPTIMIZERS)
    assert set(C.CLIP_CHOICES) == set(CLIP_MODES)


def test_config_hash_ignores_tracking_but_not_the_science(compose_cfg):
    a = C.to_config(compose_cfg())
    b = C.to_config(compose_cfg("tracking.experiment=other", "study=x"))
    c = C.to_config(compose_cfg("seed=1"))
    assert C.config_hash(a) == C.config_hash(b)
    assert C.config_hash(a) != C.config_hash(c)


def test_flatten_gives_dotted_keys(compose_cfg):
    flat = C.flatten(C.to_dict(C.to_config(compose_cfg())))
    assert flat["model.cell"] == "rnn"
    assert flat["task.seq_len"] == 50
    assert all(not isinstance(v, dict) for v in flat.values())


def test_fields_added_later_leave_the_hash_of_a_config_without_them(compose_cfg):
    """``init.sparse``, ``init.sparse_fan``, ``task.max_len`` and ``task.test_chunk`` at their
    defaults are left out of the hash: a run stored before they existed keeps its hash."""
    import hashlib
    import json

    for overrides in ((), ("task=temporal_order", "init=smart", "optim=sgd")):
        cfg = C.to_config(compose_cfg(*overrides))
        d = {k: v for k, v in C.to_dict(cfg).items() if k not in ("tracking", "study")}
        for group, key in (("init", "sparse"), ("init", "sparse_fan"), ("task", "max_len")):
            d[group].pop(key, None)
        d["task"].pop("test_chunk", None)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        assert C.config_hash(cfg) == hashlib.sha256(blob.encode()).hexdigest()[:12]
    base = C.to_config(compose_cfg("task=temporal_order", "init=smart"))
    changed = [
        ("init.sparse=15",),
        ("init.sparse=15", "init.sparse_fan=in"),
        ("task.max_len=80",),
        ("task.max_len=80", "task.test_chunk=100"),
    ]
    hashes = {C.config_hash(base)}
    for extra in changed:
        hashes.add(
            C.config_hash(C.to_config(compose_cfg("task=temporal_order", "init=smart", *extra)))
        )
    assert len(hashes) == 1 + len(changed)


def test_run_names_tell_sparse_inits_and_length_ranges_apart(compose_cfg):
    cfg = C.to_config(
        compose_cfg("task=temporal_order", "init=smart", "init.sparse=15", "task.max_len=200")
    )
    assert C.run_name(cfg) == "temporal_order-rnn-tanh-smart0.1-k15-T50-200-none-s0"
    cfg = C.to_config(compose_cfg("init=smart", "init.sparse=4", "init.sparse_fan=in"))
    assert C.run_name(cfg) == "rnn-tanh-smart0.1-k4in-T50-none-s0"
