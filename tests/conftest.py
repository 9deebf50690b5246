"""Shared fixtures: Hydra composition of the project's config tree, temporary MLflow stores."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from bpttlab import config as C  # noqa: E402
from bpttlab.tracking import project_root  # noqa: E402

C.register_configs()
CONF_DIR = str(project_root() / "conf")
os.environ.setdefault("BPTTLAB_ROOT", str(project_root()))


@pytest.fixture
def compose_cfg():
    """compose_cfg(*overrides) -> composed DictConfig of conf/config.yaml (Hydra's own rules)."""

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose("config", overrides=list(overrides))

    return _compose


@pytest.fixture
def sqlite_uri(tmp_path, monkeypatch):
    """A fresh, empty SQLite MLflow store for one test (MLFLOW_TRACKING_URI points at it)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def _empty_store_file(tmp_path_factory):
    """One empty SQLite MLflow store with its schema, made once (creating a schema takes
    seconds; copying the file, milliseconds)."""
    from bpttlab import tracking

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    tracking.get_client(f"sqlite:///{path}")
    return path


@pytest.fixture
def new_store(tmp_path, _empty_store_file):
    """``new_store(name)``: the URI of a fresh, empty SQLite store in ``tmp_path/name``."""
    import shutil

    def _new(name: str) -> str:
        path = tmp_path / name / "mlflow.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_empty_store_file, path)
        return f"sqlite:///{path}"

    return _new
