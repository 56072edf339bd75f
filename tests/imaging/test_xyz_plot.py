"""A1111's X/Y/Z plot: axes as A1111 reads them, cells, the labelled grid, and the image.xyz job
on the tiny random pipeline (tests/imaging/test_xyz_digits.py runs it on the digits demo)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageChops

from workers.imaging.xyz import (
    XyzError,
    check_axes,
    draw_grid,
    fix_seeds,
    grid_params,
    parse_axis,
    plan_cells,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning"),
]


# ------------------------------------------------------------------------------------ axes


@pytest.mark.parametrize(
    ("field", "text", "values"),
    [
        ("seed", "1, 2, 3", (1, 2, 3)),
        ("steps", "10-20 (+5)", (10, 15, 20)),
        ("steps", "1-5, 30", (1, 2, 3, 4, 5, 30)),
        ("steps", "10-40 [4]", (10, 20, 30, 40)),
        ("cfg_scale", "5-7 (+0.5)", (5.0, 5.5, 6.0, 6.5, 7.0)),
        ("cfg_scale", "0.1-0.3 (+0.1)", (0.1, 0.2, 0.3)),
        ("cfg_scale", "1-2 [3]", (1.0, 1.5, 2.0)),
        ("sampler", "Euler a, DDIM", ("Euler a", "DDIM")),
        ("prompt_sr", 'cat, "dog, big", 猫', ("cat", "dog, big", "猫")),
    ],
)
def test_values_are_read_as_a1111_reads_them(field, text, values):
    assert parse_axis(field, text).values == values


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("steps", "0, 5", "Steps: 0 is outside 1..150"),
        ("cfg_scale", "7, lots", "CFG Scale: 'lots' is not a number"),
        ("seed", " , ", "Seed: no values"),
        ("prompt_sr", "cat", "give the text to search for first"),
        ("steps", "1-101", "at most 100"),
        ("colour", "red", "unknown axis"),
    ],
)
def test_bad_values_are_refused_with_a_reason(field, text, message):
    with pytest.raises(XyzError, match=message):
        parse_axis(field, text)


def test_prompt_sr_replaces_the_first_value_in_both_prompts():
    axis = parse_axis("prompt_sr", "digit 7, digit 3")
    cells = plan_cells({"prompt": "a digit 7", "negative_prompt": "no digit 7"}, [axis])
    assert [(c.settings["prompt"], c.settings["negative_prompt"]) for c in cells] == [
        ("a digit 7", "no digit 7"),
        ("a digit 3", "no digit 3"),
    ]
    with pytest.raises(XyzError, match="did not find digit 7 in prompt or negative prompt"):
        check_axes({"prompt": "a cat", "negative_prompt": ""}, [axis])


def test_a_lora_weight_axis_changes_that_tags_weight_only():
    axis = parse_axis("lora_weight", "0, 0.5, 1", lora="ink")
    settings = {"prompt": "a cat <lora:ink:0.8> <lora:paper:1>", "negative_prompt": ""}
    check_axes(settings, [axis])
    assert [c.settings["prompt"] for c in plan_cells(settings, [axis])] == [
        "a cat <lora:ink:0> <lora:paper:1>",
        "a cat <lora:ink:0.5> <lora:paper:1>",
        "a cat <lora:ink:1> <lora:paper:1>",
    ]
    with pytest.raises(XyzError, match="no <lora:wood:...> tag"):
        check_axes(settings, [parse_axis("lora_weight", "1", lora="wood")])


def test_cells_run_z_outermost_and_x_innermost():
    axes = [
        parse_axis("seed", "1, 2"),
        parse_axis("steps", "3, 4"),
        parse_axis("cfg_scale", "5, 6"),
    ]
    cells = plan_cells({"prompt": "p", "seed": 0}, axes)
    assert [c.coords for c in cells][:4] == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)]
    assert [(c.settings["seed"], c.settings["steps"], c.settings["cfg_scale"]) for c in cells][
        -1
    ] == (2, 4, 6.0)
    assert len(cells) == 8


def test_a_random_seed_is_fixed_once_for_the_whole_plot():
    picks = iter([111, 222, 333])
    settings, axes = fix_seeds(
        {"prompt": "p", "seed": -1},
        [parse_axis("cfg_scale", "3, 7")],
        pick=lambda: next(picks),
    )
    assert {c.settings["seed"] for c in plan_cells(settings, axes)} == {111}
    _, axes = fix_seeds({"seed": 5}, [parse_axis("seed", "-1, 9, -1")], pick=lambda: next(picks))
    assert axes[0].values == (222, 9, 333)


def test_too_many_combinations_are_refused():
    axes = [parse_axis("seed", "1-10"), parse_axis("steps", "1-11")]
    with pytest.raises(XyzError, match="110 combinations"):
        check_axes({"prompt": "p"}, axes)


# ------------------------------------------------------------------------------------ grid


def _images(n: int, size: int = 32) -> list[Image.Image]:
    return [
        Image.frombytes(
            "RGB", (size, size), bytes((i * 7 + k * 13) % 256 for i in range(size * size * 3))
        )
        for k in range(n)
    ]


def _inked(image: Image.Image, box) -> bool:
    """Whether the area has text on it (dark pixels on the white background)."""
    return image.crop(box).convert("L").getextrema()[0] < 128


def test_each_cell_is_its_image_enlarged_and_every_value_is_labelled():
    axes = [parse_axis("seed", "1, 2"), parse_axis("cfg_scale", "3, 7")]
    cells = plan_cells({"prompt": "p"}, axes)
    images = _images(len(cells))

    grid, layout = draw_grid(images, axes, cells)

    assert layout.zoom == 4  # 32 px images are drawn 128 px wide, nearest neighbour
    for image, box in zip(images, layout.boxes, strict=True):
        expected = image.resize((128, 128), Image.Resampling.NEAREST)
        assert ImageChops.difference(grid.crop(box), expected).getbbox() is None
    first, second, below = layout.boxes[0], layout.boxes[1], layout.boxes[2]
    assert second[0] == first[2] and below[1] == first[3]  # a 2x2 block, x across, y down
    for box in layout.boxes[:2]:  # column titles above the first row
        assert _inked(grid, (box[0], 0, box[2], box[1]))
    for box in (layout.boxes[0], layout.boxes[2]):  # row titles left of the first column
        assert _inked(grid, (0, box[1], box[0], box[3]))
    assert not _inked(grid, (0, 0, first[0], first[1]))  # the corner stays empty


def test_z_values_make_sub_grids_side_by_side_each_under_its_title():
    axes = [parse_axis("seed", "1, 2"), parse_axis("steps", "3"), parse_axis("prompt_sr", "7, 3")]
    cells = plan_cells({"prompt": "digit 7"}, axes)
    grid, layout = draw_grid(_images(len(cells), size=128), axes, cells)

    assert layout.zoom == 1
    z0, z1 = layout.boxes[0], layout.boxes[2]
    assert z1[1] == z0[1] and z1[0] > layout.boxes[1][2]  # same row, to the right
    assert _inked(grid, (z1[0], 0, z1[2], z1[1]))
    assert grid_params(axes) == {
        "Script": "X/Y/Z plot",
        "X Type": "Seed",
        "X Values": "1, 2",
        "Fixed X Values": "1, 2",
        "Y Type": "Steps",
        "Y Values": "3",
        "Z Type": "Prompt S/R",
        "Z Values": "7, 3",
    }


def test_chinese_labels_are_drawn(tmp_path):
    axes = [parse_axis("prompt_sr", "数字七, 数字三")]
    cells = plan_cells({"prompt": "数字七"}, axes)
    grid, layout = draw_grid(_images(2), axes, cells)
    assert _inked(grid, (layout.boxes[1][0], 0, layout.boxes[1][2], layout.boxes[1][1]))


# ------------------------------------------------------------------------------------ the job


@pytest.fixture
def tiny_sd(tmp_path, settings):
    from apps.models.models import BaseModel
    from apps.models.services import ensure_builtin_rows

    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-sd")


def run_job(project, member, kind, **params):
    from apps.jobs import services as job_services
    from workers.tasks.runtime import execute_job

    job = job_services.job_create(project=project, kind=kind, params=params, created_by=member)
    assert execute_job(job.pk, worker_id="test") == "succeeded", job.error
    job.refresh_from_db()
    return job


def plot_matches_single_jobs(project, member, model, **common) -> None:
    """The shared check: a 2x2 plot (seed x CFG) whose saved images equal the images of single
    image.generate jobs with the same parameters (the same infotext, the same pixels up to one
    level of rounding), and whose grid cells are those images, pixel for pixel.

    Rounding: the plot's cells run through generate_batch and a single job alone. The pipeline's
    batch-invariant arithmetic gives identical pixels on the AVX2 machines it was measured on;
    on an AVX-512 Xeon one value of one cell rounded the other way (at most 1/255). The grid is
    made from the cells' own images, so that comparison stays exact."""
    from django.conf import settings

    from apps.outputs.models import Output
    from workers.imaging.infotext import parse_infotext, read_png_parameters

    media = Path(settings.MEDIA_ROOT)
    plot = run_job(
        project,
        member,
        "image.xyz",
        model_id=model.pk,
        axes=[{"field": "seed", "values": "11, 12"}, {"field": "cfg_scale", "values": "3, 7"}],
        **common,
    )
    result = plot.result
    cells = [Output.objects.get(pk=o["output_id"]) for o in result["outputs"]]
    grid_output = Output.objects.get(pk=result["grid"]["output_id"])
    grid = Image.open(media / grid_output.file_path).convert("RGB")
    layout = grid_output.params["xyz_grid"]
    assert [(c.seed, c.params["cfg_scale"]) for c in cells] == [(11, 3), (12, 3), (11, 7), (12, 7)]

    for cell, box in zip(cells, layout["boxes"], strict=True):
        single_job = run_job(
            project,
            member,
            "image.generate",
            model_id=model.pk,
            seed=cell.seed,
            cfg_scale=cell.params["cfg_scale"],
            **common,
        )
        single = Output.objects.get(job=single_job)
        assert read_png_parameters(media / cell.file_path) == read_png_parameters(
            media / single.file_path
        )
        image = Image.open(media / cell.file_path).convert("RGB")
        alone = Image.open(media / single.file_path).convert("RGB")
        assert image.size == alone.size
        assert max(hi for _, hi in ImageChops.difference(image, alone).getextrema()) <= 1
        zoom = layout["zoom"]
        expected = image.resize((image.width * zoom, image.height * zoom), Image.Resampling.NEAREST)
        assert ImageChops.difference(grid.crop(tuple(box)), expected).getbbox() is None

    info = parse_infotext(read_png_parameters(media / grid_output.file_path))
    assert info["Script"] == "X/Y/Z plot"
    assert (info["X Type"], info["X Values"], info["Y Type"], info["Y Values"]) == (
        "Seed",
        "11, 12",
        "CFG Scale",
        "3, 7",
    )
    assert "xyz-grid" in grid_output.tags and all("xyz" in c.tags for c in cells)


