"""A craft run's folder: the same run resumes (or returns its finished result), a changed one
starts over; and the model card written beside a produced model."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from workers.ml.finetune.files import write_json
from workers.ml.reporting import Reporter

__all__ = ["RESULT_NAME", "RUN_NAME", "fingerprint", "prepare_run_folder", "write_card"]

RUN_NAME = "run.json"
RESULT_NAME = "result.json"


def fingerprint(*parts: Any) -> str:
    """SHA-256 over the JSON of everything that defines a run (config, models, data)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def prepare_run_folder(
    output_dir: Path,
    print_: str,
    *,
    resume: bool,
    reporter: Reporter,
    produced: Iterable[str],
) -> dict[str, Any] | None:
    """The finished result of this very run, if there is one; otherwise make the folder ready.

    The same run (same fingerprint) keeps its checkpoints; a different one, or resume=False,
    removes everything in `produced` (folders and files, relative to `output_dir`)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    run_path, result_path = output_dir / RUN_NAME, output_dir / RESULT_NAME
    previous = json.loads(run_path.read_text()) if run_path.is_file() else None
    same = resume and previous is not None and previous.get("fingerprint") == print_
    if same and result_path.is_file():
        done = json.loads(result_path.read_text())
        if done.get("status") == "succeeded":
            reporter.log("this run already finished; returning its result")
            return done
    if not same:
        if resume and previous is not None:
            reporter.log(
                "parameters or data changed since the last attempt: starting over", "warning"
            )
        for name in (*produced, RESULT_NAME):
            target = output_dir / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        write_json(run_path, {"fingerprint": print_})
    for stale in output_dir.glob(".tmp-*"):  # a crash while a folder was being published
        shutil.rmtree(stale, ignore_errors=True)
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return "—" if value is None else str(value)


def write_card(
    path: Path, *, title: str, tags: Iterable[str], intro: str, tables: Mapping[str, Mapping]
) -> Path:
    """A Hugging Face style README.md: front matter, a sentence, then one table per section."""
    lines = [
        "---",
        "library_name: transformers",
        f"tags: [{', '.join(tags)}]",
        "---",
        "",
        f"# {title}",
        "",
        intro,
    ]
    for heading, rows in tables.items():
        if rows:
            lines += ["", f"## {heading}", "", "| item | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in rows.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
