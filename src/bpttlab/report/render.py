"""The project's one Markdown/HTML renderer, shared by ``report.md`` and ``reproduce.md``.

A document is a list of blocks (tuples), rendered to Markdown by :func:`render_markdown` and to a
self-contained HTML page (one style sheet, figures embedded) by :func:`render_html`:

- ``("h", level, text)``: a heading; ``("p", text)``: a paragraph (``**bold**`` and ```code```
  are kept in HTML); ``("list", items)``; ``("pre", text)``: preformatted;
- ``("table", frame[, index[, colors]])``: a DataFrame; ``colors[column][value]`` colours a cell
  in HTML; ``("details", summary, frame)``: a table folded away;
- ``("fig", title, png, caption)``: a titled, captioned figure; ``("img", alt, png)``: a figure.

:func:`save_figure` writes the figures (returned as ``Figure`` objects by their functions).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import pandas as pd

FIG_DPI = 120
Colors = Mapping[str, Mapping[str, str]]


def md_table(frame: pd.DataFrame, index: bool = True) -> str:
    """A GitHub-flavoured Markdown table."""
    frame = frame.reset_index() if index else frame
    cols = [str(c) for c in frame.columns]
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def html_table(frame: pd.DataFrame, index: bool = True, colors: Colors | None = None) -> str:
    """An HTML table; ``colors[column][value]`` is the background of a cell (e.g. a verdict)."""
    frame = frame.reset_index() if index else frame
    colors = colors or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)

    def cell(col, v) -> str:
        color = colors.get(col, {}).get(str(v))
        style = f' style="background:{color}"' if color else ""
        return f"<td{style}>{html.escape(str(v))}</td>"

    body = "".join(
        "<tr>" + "".join(cell(c, v) for c, v in zip(frame.columns, row, strict=True)) + "</tr>"
        for row in frame.itertuples(False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def md_inline_to_html(text: str) -> str:
    """Escape, then ``**bold**`` and ```code``` to HTML."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def save_figure(fig, stem: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Save ``fig`` as ``stem.<fmt>`` for each format (PNG at :data:`FIG_DPI`); the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.rc_context({"svg.hashsalt": "bpttlab"}):  # stable SVG ids across runs
        for fmt in formats:
            path = stem.with_suffix(f".{fmt}")
            meta = {"Date": None} if fmt in ("svg", "pdf") else None
            fig.savefig(path, dpi=FIG_DPI, metadata=meta)
            paths.append(path)
    return paths


def render_markdown(blocks: Sequence[tuple], out: Path) -> str:
    """The Markdown of ``blocks``; image paths are written relative to ``out``."""
    lines = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            lines += ["#" * b[1] + " " + b[2], ""]
        elif kind == "p":
            lines += [b[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in b[1]] + [""]
        elif kind == "pre":
            lines += ["```", b[1], "```", ""]
        elif kind == "table":
            lines += [md_table(b[1], *b[2:3]), ""]
        elif kind == "details":
            lines += [f"<details><summary>{b[1]}</summary>", "", md_table(b[2]), "", "</details>"]
            lines += [""]
        elif kind == "fig":
            _, title, png, caption = b
            lines += [f"### {title}", "", f"![{title}]({png.relative_to(out).as_posix()})", ""]
            lines += [f"*{caption}*", ""]
        elif kind == "img":
            _, alt, png = b
            lines += [f"![{alt}]({Path(png).relative_to(out).as_posix()})", ""]
    return "\n".join(lines)


def _img(alt: str, png) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1250px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.86em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
figure { margin: 1.2em 0 2.2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.92em; color: #444; max-width: 70em; }
code { background: #f3f3f3; padding: 0 0.2em; }
pre { background: #f6f6f6; padding: 0.6em; font-size: 0.85em; overflow-x: auto; }
li { margin-bottom: 0.5em; }
"""


def render_html(blocks: Sequence[tuple], title: str) -> str:
    """A self-contained HTML page of ``blocks`` (figures embedded as base64 PNG)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
    ]
    for b in blocks:
        kind = b[0]
        if kind == "h":
            parts.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
        elif kind == "p":
            parts.append(f"<p>{md_inline_to_html(b[1])}</p>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{md_inline_to_html(x)}</li>" for x in b[1]))
            parts.append("</ul>")
        elif kind == "table":
            parts.append(html_table(b[1], *b[2:]))
        elif kind == "pre":
            parts.append(f"<pre>{html.escape(b[1])}</pre>")
        elif kind == "details":
            parts.append(f"<details><summary>{html.escape(b[1])}</summary>")
            parts.append(html_table(b[2]) + "</details>")
        elif kind == "fig":
            _, title_, png, caption = b
            parts.append(
                f"<figure><h3>{html.escape(title_)}</h3>{_img(title_, png)}"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        elif kind == "img" and Path(b[2]).is_file():
            parts.append(f"<figure>{_img(b[1], b[2])}</figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
