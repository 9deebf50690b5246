"""Tracking URIs: check one answers before any job starts, and never show a password in it.

- :func:`preflight` checks a tracking or backend-store URI in a few seconds and raises
  :class:`TrackingUnavailable` with a one-line message naming the (redacted) URI and what failed:
  ``http(s)://`` answers ``GET /health``; ``sqlite:///`` has a writable (or creatable) directory;
  ``postgresql://`` (and other SQLAlchemy URIs) accepts a connection.
- :func:`set_http_timeouts` bounds MLflow's HTTP client (per-request timeout, retries, backoff), so
  an unreachable server fails in seconds instead of minutes of retries; a value the user set wins.
- :func:`redact`, :func:`redact_text` and :func:`redact_params` replace the password of every URI
  (``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``) and password-like
  query parameters (``?password=...``) by ``***``, in one URI, in free text (logs, the ``.hydra/``
  YAML files) or in a flat dict of params.

Typical use, once in the process that starts the jobs::

    from bpttlab.tracking.uris import check_tracking
    check_tracking(uri)  # set_http_timeouts() + preflight(uri), raises TrackingUnavailable
"""

from __future__ import annotations

import base64
import math
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

SECRET = "***"
# Query parameters that carry a secret (libpq's password/sslpassword, tokens of HTTP services).
SECRET_QUERY_KEYS = frozenset(
    {"password", "passwd", "pwd", "sslpassword", "token", "access_token", "secret", "api_key"}
)
# Something that looks like a URI with an authority: scheme://... up to whitespace or a quote.
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")

# MLflow's HTTP client (mlflow/environment_variables.py, 3.17): defaults 120 s per request and
# 7 retries with backoff factor 2, i.e. minutes before a dead server is reported.
HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",  # seconds per request (connect or read)
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",  # retries after the first attempt
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # sleeps 0 s, then 2 s between attempts
}
DEFAULT_PREFLIGHT_TIMEOUT = 5.0


class TrackingUnavailable(RuntimeError):
    """A tracking or backend-store URI that cannot be used; the message is one line, redacted."""


# --- redaction ---------------------------------------------------------------------------------


def _split(uri: str) -> urllib.parse.SplitResult | None:
    try:
        return urllib.parse.urlsplit(uri)
    except ValueError:  # e.g. an unbalanced '[' in the host
        return None


def _redact_query(query: str) -> str:
    if not query:
        return query
    parts = []
    for item in query.split("&"):
        key, sep, value = item.partition("=")
        secret = sep and value and urllib.parse.unquote_plus(key).lower() in SECRET_QUERY_KEYS
        parts.append(f"{key}={SECRET}" if secret else item)
    return "&".join(parts)


def redact(uri: str) -> str:
    """``uri`` with its password (``user:PASSWORD@``) and secret query values replaced by ``***``.

    A user name alone (``postgresql://postgres@host/db``) is kept; anything that is not a URI is
    returned unchanged.

    >>> redact("postgresql://mlflow:s3cret@db:5432/mlflow?sslmode=require&password=x")
    'postgresql://mlflow:***@db:5432/mlflow?sslmode=require&password=***'
    """
    if "://" not in uri:
        return uri
    parts = _split(uri)
    if parts is None:  # unparseable: drop everything between '//' and the last '@' of the netloc
        return re.sub(r"(//[^/@\s]*?:)[^/\s]*@", rf"\g<1>{SECRET}@", uri)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{SECRET}@{hostport}"
    query = _redact_query(parts.query)
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def in_project(path: str | Path, root: str | Path) -> str:
    """``path`` as a report names it: relative to the project ``root`` when it lies inside it
    (so that no machine's folders reach a committed report), else as it is.

    >>> in_project("/home/ada/bpttlab/reports/runs", "/home/ada/bpttlab")
    'reports/runs'
    >>> in_project("/data/runs", "/home/ada/bpttlab")
    '/data/runs'
    """
    inside = _inside(path, root)
    return str(path) if inside is None else inside


def _inside(path: str | Path, root: str | Path) -> str | None:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except (ValueError, OSError):
        return None


def shown(uri: str, root: str | Path) -> str:
    """``uri`` as a report names it: :func:`redact`-ed, and a SQLite file inside the project
    ``root`` as a path relative to it, so that a committed report names no machine's folders.

    >>> shown("sqlite:////home/ada/bpttlab/mlflow.db", "/home/ada/bpttlab")
    'sqlite:///mlflow.db (in the project)'
    >>> shown("sqlite:////data/store/mlflow.db", "/home/ada/bpttlab")
    'sqlite:////data/store/mlflow.db'
    """
    uri = redact(uri)
    if uri.startswith("sqlite:///"):
        inside = _inside(uri[len("sqlite:///") :], root)
        return uri if inside is None else f"sqlite:///{inside} (in the project)"
    return uri


