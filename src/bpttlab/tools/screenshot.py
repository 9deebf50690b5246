"""Screenshot ``report.html`` in a headless Chromium, to check it renders with its figures.

    python -m bpttlab.tools.screenshot reports/report.html reports/report.png

Uses the system Chromium (Debian: ``apt-get install chromium``, ``/usr/bin/chromium``) with a
fresh profile directory, no network services, no GPU and no sandbox (it runs in containers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class ChromiumNotFound(RuntimeError):
    """No Chromium/Chrome executable on this machine."""


def find_chromium() -> str | None:
    """Path of a Chromium executable: ``$CHROMIUM``, ``/usr/bin/chromium``, then the PATH."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).is_file():
        return env
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(
    html_path: str | Path,
    png_path: str | Path,
    width: int = 1400,
    height: int = 4000,
    timeout: float = 120.0,
    chromium: str | None = None,
) -> Path:
    """Render ``html_path`` headless and save a ``width`` x ``height`` PNG to ``png_path``.

    Raises
    ------
    ChromiumNotFound
        No browser installed.
    RuntimeError
        The browser failed or wrote no screenshot (its stderr is in the message).
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise ChromiumNotFound(
            "no Chromium found (tried $CHROMIUM, /usr/bin/chromium, "
            f"{', '.join(CANDIDATES)}); install it with: apt-get install -y chromium"
        )
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    if not html_path.is_file():
        raise FileNotFoundError(f"no such HTML file: {html_path}")
    png_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="bpttlab-chromium-") as profile:
        cmd = [
            exe,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={png_path}",
            f"--window-size={width},{height}",
            html_path.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not png_path.is_file() or png_path.stat().st_size == 0:
        raise RuntimeError(
            f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
        )
    return png_path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2):
        print("usage: python -m bpttlab.tools.screenshot REPORT.html [OUT.png]", file=sys.stderr)
        return 2
    html_path = Path(argv[0])
    png_path = Path(argv[1]) if len(argv) == 2 else html_path.with_suffix(".png")
    try:
        out = screenshot(html_path, png_path)
    except (ChromiumNotFound, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"screenshot: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
