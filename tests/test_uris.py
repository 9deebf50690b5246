"""Tracking URIs: redaction of passwords, fail-fast preflight checks, bounded MLflow HTTP retries.

Every network check here stays on 127.0.0.1 (a closed port, a socket that never answers, a tiny
local HTTP server).
"""

from __future__ import annotations

import http.server
import io
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from bpttlab.tracking import uris
from bpttlab.tracking.uris import TrackingUnavailable, preflight, redact, redact_params, redact_text


def _closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://user:secret@host:5000", "http://user:***@host:5000"),
        ("https://user:secret@host/prefix/", "https://user:***@host/prefix/"),
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql+psycopg2://mlflow:s3cret@db:5432/mlflow", "postgresql+psycopg2://mlflow:***@db:5432/mlflow"),
        ("postgresql://u:p@ss@h:5432/db", "postgresql://u:***@h:5432/db"),  # '@' in the password
        ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),  # percent-encoded
        ("postgresql://h/db?sslmode=require&password=pw", "postgresql://h/db?sslmode=require&password=***"),
        ("https://h/api?token=abc&x=1", "https://h/api?token=***&x=1"),
        # nothing secret: unchanged
        ("postgresql://postgres@127.0.0.1:5432/bpttlab", "postgresql://postgres@127.0.0.1:5432/bpttlab"),
        ("sqlite:////abs/path/mlflow.db", "sqlite:////abs/path/mlflow.db"),
        ("http://[::1]:5000", "http://[::1]:5000"),
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
        ("not a uri: user:pw@host", "not a uri: user:pw@host"),
    ],
)  # fmt: skip
def test_redact_replaces_the_password_and_nothing_else(uri, expected):
    assert redact(uri) == expected


def test_shown_names_a_store_inside_the_project_relative_to_it_and_redacts(tmp_path):
    root = tmp_path / "project"
    (root / "sub").mkdir(parents=True)
    assert uris.shown(f"sqlite:///{root}/mlflow.db", root) == "sqlite:///mlflow.db (in the project)"
    assert uris.shown(f"sqlite:///{root}/sub/x.db", root) == "sqlite:///sub/x.db (in the project)"
    outside = f"sqlite:///{tmp_path}/elsewhere/mlflow.db"
    assert uris.shown(outside, root) == outside  # where it was read from, as it is
    assert uris.shown("postgresql://u:pw@h/db", root) == "postgresql://u:***@h/db"
    assert uris.shown("http://127.0.0.1:5001", root) == "http://127.0.0.1:5001"


def test_in_project_names_a_path_inside_the_project_relative_to_it(tmp_path, monkeypatch):
    root = tmp_path / "project"
    (root / "reports" / "runs").mkdir(parents=True)
    assert uris.in_project(root / "reports" / "runs", root) == "reports/runs"
    assert uris.in_project(tmp_path / "elsewhere", root) == str(tmp_path / "elsewhere")
    monkeypatch.chdir(root)  # a relative store path is inside when the project is the cwd
    assert uris.shown("sqlite:///mlflow.db", root) == "sqlite:///mlflow.db (in the project)"


def test_uri_secrets_lists_the_password_as_written_and_decoded():
    assert uris.uri_secrets("postgresql://u:p%40ss@h/db") == ["p%40ss", "p@ss"]
    assert uris.uri_secrets("postgresql://u:pw@h/db?password=other") == ["other", "pw"]
    assert uris.uri_secrets("postgresql://postgres@h/db") == []
    assert uris.uri_secrets("mlflow.db") == []


def test_redact_text_cleans_a_hydra_config_and_loose_secrets():
    yaml_text = (
        "tracking:\n"
        "  uri: postgresql://mlflow:hunter2@db:5432/mlflow\n"
        "  other: 'http://me:topsecret@tracking:5001'\n"
        "seed: 0\n"
    )
    clean = redact_text(yaml_text)
    assert "hunter2" not in clean and "topsecret" not in clean
    assert "  uri: postgresql://mlflow:***@db:5432/mlflow\n" in clean
    assert "  other: 'http://me:***@tracking:5001'\n" in clean
    assert clean.endswith("seed: 0\n")
    # A driver message quoting the password alone: scrubbed when the secret is named, as a word.
    msg = 'FATAL: password "hunter2" rejected; hunter2x is another word'
    assert (
        redact_text(msg, ["hunter2"]) == 'FATAL: password "***" rejected; hunter2x is another word'
    )


