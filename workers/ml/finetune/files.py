"""The run folder's layout, and the atomic writes that keep it whole across crashes."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

from workers.common.timing import timed

__all__ = [
    "ADAPTER_DIR",
    "ADAPTER_ZIP",
    "CARD_NAME",
    "CHECKPOINTS_DIR",
    "EVAL_BEFORE_NAME",
    "JOB_RUN_DIR",
    "RESULT_NAME",
    "RUN_NAME",
    "replace_dir",
    "write_json",
    "zip_folder",
]

CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
ADAPTER_ZIP = "adapter.zip"
RESULT_NAME = "result.json"
RUN_NAME = "run.json"
EVAL_BEFORE_NAME = "eval_before.json"
CARD_NAME = "README.md"
# Where the platform's runners keep a fine-tune's run folder inside a job's work folder
# (apps/finetunes/runners.py); a retry finds the checkpoints of the job it retries there.
JOB_RUN_DIR = "run"


@timed("finetune.write_json")
def write_json(path: Path, data: Any) -> None:
    """Write JSON to a temp sibling, fsync it, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder `src` to `dst`, replacing what was there."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}-old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(src, dst)


@timed("finetune.zip")
def zip_folder(folder: Path, dest: Path) -> Path:
    """Zip `folder` (entries under its own name) into `dest`, atomically."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    os.replace(tmp, dest)
    return dest