def strip_password(uri: str) -> tuple[str, str, str]:
    """``(uri without its password, user, password)``; the password is ``""`` if there is none."""
    parts = _split(uri) if "://" in uri else None
    if parts is None:
        return uri, "", ""
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return uri, "", ""
    user, _, password = userinfo.partition(":")
    bare = urllib.parse.urlunsplit(
        parts._replace(netloc=f"{user}@{hostport}" if user else hostport)
    )
    return bare, urllib.parse.unquote(user), urllib.parse.unquote(password)


#: Where a password moved off a URI goes, per scheme: MLflow's HTTP client reads the first pair,
#: libpq (PostgreSQL's client library) the second.
_CREDENTIAL_ENV = {
    "http": ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"),
    "https": ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"),
    "postgresql": ("", "PGPASSWORD"),
}


def move_credentials(argv: list[str], environ: MutableMapping[str, str]) -> list[str]:
    """Move passwords off tracking URIs (``tracking.uri=...`` and ``$MLFLOW_TRACKING_URI``).

    The password goes to the environment variable its client reads (``MLFLOW_TRACKING_PASSWORD``
    for an MLflow server, ``PGPASSWORD`` for PostgreSQL), so it never reaches Hydra's config, its
    ``.hydra/`` files, the run's params or a log line. URIs of other schemes are left as they are
    (and redacted wherever they are shown).
    """

    def _move(uri: str) -> str:
        scheme = _scheme(uri)
        if scheme not in _CREDENTIAL_ENV:
            return uri
        bare, user, password = strip_password(uri)
        if not password:
            return uri
        user_var, password_var = _CREDENTIAL_ENV[scheme]
        if user_var and user:
            environ[user_var] = user
        environ[password_var] = password
        return bare

    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        out.append(f"{key}={_move(value)}" if eq and key.lstrip("+") == "tracking.uri" else arg)
    if environ.get("MLFLOW_TRACKING_URI"):
        environ["MLFLOW_TRACKING_URI"] = _move(environ["MLFLOW_TRACKING_URI"])
    return out


def uri_secrets(uri: str) -> list[str]:
    """The secret strings in ``uri`` (password, secret query values), as written and unquoted.

    Use them to scrub messages that quote a secret without its URI (a driver error, a log line).
    """
    parts = _split(uri) if "://" in uri else None
    if parts is None:
        return []
    found = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    for item in parts.query.split("&"):
        key, sep, value = item.partition("=")
        if sep and value and urllib.parse.unquote_plus(key).lower() in SECRET_QUERY_KEYS:
            found.append(value)
    out = []
    for secret in found:
        for form in (secret, urllib.parse.unquote(secret)):
            if form and form not in out:
                out.append(form)
    return sorted(out, key=len, reverse=True)  # longest first: no partial replacement


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URI in it redacted, and every string of ``secrets`` replaced by ``***``.

    Works on logs, error messages and YAML files (``uri: postgresql://u:pw@h/db`` becomes
    ``uri: postgresql://u:***@h/db``). A string of ``secrets`` is replaced where it stands as a
    word of its own (not inside a longer run of letters and digits).
    """
    text = _URI_RE.sub(lambda m: redact(m.group(0)), text)
    for secret in sorted({s for s in secrets if s and s != SECRET}, key=len, reverse=True):
        # Whole words only, so a short password does not eat pieces of other words.
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", SECRET, text)
    return text


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a flat dict of params with every URI in a string value redacted.

    Other values are kept as they are (same type), so the result logs exactly like the input.
    """
    return {k: redact_text(v) if isinstance(v, str) else v for k, v in params.items()}


def redact_file(path: str | Path) -> bool:
    """Redact a text file in place (e.g. ``.hydra/config.yaml`` before it is logged).

    Returns True if the file changed. Binary or unreadable files are left alone.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    clean = redact_text(text)
    if clean == text:
        return False
    path.write_text(clean)
    return True


# --- MLflow's HTTP client ----------------------------------------------------------------------


def set_http_timeouts(
    env: MutableMapping[str, str] | None = None, **overrides: int | float | str
) -> dict[str, str]:
    """Bound MLflow's HTTP requests: set :data:`HTTP_ENV_DEFAULTS` where the user did not.

    ``env`` defaults to ``os.environ`` (MLflow reads these on every request, and worker processes
    started afterwards inherit them). ``overrides`` change a default, by its variable name, e.g.
    ``MLFLOW_HTTP_REQUEST_TIMEOUT=30``. A variable already set in ``env`` is never changed.
    Returns the variables this call set.

    With the defaults, a refused connection is reported after about 3 s (3 attempts, 0 + 2 s of
    backoff) and a server that never answers after about 50 s (3 x 15 s), instead of minutes.
    """
    env = os.environ if env is None else env
    unknown = set(overrides) - set(HTTP_ENV_DEFAULTS)
    if unknown:
        raise ValueError(
            f"unknown MLflow HTTP setting(s) {sorted(unknown)}: {list(HTTP_ENV_DEFAULTS)}"
        )
    wanted = {**HTTP_ENV_DEFAULTS, **{k: str(v) for k, v in overrides.items()}}
    done = {k: v for k, v in wanted.items() if not env.get(k)}
    env.update(done)
    return done


# --- preflight ---------------------------------------------------------------------------------


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""


def _reason(err: BaseException) -> str:
    """A short, single-line reason for a failed connection."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        err = err.reason if isinstance(err.reason, BaseException) else err
    if isinstance(err, TimeoutError) or "timed out" in str(err):
        return "no answer (timed out)"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())