def test_redact_params_keeps_keys_types_and_harmless_values():
    params = {
        "tracking.uri": "postgresql://u:pw@h/db",
        "task.seq_len": 50,
        "clip.threshold": 1.0,
        "model.cell": "lstm",
    }
    clean = redact_params(params)
    assert clean == {**params, "tracking.uri": "postgresql://u:***@h/db"}
    assert params["tracking.uri"] == "postgresql://u:pw@h/db"  # the input is not modified


def test_redact_file_rewrites_only_files_with_secrets(tmp_path):
    dirty, clean = tmp_path / "config.yaml", tmp_path / "overrides.yaml"
    dirty.write_text("uri: http://u:secret@h:5001\n")
    clean.write_text("- model=lstm\n")
    assert uris.redact_file(dirty) is True
    assert uris.redact_file(clean) is False
    assert dirty.read_text() == "uri: http://u:***@h:5001\n"
    assert clean.read_text() == "- model=lstm\n"


def test_redacting_filter_passes_output_through_line_by_line():
    source = io.BytesIO(b"start postgresql://u:pw@h/db\nFATAL: password hunter2\n\xff tail")
    sink = io.BytesIO()
    uris.relay(source, sink, ["hunter2"])
    assert (
        sink.getvalue() == b"start postgresql://u:***@h/db\nFATAL: password ***\n\xef\xbf\xbd tail"
    )


def test_redacting_filter_runs_a_command_and_keeps_its_exit_code():
    script = "print('backend postgresql://u:pw@h/db'); print('pw hunter2'); raise SystemExit(3)"
    env = dict(os.environ, **{uris.SECRETS_ENV: "hunter2"})
    done = subprocess.run(
        [sys.executable, "-m", "bpttlab.tracking.uris", "--", sys.executable, "-c", script],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3
    assert done.stdout == "backend postgresql://u:***@h/db\npw ***\n"


# --- MLflow's HTTP timeouts --------------------------------------------------------------------


def test_set_http_timeouts_fills_in_only_what_the_user_left_unset():
    env = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}
    done = uris.set_http_timeouts(env, MLFLOW_HTTP_REQUEST_MAX_RETRIES=1)
    assert done == {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"  # the user's choice stands
    assert uris.set_http_timeouts(env) == {}  # nothing left to set
    with pytest.raises(ValueError, match="unknown MLflow HTTP setting"):
        uris.set_http_timeouts({}, MLFLOW_HTTP_TIMEOUT=5)


def test_http_timeout_names_are_the_ones_mlflow_reads(monkeypatch):
    from mlflow import environment_variables as ev

    for name in uris.HTTP_ENV_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    uris.set_http_timeouts()
    for name, value in uris.HTTP_ENV_DEFAULTS.items():
        assert getattr(ev, name).get() == int(value), name


def test_mlflow_client_gives_up_on_a_dead_server_within_seconds(monkeypatch):
    from mlflow import MlflowClient

    for name in uris.HTTP_ENV_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    uris.set_http_timeouts()
    client = MlflowClient(f"http://127.0.0.1:{_closed_port()}")
    t0 = time.monotonic()
    with pytest.raises(Exception, match="Max retries exceeded|Connection refused"):
        client.search_experiments(max_results=1)
    # MLflow's defaults (7 retries, backoff factor 2) take about 4 minutes here.
    assert time.monotonic() - t0 < 20


# --- preflight: http -----------------------------------------------------------------------------


def test_preflight_fails_fast_on_a_closed_port():
    uri = f"http://user:hunter2@127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailable) as err:
        preflight(uri, timeout=3)
    assert time.monotonic() - t0 < 5
    message = str(err.value)
    assert "\n" not in message and "hunter2" not in message
    assert message.startswith(f"tracking URI {redact(uri)} is unusable: ")
    assert "connection refused" in message


def test_preflight_fails_fast_on_port_9():
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailable, match="http://127.0.0.1:9 is unusable"):
        preflight("http://127.0.0.1:9", timeout=3)
    assert time.monotonic() - t0 < 5


def test_preflight_gives_up_on_a_server_that_never_answers():
    with socket.socket() as silent:  # accepts connections (kernel backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(TrackingUnavailable, match="timed out|no answer"):
            preflight(f"http://127.0.0.1:{port}", timeout=1.0)
        assert time.monotonic() - t0 < 4


