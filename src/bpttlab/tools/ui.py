"""``make ui``: the MLflow UI on 127.0.0.1 against the project's store, in the foreground.

One worker and MLflow's background job runner off, so Ctrl-C stops every process it started.
MLflow 3.17's UI opens on its GenAI overview (traces, judges), so ``make ui`` first prints the link
to each bpttlab experiment's runs table (``http://HOST:PORT/#/experiments/<id>/runs``), with the
ids read from the store.
The store is the one the sweeps write to (``MLFLOW_TRACKING_URI`` or ``<project>/mlflow.db``); it
is checked first (``uris.preflight``), so a store that cannot be used is a one-line
error in seconds, and its URI reaches MLflow through the environment, never the command line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from bpttlab.tracking import get_client, resolve_tracking_uri
from bpttlab.tracking.uris import TrackingUnavailable, preflight, redact

EXPERIMENT_PREFIX = "bpttlab"  # the project's experiments: bpttlab-study, bpttlab-smoke, ...


def browser_host(host: str) -> str:
    """The host a browser on this machine opens: loopback for a wildcard bind address."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def experiment_links(client, host: str, port: int) -> list[tuple[str, str]]:
    """``(experiment name, URL of its runs table)`` of every bpttlab experiment in the store,
    in name order; the UI's hash route ``#/experiments/<id>/runs`` opens the runs table."""
    exps = [e for e in client.search_experiments() if e.name.startswith(EXPERIMENT_PREFIX)]
    base = f"http://{browser_host(host)}:{port}"
    return [
        (e.name, f"{base}/#/experiments/{e.experiment_id}/runs")
        for e in sorted(exps, key=lambda e: e.name)
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bpttlab.tools.ui", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--tracking-uri", default=None, help="store to show (default: the project's)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds to check the store")
    args = ap.parse_args(argv)
    uri = resolve_tracking_uri(args.tracking_uri)
    shown = redact(uri)
    try:
        preflight(uri, timeout=args.timeout)
    except TrackingUnavailable as err:
        hint = " (make server starts the project's)" if uri.startswith("http") else ""
        sys.exit(f"error: {err}{hint}")
    if uri.startswith(("http://", "https://")):
        sys.exit(f"{shown} is a tracking server already: open it in a browser instead")
    client = get_client(uri)  # creates the schema first, so the UI starts on an empty store too
    links = experiment_links(client, args.host, args.port)
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    env = dict(
        os.environ,
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_BACKEND_STORE_URI=uri,  # not on the command line, which every user can read
    )
    cmd = [mlflow, "ui", "--host", args.host, "--port", str(args.port), "--workers", "1"]
    from bpttlab.tools import server

    cmd += server.network_args(args.host, args.port)  # other machines may use this one's names
    if not server.is_loopback(args.host):
        urls = " or ".join(server.public_urls(args.host, args.port))
        print(server.NO_AUTH_WARNING.format(url=urls or args.host), file=sys.stderr)
    print(f"MLflow UI for {shown} at http://{args.host}:{args.port} (Ctrl-C stops it)")
    if links:
        print("runs of each study (the UI itself opens on MLflow's GenAI overview):")
        width = max(len(name) for name, _ in links)
        for name, url in links:
            print(f"  {name:<{width}}  {url}")
    else:
        print(f"no {EXPERIMENT_PREFIX}* experiment in this store yet: run make sweep first")
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, env)  # replace this process: Ctrl-C reaches mlflow directly


if __name__ == "__main__":
    main()
