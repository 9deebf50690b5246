"""``make drain``: let the running sweeps finish the runs they have started, and start no more.

Ctrl-C or SIGTERM stops a sweep in seconds: its runs in progress are closed KILLED, and a resumed
sweep takes them up from their latest snapshot, which lives in that machine's store. To end a
sitting with nothing half-done (a run of a full reproduction can take an hour), drain instead:
this marks every running sweep of the store (its parent run gets the tag ``bpttlab.drain``); each
worker reads it before it starts a job, so a job not yet started is *held* (``held  NAME: not
started``, no run is made), while the runs in progress train to their end. The sweep then closes
with ``sweep drained in ...: ..., N not started``, its parent run KILLED with that reason, and
exits with status 3; ``make reproduce`` starts no further reproduction, writes its reports from
the store and exits with 3 too. Running the same command again resumes: the finished runs are
skipped and the held ones run.

Only sweeps whose driver is alive are marked (the lease on the parent run); a sweep that has not
opened its parent yet, or a reproduction between two sweeps, is not seen.
"""

from __future__ import annotations

import argparse
import sys
import time

from bpttlab.tracking import get_client, lifecycle, reader, resolve_tracking_uri
from bpttlab.tracking.sweep import lease_alive
from bpttlab.tracking.uris import TrackingUnavailable, preflight, redact


def drain(uri: str) -> list[str]:
    """Mark every running sweep in the store ``uri`` as draining; one line per sweep marked."""
    client = get_client(uri)
    lines = []
    exps = [e.experiment_id for e in client.search_experiments()]
    flt = f"tags.`{reader.ROLE_TAG}` = 'sweep' and attributes.status = 'RUNNING'"
    for parent in reader.search_runs(client, exps, flt) if exps else ():
        alive, who = lease_alive(parent.data.tags)
        if not alive:
            continue
        if lifecycle.TAG_DRAIN not in parent.data.tags:
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            client.set_tag(parent.info.run_id, lifecycle.TAG_DRAIN, when)
        lines.append(f"draining {parent.info.run_name} (parent run {parent.info.run_id}, {who})")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bpttlab.tools.drain", description=__doc__)
    ap.add_argument("--tracking-uri", default=None, help="store (default: the project's)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds to check the store")
    args = ap.parse_args(argv)
    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        preflight(uri, timeout=args.timeout)
    except TrackingUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    lines = drain(uri)
    if not lines:
        print(f"no sweep is running in {redact(uri)}: nothing to drain", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    print(
        "their runs in progress finish and no new run starts; the same command resumes later",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
