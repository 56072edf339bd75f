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
def one_torch_thread():
    """One torch thread for a module of small-matrix training tests: OpenMP threads only add
    contention there (several times slower on a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pipe(tiny_path):
    return load_pipeline(tiny_path, device="cpu", dtype="float32")
