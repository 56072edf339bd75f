"""A1111 sampler names → diffusers schedulers (workers.imaging.samplers)."""

from __future__ import annotations

import inspect

import diffusers
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from workers.imaging.samplers import (
    SAMPLER_NAMES,
    SCHEDULE_TYPES,
    make_scheduler,
    resolve_sampler,
)

# diffusers turns tensors into arrays with np.array(tensor); numpy 2 warns about torch's
# __array__ on every step. Upstream noise, thousands of lines of it.
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning"),
]

# An SD 1.x scheduler config, as saved in a pipeline folder.
SD_CONFIG = DDIMScheduler(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
).config

EXPECTED = {
    "Euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {"use_karras_sigmas": False}),
    "DPM++ SDE Karras": ("DPMSolverSinglestepScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {"use_karras_sigmas": False}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM2 Karras": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM2 a Karras": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
    "DDPM": ("DDPMScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_a1111_name_maps_to_the_documented_scheduler(name):
    class_name, config = EXPECTED[name]
    scheduler = make_scheduler(name, SD_CONFIG)
    assert type(scheduler).__name__ == class_name
    for key, value in config.items():
        assert scheduler.config[key] == value, key
    # the model's settings carry over from the pipeline's config
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_end == 0.012


def test_every_mapped_class_exists_in_this_diffusers():
    for name in SAMPLER_NAMES:
        cls = getattr(diffusers, resolve_sampler(name).scheduler_class)
        assert inspect.isclass(cls) and type(cls).__name__ != "DummyObject", name


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_every_offered_sampler_denoises(name):
    scheduler = make_scheduler(name, SD_CONFIG)
    scheduler.set_timesteps(4)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=generator) * scheduler.init_noise_sigma
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(sample, t)
        noise_pred = 0.1 * model_input
        kwargs = {"generator": generator} if takes_generator else {}
        sample = scheduler.step(noise_pred, t, sample, **kwargs).prev_sample
    assert torch.isfinite(sample).all()


def test_a_plain_name_resets_sigma_flags_left_in_the_pipeline_config():
    karras = DPMSolverMultistepScheduler(use_karras_sigmas=True, algorithm_type="sde-dpmsolver++")
    scheduler = make_scheduler("DPM++ 2M", karras)
    assert scheduler.config.use_karras_sigmas is False
    assert scheduler.config.algorithm_type == "dpmsolver++"
    assert make_scheduler("Euler", karras.config).config.use_karras_sigmas is False


def test_schedule_type_is_accepted_separately_as_a1111_writes_it_since_1_9():
    split = make_scheduler("DPM++ 2M", SD_CONFIG, schedule_type="Karras")
    legacy = make_scheduler("DPM++ 2M Karras", SD_CONFIG)
    assert split.config == legacy.config
    exponential = make_scheduler("DPM++ 2M SDE", SD_CONFIG, schedule_type="Exponential")
    assert exponential.config.use_exponential_sigmas is True
    assert make_scheduler("Euler", SD_CONFIG, schedule_type="Beta").config.use_beta_sigmas is True
    assert (
        make_scheduler("Euler", SD_CONFIG, schedule_type="Uniform").config.use_karras_sigmas
        is False
    )
    assert set(SCHEDULE_TYPES) == {"Automatic", "Uniform", "Karras", "Exponential", "Beta"}


def test_automatic_means_a1111s_per_sampler_default():
    assert resolve_sampler("DPM++ 2M", "Automatic").schedule_type == "Karras"
    assert resolve_sampler("DPM++ 2M SDE", "Automatic").schedule_type == "Exponential"
    assert resolve_sampler("Euler a", "Automatic").schedule_type == "Uniform"
    # no schedule type at all: an infotext from before 1.9, where DPM++ 2M meant uniform sigmas
    assert resolve_sampler("DPM++ 2M").schedule_type == "Uniform"
    # a legacy name wins over Automatic
    assert resolve_sampler("DPM++ 2M SDE Karras", "Automatic").schedule_type == "Karras"


def test_resolved_sampler_gives_the_infotext_label():
    assert resolve_sampler("DPM++ 2M", "Karras").label == "DPM++ 2M Karras"
    assert resolve_sampler("k_euler_a").label == "Euler a"


def test_names_are_matched_loosely_and_a1111_aliases_work():
    assert resolve_sampler("euler A").sampler == "Euler a"
    assert resolve_sampler("  DPM++  2M   karras ").label == "DPM++ 2M Karras"
    assert resolve_sampler("k_dpmpp_2m_ka").label == "DPM++ 2M Karras"
    assert resolve_sampler("pndm").sampler == "PLMS"
    assert resolve_sampler("Euler Karras").scheduler_class == "EulerDiscreteScheduler"


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown sampler 'DPM fast'") as excinfo:
        make_scheduler("DPM fast", SD_CONFIG)
    for name in ("Euler a", "DPM++ 2M Karras", "DDIM", "UniPC"):
        assert name in str(excinfo.value)


def test_impossible_combinations_are_refused():
    with pytest.raises(ValueError, match="no Karras schedule"):
        make_scheduler("Euler a", SD_CONFIG, schedule_type="Karras")
    with pytest.raises(ValueError, match="no Karras schedule"):
        make_scheduler("DDIM Karras", SD_CONFIG)
    with pytest.raises(ValueError, match="already names"):
        make_scheduler("DPM++ 2M Karras", SD_CONFIG, schedule_type="Exponential")
    with pytest.raises(ValueError, match="unknown schedule type"):
        make_scheduler("Euler", SD_CONFIG, schedule_type="Polyexponential")


def test_config_from_another_scheduler_class_is_filtered():
    # a DDIM config carries set_alpha_to_one and clip_sample, which DDPM/Euler do not all take
    for name in ("DDPM", "Euler", "LCM", "UniPC"):
        scheduler = make_scheduler(name, dict(SD_CONFIG))
        assert scheduler.config.num_train_timesteps == 1000
    v_pred = DDIMScheduler(prediction_type="v_prediction")
    assert make_scheduler("Euler a", v_pred).config.prediction_type == "v_prediction"