def _check_http(uri: str, timeout: float) -> None:
    parts = urllib.parse.urlsplit(uri)
    hostport = parts.netloc.rpartition("@")[2]
    url = urllib.parse.urlunsplit(
        (parts.scheme, hostport, parts.path.rstrip("/") + "/health", "", "")
    )
    headers = {}
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or (
        parts.username and urllib.parse.unquote(parts.username)
    )
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD") or (
        parts.password and urllib.parse.unquote(parts.password)
    )
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    elif user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as err:
        hint = ""
        if err.code in (401, 403):
            hint = " (set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or a token)"
        raise TrackingUnavailable(f"GET /health answered {_reason(err)}{hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise TrackingUnavailable(f"GET /health failed: {_reason(err)}") from None
    if status != 200:
        raise TrackingUnavailable(f"GET /health answered HTTP {status}, expected 200")


def _writable_dir(directory: Path) -> str | None:
    """Why a new file cannot be created in ``directory``, or None if one can (tried for real)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".bpttlab-preflight-"):
            return None
    except OSError as err:
        return _reason(err)


def _check_sqlite(uri: str) -> None:
    path = uri[len("sqlite://") :].split("?", 1)[0]
    if path in ("", "/", "/:memory:") or path.startswith("/file:"):
        return  # in-memory or a URI filename: nothing on disk to check
    db = Path(path[1:])
    if db.exists():
        if not db.is_file():
            raise TrackingUnavailable(f"{db} is not a file")
        try:
            with open(db, "r+b"):
                pass
        except OSError as err:
            raise TrackingUnavailable(f"cannot open {db} for writing: {_reason(err)}") from None
    parent = db.parent
    while not parent.exists():  # created on first use: check the nearest existing ancestor
        parent = parent.parent
    if not parent.is_dir():
        raise TrackingUnavailable(f"{parent} is not a directory, so {db} cannot be created")
    why = _writable_dir(parent)
    if why is not None:  # SQLite also writes its journal next to the database
        raise TrackingUnavailable(f"cannot create files in {parent}: {why}")


def _check_sqlalchemy(uri: str, timeout: float) -> None:
    try:
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url
    except ImportError:
        raise TrackingUnavailable("SQLAlchemy is not installed") from None
    try:
        url = make_url(uri)
        dialect = url.get_dialect()
        dialect.import_dbapi()
    except ImportError as err:
        raise TrackingUnavailable(
            f"the database driver is not installed ({_reason(err)}); the PostgreSQL drivers come "
            "with pip install -e '.[ray]'"
        ) from None
    except Exception as err:  # ArgumentError, NoSuchModuleError: not a URI SQLAlchemy knows
        raise TrackingUnavailable(f"not a database URI SQLAlchemy knows ({_reason(err)})") from None
    connect_args = {}
    if url.get_backend_name() in ("postgresql", "mysql", "mariadb"):
        connect_args["connect_timeout"] = max(1, math.ceil(timeout))
    engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as err:
        # Driver messages span lines ("connection to server ... failed: ...\n\tIs the server..."):
        # keep the first meaningful line.
        orig = getattr(err, "orig", None) or err
        lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
        raise TrackingUnavailable(
            f"cannot connect: {lines[0] if lines else type(orig).__name__}"
        ) from None
    finally:
        engine.dispose()


def _check(uri: str, timeout: float) -> None:
    scheme = _scheme(uri)
    if scheme in ("http", "https"):
        _check_http(uri, timeout)
    elif scheme == "sqlite":
        _check_sqlite(uri)
    elif scheme in ("postgresql", "postgres", "mysql", "mariadb", "mssql"):
        _check_sqlalchemy(uri, timeout)
    # Anything else (databricks, file:, a plugin's scheme) is left to MLflow.


def preflight(uri: str, timeout: float = DEFAULT_PREFLIGHT_TIMEOUT) -> None:
    """Check that ``uri`` can be used for tracking, within about ``timeout`` seconds.

    Parameters
    ----------
    uri : str
        ``http(s)://HOST:PORT`` (an MLflow server: ``GET /health`` must answer 200),
        ``sqlite:///ABS/PATH/mlflow.db`` (the file, or the directory it will be created in, must be
        writable), ``postgresql://USER:PASSWORD@HOST:PORT/DB`` (a connection must open; so must
        other SQLAlchemy URIs). Other schemes are not checked.
    timeout : float
        Seconds allowed for the whole check, name resolution included.

    Raises
    ------
    TrackingUnavailable
        One line: ``tracking URI <redacted uri> is unusable: <what failed>``.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _check(uri, timeout)
        except BaseException as err:  # handed to the caller's thread
            errors.append(err)

    # A thread bounds what socket timeouts do not (name resolution, a driver ignoring its timeout).
    worker = threading.Thread(target=run, name="tracking-preflight", daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    where = f"tracking URI {redact(uri)} is unusable"
    if worker.is_alive():
        raise TrackingUnavailable(f"{where}: no answer within {timeout:g} s")
    if errors:
        err = errors[0]
        if isinstance(err, TrackingUnavailable):
            message = redact_text(f"{where}: {err}", uri_secrets(uri))
            raise TrackingUnavailable(" ".join(message.split())) from None
        message = redact_text(f"{where}: {_reason(err)}", uri_secrets(uri))
        raise TrackingUnavailable(" ".join(message.split())) from None


def check_tracking(uri: str, timeout: float = DEFAULT_PREFLIGHT_TIMEOUT) -> None:
    """:func:`set_http_timeouts` then :func:`preflight`: call once before any job starts."""
    set_http_timeouts()
    preflight(uri, timeout)


# --- a redacting pipe --------------------------------------------------------------------------

SECRETS_ENV = "BPTTLAB_REDACT_SECRETS"


def relay(source, sink, secrets: Iterable[str] = ()) -> None:
    """Copy lines from the binary stream ``source`` to ``sink``, redacted, until end of input.

    Each line is flushed at once, so a log fed this way is as current as the program writing it.
    """
    secrets = list(secrets)
    for raw in iter(source.readline, b""):
        sink.write(redact_text(raw.decode("utf-8", errors="replace"), secrets).encode())
        sink.flush()


def main(argv: list[str] | None = None) -> int:
    """``python -m bpttlab.tracking.uris [-- CMD ...]``: redact stdin, or the output of CMD.

    With a command, it is run as a child (same process group) with stdout and stderr through the
    filter, and its exit code is returned. Extra strings to hide come newline-separated in
    ``$BPTTLAB_REDACT_SECRETS`` (the environment, not the command line, which every user of the
    machine can read; the child does not inherit it). SIGINT, SIGTERM and SIGHUP are ignored by the
    filter: it ends when its input does, so the last words of the program it serves are kept.
    """
    import signal
    import subprocess
    import sys

    argv = sys.argv[1:] if argv is None else argv
    cmd = argv[argv.index("--") + 1 :] if "--" in argv else []
    secrets = [s for s in os.environ.pop(SECRETS_ENV, "").split("\n") if s]
    child = None
    if cmd:  # started before the signals are ignored: the child keeps the default handlers
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)  # fmt: skip
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if child is None:
        relay(sys.stdin.buffer, sys.stdout.buffer, secrets)
        return 0
    relay(child.stdout, sys.stdout.buffer, secrets)
    return child.wait()


if __name__ == "__main__":
    raise SystemExit(main())
