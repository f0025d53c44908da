"""A batch's results: ``<farm>/runs.csv`` (one row a run), ``<farm>/summary.csv`` (one row a prompt:
each score's mean and spread over its seeds) and ``<farm>/index.html`` (a gallery: each run's
video, a link to its run page with the mesh viewer, its scores or why it failed).

Scores come from each workspace's ``eval.json`` (``dreamfusion evaluate``): every number in it.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import statistics
from pathlib import Path

from dreamfusion.farm.prompts import BatchItem
from dreamfusion.farm.runner import RunOutcome

NOT_SCORES = {"format", "step", "views", "pool_size", "distractors"}
NOT_SCORE_ENDINGS = ("seconds", "size", "resolution", "threshold")
"""Numbers of eval.json that describe the evaluation rather than score the result."""


def scores(workspace: Path) -> dict[str, float]:
    """The numbers of a workspace's eval.json, nested keys joined by dots
    ('clip_score', 'exemplar_3d.field.volume_iou', ...); lists (per view, per ring) are left out."""
    try:
        data = json.loads((Path(workspace) / "eval.json").read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, float] = {}

    def walk(section: dict, prefix: str) -> None:
        for key, value in section.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  and f"{prefix}{key}" not in NOT_SCORES and not key.endswith(NOT_SCORE_ENDINGS)
                  and not prefix.startswith("seconds.")):
                out[f"{prefix}{key}"] = float(value)

    walk(data if isinstance(data, dict) else {}, "")
    return out


def write_reports(farm: Path, items: list[BatchItem], outcomes: list[RunOutcome]) -> None:
    farm = Path(farm)
    by_slug = {o.slug: o for o in outcomes}
    rows = []
    for item in items:
        outcome = by_slug.get(item.slug)
        rows.append({"slug": item.slug, "prompt": item.label, "seed": "" if item.seed is None else item.seed,
                     "state": outcome.state if outcome else "not run",
                     "reason": outcome.reason if outcome else "", "seconds": outcome.seconds if outcome else "",
                     "evaluation": outcome.evaluation if outcome else "", **scores(farm / item.slug)})
    _write_csv(farm / "runs.csv", rows)
    _write_csv(farm / "summary.csv", _summary(rows))
    _atomic_write(farm / "index.html", gallery(farm, items, rows))


def _summary(rows: list[dict]) -> list[dict]:
    """One row a prompt: runs, how many done, and each score's mean and standard deviation over seeds."""
    fixed = {"slug", "prompt", "seed", "state", "reason", "seconds", "evaluation"}
    out = []
    for prompt in dict.fromkeys(r["prompt"] for r in rows):
        group = [r for r in rows if r["prompt"] == prompt]
        row = {"prompt": prompt, "runs": len(group), "done": sum(r["state"] == "done" for r in group)}
        for key in dict.fromkeys(k for r in group for k in r if k not in fixed):
            values = [r[key] for r in group if key in r]
            row[f"{key}_mean"] = statistics.fmean(values)
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append(row)
    return out


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(path, buffer.getvalue())


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def gallery(farm: Path, items: list[BatchItem], rows: list[dict]) -> str:
    """The batch's index.html (relative links: open it from disk)."""
    done = sum(r["state"] == "done" for r in rows)
    parts = ["<!doctype html><meta charset='utf-8'><title>dreamfusion batch</title>",
             "<style>body{font-family:sans-serif;margin:1em}.run{display:inline-block;vertical-align:top;width:260px;"
             "margin:6px;padding:6px;border:1px solid #ccc;font-size:13px}video{width:256px}"
             ".failed{background:#fee}table{font-size:12px}</style>",
             f"<h1>dreamfusion batch</h1><p>{done} of {len(rows)} runs done · <a href='summary.csv'>summary.csv</a> · "
             "<a href='runs.csv'>runs.csv</a></p>"]
    for item, row in zip(items, rows):
        workspace = farm / item.slug
        videos = sorted((workspace / "results").glob("*_rgb.mp4")) if (workspace / "results").is_dir() else []
        state = row["state"]
        parts.append(f"<div class='run{' failed' if state == 'failed' else ''}'><b>{html.escape(item.label)}</b>"
                     + (f" (seed {item.seed})" if item.seed is not None else ""))
        if videos:
            src = html.escape(videos[-1].relative_to(farm).as_posix())
            parts.append(f"<br><video src='{src}' controls loop autoplay muted></video>")
        if (workspace / "index.html").is_file():
            parts.append(f"<br><a href='{html.escape(item.slug)}/index.html'>run page (mesh viewer, losses)</a>")
        if state == "failed":
            parts.append(f"<br>failed: {html.escape(str(row['reason']))}")
        elif state != "done":
            parts.append(f"<br>{html.escape(state)}")
        numbers = {k: v for k, v in row.items() if isinstance(v, float) and k != "seconds"}
        if numbers:
            parts.append("<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>"
                                             for k, v in numbers.items()) + "</table>")
        parts.append("</div>")
    return "\n".join(parts)
