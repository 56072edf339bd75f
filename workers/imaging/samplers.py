"""A1111 sampler names → diffusers schedulers, following diffusers' documented mapping table.

A1111 names a sampler and, since 1.9, a separate "Schedule type" (``Sampler: DPM++ 2M, Schedule
type: Karras``); older infotexts fold the schedule into the name (``DPM++ 2M Karras``). Both forms
are accepted. Without a schedule type a name means what it meant before 1.9 (uniform sigmas);
``Automatic`` means A1111's current per-sampler default (Karras for DPM++ 2M, Exponential for
DPM++ 2M SDE, ...).

``DPM++ SDE`` maps to ``DPMSolverSinglestepScheduler`` as in diffusers' table: the closer
``DPMSolverSDEScheduler`` needs ``torchsde``, and choosing by what happens to be installed would
make the same seed give different images on different workers.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SAMPLER_NAMES",
    "SCHEDULE_TYPES",
    "ResolvedSampler",
    "make_scheduler",
    "resolve_sampler",
]


@dataclass(frozen=True)
class _Spec:
    scheduler: str  # diffusers class name
    config: Mapping[str, Any] = field(default_factory=dict)
    automatic: str = "Uniform"  # what A1111 >= 1.9 uses for "Schedule type: Automatic"


_SAMPLERS: dict[str, _Spec] = {
    "Euler": _Spec("EulerDiscreteScheduler"),
    "Euler a": _Spec("EulerAncestralDiscreteScheduler"),
    "LMS": _Spec("LMSDiscreteScheduler"),
    "Heun": _Spec("HeunDiscreteScheduler"),
    "DPM2": _Spec("KDPM2DiscreteScheduler", automatic="Karras"),
    "DPM2 a": _Spec("KDPM2AncestralDiscreteScheduler", automatic="Karras"),
    "DPM++ 2M": _Spec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
        automatic="Karras",
    ),
    "DPM++ 2M SDE": _Spec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
        automatic="Exponential",
    ),
    "DPM++ SDE": _Spec(
        "DPMSolverSinglestepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
        automatic="Karras",
    ),
    "DDIM": _Spec("DDIMScheduler"),
    "PLMS": _Spec("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": _Spec("UniPCMultistepScheduler"),
    "DDPM": _Spec("DDPMScheduler"),
    "LCM": _Spec("LCMScheduler"),
}

# Schedule type → the diffusers flag that selects it ("Uniform" is the scheduler's own spacing).
_SCHEDULE_FLAGS = {
    "Karras": "use_karras_sigmas",
    "Exponential": "use_exponential_sigmas",
    "Beta": "use_beta_sigmas",
}
SCHEDULE_TYPES = ("Automatic", "Uniform", *_SCHEDULE_FLAGS)

# Names A1111 used before "Schedule type" existed, and its internal aliases.
_LEGACY = (
    "LMS Karras",
    "DPM2 Karras",
    "DPM2 a Karras",
    "DPM++ 2M Karras",
    "DPM++ SDE Karras",
    "DPM++ 2M SDE Karras",
    "DPM++ 2M SDE Exponential",
)
_ALIASES = {
    "pndm": "PLMS",
    "k_euler": "Euler",
    "k_euler_a": "Euler a",
    "k_euler_ancestral": "Euler a",
    "k_lms": "LMS",
    "k_lms_ka": "LMS Karras",
    "k_heun": "Heun",
    "k_dpm_2": "DPM2",
    "k_dpm_2_ka": "DPM2 Karras",
    "k_dpm_2_a": "DPM2 a",
    "k_dpm_2_a_ka": "DPM2 a Karras",
    "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_2m_ka": "DPM++ 2M Karras",
    "k_dpmpp_sde": "DPM++ SDE",
    "k_dpmpp_sde_ka": "DPM++ SDE Karras",
    "k_dpmpp_2m_sde": "DPM++ 2M SDE",
    "k_dpmpp_2m_sde_exp": "DPM++ 2M SDE Exponential",
}

#: Names to offer in a form: every sampler, then the pre-1.9 names with a schedule.
SAMPLER_NAMES: tuple[str, ...] = (*_SAMPLERS, *_LEGACY)


@dataclass(frozen=True)
class ResolvedSampler:
    """What a sampler name means: A1111's base name and schedule, and the diffusers setup."""

    sampler: str  # A1111 base name, e.g. "DPM++ 2M"
    schedule_type: str  # "Uniform", "Karras", "Exponential" or "Beta"
    scheduler_class: str  # diffusers class name
    config: dict[str, Any]  # overrides applied on top of the pipeline's scheduler config

    @property
    def label(self) -> str:
        """The pre-1.9 A1111 name (``DPM++ 2M Karras``) for the infotext's ``Sampler`` field."""
        if self.schedule_type == "Uniform":
            return self.sampler
        return f"{self.sampler} {self.schedule_type}"