@pytest.mark.django_db(transaction=True)
def test_a_2x2_plot_of_tiny_sd_images_equals_the_single_images(project, member, tiny_sd):
    plot_matches_single_jobs(
        project, member, tiny_sd, prompt="a cat", steps=2, width=32, height=32, sampler="Euler a"
    )


@pytest.mark.django_db(transaction=True)
def test_a_plot_is_checked_before_it_is_queued(project, member, tiny_sd):
    from apps.jobs import services as job_services
    from apps.jobs.models import Job

    base = {"model_id": tiny_sd.pk, "prompt": "a cat", "width": 32, "height": 32}
    cases = [
        ({"axes": [{"field": "prompt_sr", "values": "dog, bird"}]}, "axes", "did not find dog"),
        (
            {"axes": [{"field": "sampler", "values": "Euler, Warp drive"}]},
            "sampler",
            "Unknown sampler",
        ),
        ({"axes": [{"field": "steps", "values": "0-3"}]}, "axes", "outside 1..150"),
        (
            {"axes": [{"field": "seed", "values": "1"}], "batch_size": 2},
            "__all__",
            "one image per cell",
        ),
        (
            {"axes": [{"field": "prompt_sr", "values": "cat, <lora:nope:1>"}]},
            "prompt",
            "Unknown LoRA nope",
        ),
    ]
    for extra, field, message in cases:
        with pytest.raises(job_services.JobParamsError) as info:
            job_services.job_create(
                project=project, kind="image.xyz", created_by=member, params={**base, **extra}
            )
        assert message in info.value.errors[field], (extra, info.value.errors)
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_a_blocked_word_brought_in_by_prompt_sr_refuses_the_plot(project, member, tiny_sd):
    from apps.jobs import registry
    from apps.jobs import services as job_services
    from apps.jobs.models import Job

    def refuse(*, project, user, kind, params) -> dict[str, str]:
        prompts = registry.prompt_texts(kind, params)
        return {f: "blocked word" for f, text in prompts.items() if "xylophage" in text}

    registry.register_submit_check(refuse)
    try:
        with pytest.raises(job_services.JobParamsError) as info:
            job_services.job_create(
                project=project,
                kind="image.xyz",
                created_by=member,
                params={
                    "model_id": tiny_sd.pk,
                    "prompt": "a cat",
                    "axes": [{"field": "prompt_sr", "values": "cat, dog, xylophage"}],
                },
            )
    finally:
        registry.unregister_submit_check(refuse)
    assert info.value.errors == {"prompt": "blocked word"}
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_every_cell_counts_in_the_image_budget(project, member, tiny_sd):
    from apps.jobs.services import JobQuotaExceeded, job_create
    from apps.quotas.models import PlatformPolicy
    from apps.quotas.services import forget_policy

    forget_policy()
    policy = PlatformPolicy.current()
    policy.image_max_pixel_steps = 64 * 64 * 20 * 3  # three 64 px images at 20 steps
    policy.save()
    try:
        params = {"model_id": tiny_sd.pk, "prompt": "a cat", "width": 64, "height": 64, "steps": 20}
        job_create(project=project, kind="image.generate", created_by=member, params=params)
        with pytest.raises(JobQuotaExceeded, match=r"4 images of 64x64"):
            job_create(
                project=project,
                kind="image.xyz",
                created_by=member,
                params={**params, "axes": [{"field": "seed", "values": "1-4"}]},
            )
        with pytest.raises(JobQuotaExceeded, match=r"2 images of 64x64 at 40 steps"):
            job_create(
                project=project,
                kind="image.xyz",
                created_by=member,
                params={**params, "axes": [{"field": "steps", "values": "20, 40"}]},
            )
    finally:
        forget_policy()
