"""What A1111 needs to reproduce an Atelier image: Model hash, RNG and Version in the infotext."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging import version as packaging_version

from workers.imaging.infotext import (
    build_infotext,
    parse_infotext,
    read_png_parameters,
    version_label,
    write_png,
)
from workers.imaging.model_hash import model_hash
from workers.imaging.pipeline import GenerationRequest, generate_images

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning"),
]


def a1111_reads(text: str) -> dict:
    """A1111's parse_generation_parameters for the fields at stake: our reader (the same
    algorithm, tests/imaging/test_infotext.py) plus its defaults for a missing RNG and its
    Version back-compat rule (modules/infotext_versions.py)."""
    res: dict = dict(parse_infotext(text))
    res.setdefault("RNG", "GPU")  # "Missing RNG means the default was set, which is GPU RNG"
    raw = res.get("Version")
    if raw is not None:
        m = re.match(r"([^-]+-[^-]+)-.*", raw)
        try:
            parsed = packaging_version.parse(m.group(1) if m else raw)
        except packaging_version.InvalidVersion:
            parsed = None
        if parsed is not None and parsed < packaging_version.parse("v1.7.0-225"):
            res["Downcast alphas_cumprod"] = True
        if (
            parsed is not None
            and parsed < packaging_version.parse("1.6.0")
            and "[" in res["Prompt"]
        ):
            res["Old prompt editing timelines"] = True
    return res


def test_a_cpu_made_image_says_so_and_a1111_reads_it_as_cpu(pipe):
    req = GenerationRequest(prompt="a [cat]", steps=2, width=32, height=32, seed=5)
    image = generate_images(pipe, req)[0]
    buffer = io.BytesIO()
    write_png(image.image, buffer, image.infotext)

    text = read_png_parameters(buffer.getvalue())
    read = a1111_reads(text)

    assert read["RNG"] == "CPU"
    assert read["Version"] == version_label()
    assert text.split("\n")[-1].endswith(f"Version: {version_label()}")
    assert "Downcast alphas_cumprod" not in read and "Old prompt editing timelines" not in read


def test_without_rng_a1111_would_assume_the_gpu():
    # Why RNG is always written: the same image without it reads as GPU-made.
    text = build_infotext("a cat", "", {"Steps": 2, "Sampler": "Euler", "Seed": 5})
    assert a1111_reads(text)["RNG"] == "GPU"


def test_the_version_never_switches_on_a1111s_compatibility_modes():
    assert version_label().startswith("Atelier ")
    read = a1111_reads(
        build_infotext("a [cat]", "", {"Steps": 2, "Seed": 5, "Version": version_label()})
    )
    assert "Downcast alphas_cumprod" not in read and "Old prompt editing timelines" not in read
    # A bare number would: A1111 would take it for one of its own old releases.
    bare = a1111_reads(build_infotext("a [cat]", "", {"Steps": 2, "Seed": 5, "Version": "0.1.0"}))
    assert bare["Downcast alphas_cumprod"] and bare["Old prompt editing timelines"]


def test_the_model_hash_of_a_checkpoint_is_a1111s_short_hash(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"checkpoint bytes" * 1000)

    assert model_hash(file) == hashlib.sha256(file.read_bytes()).hexdigest()[:10]


def test_the_model_hash_of_a_diffusers_folder_covers_its_weights_in_path_order(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "vae").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"unet")
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"vae")
    (tmp_path / "model_index.json").write_text("{}")

    assert model_hash(tmp_path) == hashlib.sha256(b"unetvae").hexdigest()[:10]


def _same_stat_new_bytes(file: Path, data: bytes) -> None:
    """Replace the bytes but keep size and modification time: only a re-read would notice."""
    st = file.stat()
    assert len(data) == st.st_size
    file.write_bytes(data)
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_model_file_is_hashed_once_and_again_only_when_it_changes(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"a" * 4096)
    first = model_hash(file)

    _same_stat_new_bytes(file, b"b" * 4096)
    assert model_hash(file) == first  # not read again

    os.utime(file, ns=(file.stat().st_atime_ns, file.stat().st_mtime_ns + 1_000_000_000))
    assert model_hash(file) == hashlib.sha256(b"b" * 4096).hexdigest()[:10]


def test_the_hash_cache_file_spares_the_next_worker_process_the_read(tmp_path):
    file = tmp_path / "model.safetensors"
    cache = tmp_path / "cache" / "model-hashes.json"
    file.write_bytes(b"a" * 4096)
    first = model_hash(file, cache_file=cache)
    _same_stat_new_bytes(file, b"b" * 4096)

    code = (
        "import sys; from workers.imaging.model_hash import model_hash; "
        "print(model_hash(sys.argv[1], cache_file=sys.argv[2]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(file), str(cache)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == first
    fresh = subprocess.run(
        [sys.executable, "-c", code, str(file), str(tmp_path / "other.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert fresh.stdout.strip() == hashlib.sha256(b"b" * 4096).hexdigest()[:10]


def test_a_folder_without_weights_has_no_hash(tmp_path):
    with pytest.raises(FileNotFoundError):
        model_hash(tmp_path)


@pytest.mark.django_db(transaction=True)
def test_a_generated_png_carries_model_hash_rng_and_version(project, member, settings, tmp_path):
    from django.conf import settings as conf

    from apps.jobs import services as job_services
    from apps.models.models import BaseModel
    from apps.models.services import ensure_builtin_rows
    from apps.outputs.models import Output
    from workers.tasks.runtime import execute_job

    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    tiny = BaseModel.objects.get(reference="tiny-sd")
    job = job_services.job_create(
        project=project,
        kind="image.generate",
        created_by=member,
        params={"model_id": tiny.pk, "prompt": "a dog", "steps": 2, "width": 32, "height": 32},
    )
    assert execute_job(job.pk, worker_id="test") == "succeeded"

    output = Output.objects.get(job=job)
    read = a1111_reads(read_png_parameters(Path(conf.MEDIA_ROOT) / output.file_path))
    tiny.refresh_from_db()
    assert read["Model hash"] == model_hash(tiny.path)
    assert read["Model"] == tiny.name and read["RNG"] == "CPU"
    assert read["Version"] == version_label()
    assert (tmp_path / "models" / ".model-hashes.json").is_file()


def test_noise_drawn_on_a_gpu_is_written_as_gpu_rng():
    import torch

    from workers.imaging.pipeline.rng import generators, rng_name

    class Pipe:
        def __init__(self, device: str) -> None:
            self._execution_device = torch.device(device)

    assert rng_name(Pipe("cuda:0")) == "GPU"
    assert rng_name(Pipe("cpu")) == "CPU"
    # The generators the passes use are made on that same device.
    assert {g.device.type for g in generators(Pipe("cpu"), [1, 2])} == {"cpu"}
