"""The tiny random SD pipeline the imaging tests share: built once per session, loaded per module
(tests load LoRAs and embeddings into it; each module starts from a fresh load)."""

from __future__ import annotations

import pytest

from workers.imaging.demo_model import build_tiny_pipeline
from workers.imaging.pipeline import load_pipeline


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("imaging") / "tiny-sd", seed=0)


@pytest.fixture(scope="module")
def pipe(tiny_path):
    return load_pipeline(tiny_path, device="cpu", dtype="float32")