def test_preflight_bounds_the_whole_check(monkeypatch):
    """Even a step without its own timeout (a slow name lookup) cannot hold preflight up."""
    monkeypatch.setattr(uris, "_check", lambda uri, timeout: time.sleep(30))
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailable, match="no answer within 0.5 s"):
        preflight("http://tracking.example:5001", timeout=0.5)
    assert time.monotonic() - t0 < 3


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200
    seen: list[dict[str, str]] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.seen.append({"path": self.path, **dict(self.headers)})
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def health_server():
    """An HTTP server on 127.0.0.1 answering every GET with ``_Health.status``."""
    _Health.status, _Health.seen = 200, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_preflight_passes_when_health_answers(health_server):
    port = health_server.server_address[1]
    preflight(f"http://127.0.0.1:{port}", timeout=3)
    preflight(f"http://127.0.0.1:{port}/prefix/", timeout=3)
    assert [s["path"] for s in _Health.seen] == ["/health", "/prefix/health"]


def test_preflight_sends_credentials_and_names_an_auth_failure(health_server, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    port = health_server.server_address[1]
    _Health.status = 401
    with pytest.raises(TrackingUnavailable, match="HTTP 401.*MLFLOW_TRACKING_USERNAME") as err:
        preflight(f"http://alice:hunter2@127.0.0.1:{port}", timeout=3)
    assert "hunter2" not in str(err.value)
    assert _Health.seen[-1]["Authorization"] == "Basic YWxpY2U6aHVudGVyMg=="  # alice:hunter2


def test_preflight_reports_a_server_error(health_server):
    _Health.status = 503
    with pytest.raises(TrackingUnavailable, match="answered HTTP 503"):
        preflight(f"http://127.0.0.1:{health_server.server_address[1]}", timeout=3)


# --- preflight: sqlite ---------------------------------------------------------------------------


def test_preflight_accepts_a_new_sqlite_store_without_creating_it(tmp_path):
    db = tmp_path / "not" / "yet" / "mlflow.db"
    preflight(f"sqlite:///{db}")
    assert not (tmp_path / "not").exists()  # checking creates nothing
    existing = tmp_path / "mlflow.db"
    existing.write_bytes(b"")
    preflight(f"sqlite:///{existing}")
    preflight("sqlite:///:memory:")


def test_preflight_refuses_a_sqlite_path_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TrackingUnavailable, match="is not a directory"):
        preflight(f"sqlite:///{blocker}/mlflow.db")


def test_preflight_refuses_a_directory_as_sqlite_store(tmp_path):
    with pytest.raises(TrackingUnavailable, match="is not a file"):
        preflight(f"sqlite:///{tmp_path}")


def test_preflight_refuses_a_sqlite_store_it_cannot_create():
    # /proc cannot hold new files, not even for root.
    with pytest.raises(TrackingUnavailable, match="cannot create files in /proc"):
        preflight("sqlite:////proc/bpttlab/mlflow.db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a read-only directory")
def test_preflight_refuses_a_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(TrackingUnavailable, match="cannot create files"):
            preflight(f"sqlite:///{ro}/mlflow.db")
    finally:
        ro.chmod(0o700)


# --- preflight: postgresql -----------------------------------------------------------------------


def _pg_driver() -> bool:
    from sqlalchemy.engine import make_url

    try:
        make_url("postgresql://h/db").get_dialect().import_dbapi()
    except ImportError:
        return False
    return True


def test_preflight_postgres_never_shows_the_password():
    uri = f"postgresql://mlflow:hunter2@127.0.0.1:{_closed_port()}/mlflow"
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailable) as err:
        preflight(uri, timeout=3)
    assert time.monotonic() - t0 < 6
    message = str(err.value)
    assert "hunter2" not in message and "\n" not in message
    assert message.startswith("tracking URI postgresql://mlflow:***@127.0.0.1:")
    if _pg_driver():
        assert "cannot connect" in message
    else:
        assert "driver is not installed" in message


def test_check_tracking_sets_timeouts_then_checks(monkeypatch, tmp_path):
    for name in uris.HTTP_ENV_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    uris.check_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert all(os.environ[k] == v for k, v in uris.HTTP_ENV_DEFAULTS.items())
    with pytest.raises(TrackingUnavailable):
        uris.check_tracking(f"http://127.0.0.1:{_closed_port()}", timeout=2)
