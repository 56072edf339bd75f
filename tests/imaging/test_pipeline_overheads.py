"""The pipeline's per-image overheads that do not depend on the image: the execution device is
found once per loaded pipeline (diffusers walks every module for it on each read), schedulers
are copied from a prototype, and CPU batch invariance stays as it was."""

from __future__ import annotations

import torch

from workers.imaging.pipeline import GenerationRequest, generate_images, load_pipeline
from workers.imaging.pipeline.denoising import scheduler_for


def _req(**kw) -> GenerationRequest:
    base = dict(
        prompt="a red fox",
        negative_prompt="blurry",
        sampler="Euler a",
        steps=3,
        cfg_scale=7,
        seed=11,
        width=64,
        height=64,
    )
    return GenerationRequest(**{**base, **kw})


def test_the_execution_device_is_found_once_and_forgotten_when_the_pipeline_moves(
    tiny_path, monkeypatch
):
    import diffusers.hooks.group_offloading as offloading

    walks = []
    real = offloading._get_group_onload_device

    def counting(module):  # diffusers calls it for each component on every uncached read
        walks.append(module)
        return real(module)

    monkeypatch.setattr(offloading, "_get_group_onload_device", counting)
    pipe = load_pipeline(tiny_path)
    pipe.__dict__.pop("_atelier_execution_device", None)
    assert pipe._execution_device == torch.device("cpu")
    one_read = len(walks)
    assert one_read > 0
    for _ in range(5):
        assert pipe._execution_device == torch.device("cpu")
    assert len(walks) == one_read  # answered from the cached value
    pipe.to("cpu")  # moving forgets it; the next read walks the modules again
    assert pipe._execution_device == torch.device("cpu")
    assert len(walks) == 2 * one_read
    assert type(pipe).__name__ == "StableDiffusionPipeline"  # saved configs keep the name


def test_each_pass_gets_its_own_scheduler_with_the_same_settings(pipe):
    a, b = scheduler_for(pipe, _req()), scheduler_for(pipe, _req())
    assert a is not b and type(a).__name__ == "EulerAncestralDiscreteScheduler"
    assert dict(a.config) == dict(b.config)
    a.set_timesteps(5)
    assert b.num_inference_steps is None  # a copy: untouched by a's run
    generate_images(pipe, _req())
    assert pipe.scheduler.num_inference_steps is None  # passes never run the loaded one


def test_the_same_request_gives_the_same_pixels_on_the_pinned_pipeline(pipe, tiny_path):
    fresh = load_pipeline(tiny_path)
    first = generate_images(pipe, _req())[0].image
    again = generate_images(fresh, _req())[0].image
    assert first.tobytes() == again.tobytes()  # same arithmetic, same process


def _attention_processors(pipe) -> list:
    return [
        m.processor
        for component in (pipe.unet, pipe.vae)
        for m in component.modules()
        if getattr(m, "processor", None) is not None
    ]


def test_attention_processors_keep_their_parameters_with_the_signature_read_once(pipe):
    """diffusers reads inspect.signature(processor.__call__) on every attention call to filter
    cross-attention kwargs; the loaded pipeline's processors answer it from a cached signature,
    with exactly the parameters the class's method takes."""
    import inspect

    processors = _attention_processors(pipe)
    assert processors, "the tiny UNet has attention layers"
    for processor in processors:
        fresh = type(processor)()
        assert inspect.signature(processor.__call__) == inspect.signature(fresh.__call__)
        assert inspect.signature(processor.__call__) is inspect.signature(processor.__call__)


def test_presigned_processors_draw_the_same_pixels_as_diffusers_own(tiny_path):
    presigned = load_pipeline(tiny_path, device="cpu", dtype="float32")
    plain = load_pipeline(tiny_path, device="cpu", dtype="float32")
    for processor in _attention_processors(plain):
        del processor.__call__  # back to the class's method: what diffusers does on its own
    assert all("__call__" not in vars(p) for p in _attention_processors(plain))
    first = generate_images(presigned, _req())[0].image
    again = generate_images(plain, _req())[0].image
    assert first.tobytes() == again.tobytes()  # the same call and arithmetic, same process
