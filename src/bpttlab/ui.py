"""``make ui``: the MLflow UI on 127.0.0.1 against the project's store, in the foreground.

One worker and MLflow's background job runner off, so Ctrl-C stops every process it started.
The store is the one the sweeps write to (``MLFLOW_TRACKING_URI`` or ``<project>/mlflow.db``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from bpttlab.tracking import get_client, resolve_tracking_uri


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bpttlab.ui", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--tracking-uri", default=None, help="store to show (default: the project's)")
    args = ap.parse_args(argv)
    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        sys.exit(f"{uri} is a tracking server already: open it in a browser instead")
    get_client(uri)  # create the schema first so the UI starts on an empty store too
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    cmd = [
        mlflow,
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        "1",
    ]
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    os.execvpe(cmd[0], cmd, env)  # replace this process: Ctrl-C reaches mlflow directly


if __name__ == "__main__":
    main()