def _valid_names() -> str:
    return ", ".join(SAMPLER_NAMES)


def _scheduler_class(class_name: str) -> type[Any]:
    import diffusers

    cls = getattr(diffusers, class_name, None)
    # diffusers exports placeholders (DummyObject) for classes whose extra dependency is missing.
    if not isinstance(cls, type) or type(cls).__name__ == "DummyObject":
        raise RuntimeError(f"diffusers {diffusers.__version__} has no usable {class_name}")
    return cls


def _init_params(cls: type[Any]) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def _lookup(name: str) -> tuple[str, str | None] | None:
    """``(base sampler, schedule from the name or None)`` for a sampler name, alias or legacy name."""
    by_lower = {n.lower(): n for n in _SAMPLERS}
    key = " ".join(name.split()).lower()
    key = _ALIASES.get(key, key).lower()
    if key in by_lower:
        return by_lower[key], None
    for schedule in _SCHEDULE_FLAGS:
        suffix = f" {schedule.lower()}"
        if key.endswith(suffix) and key[: -len(suffix)] in by_lower:
            return by_lower[key[: -len(suffix)]], schedule
    return None


def resolve_sampler(name: str, schedule_type: str | None = None) -> ResolvedSampler:
    """Resolve an A1111 sampler name (and optional schedule type); ValueError lists valid names."""
    found = _lookup(name) if isinstance(name, str) else None
    if found is None:
        raise ValueError(f"unknown sampler {name!r}; valid samplers: {_valid_names()}")
    base, from_name = found
    spec = _SAMPLERS[base]

    requested = None
    if schedule_type is not None:
        by_lower = {s.lower(): s for s in SCHEDULE_TYPES}
        requested = by_lower.get(schedule_type.strip().lower())
        if requested is None:
            raise ValueError(
                f"unknown schedule type {schedule_type!r}; valid: {', '.join(SCHEDULE_TYPES)}"
            )
    if from_name and requested not in (None, "Automatic", from_name):
        raise ValueError(
            f"sampler {name!r} already names the {from_name} schedule, not {requested}"
        )

    schedule = from_name or requested or "Uniform"
    if schedule == "Automatic":
        schedule = spec.automatic

    cls = _scheduler_class(spec.scheduler)
    params = _init_params(cls)
    config = dict(spec.config)
    # Reset every sigma flag the class has: the pipeline's config may come from another sampler.
    for flag in _SCHEDULE_FLAGS.values():
        if flag in params:
            config[flag] = False
    if schedule != "Uniform":
        flag = _SCHEDULE_FLAGS[schedule]
        if flag not in params:
            raise ValueError(f"{base} has no {schedule} schedule in diffusers; use Uniform")
        config[flag] = True
    return ResolvedSampler(base, schedule, spec.scheduler, config)


def make_scheduler(name: str, base_config: Any, *, schedule_type: str | None = None) -> Any:
    """A diffusers scheduler for an A1111 sampler name, built from the pipeline's scheduler config.

    ``base_config`` is the pipeline's scheduler, its ``.config``, or a plain dict; its model
    settings (betas, prediction type, timestep spacing, ...) carry over, keys the new class does
    not take are dropped. Use as ``pipe.scheduler = make_scheduler("Euler a", pipe.scheduler)``.
    """
    resolved = resolve_sampler(name, schedule_type)
    cls = _scheduler_class(resolved.scheduler_class)
    config = getattr(base_config, "config", base_config)
    params = _init_params(cls)
    kept = {k: v for k, v in dict(config).items() if k in params}
    return cls.from_config({**kept, **resolved.config})
