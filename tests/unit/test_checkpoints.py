import json
import random

import pytest

from workers.ml.checkpoints import (
    MARKER_NAME,
    Checkpoint,
    CheckpointStore,
    hash_and_sync_files,
    is_complete,
    read_rng_state,
    restore_rng_state,
    rng_state,
    write_rng_state,
)


def _writer(content: str, name: str = "weights.bin"):
    def write(folder):
        (folder / name).write_text(content)
        (folder / "sub").mkdir()
        (folder / "sub" / "extra.txt").write_text(content.upper())

    return write


def _entries(root):
    return sorted(p.name for p in root.iterdir())


# ---- save / latest -----------------------------------------------------------------------------


def test_it_saves_into_a_zero_padded_step_folder_with_a_marker(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")

    path = store.save(42, _writer("hello"))

    assert path == tmp_path / "ckpt" / "step-00000042"
    assert (path / "weights.bin").read_text() == "hello"
    assert (path / "sub" / "extra.txt").read_text() == "HELLO"
    marker = json.loads((path / MARKER_NAME).read_text())
    assert marker["step"] == 42
    assert set(marker["files"]) == {"weights.bin", "sub/extra.txt"}
    assert _entries(tmp_path / "ckpt") == ["step-00000042"]


def test_it_returns_the_newest_complete_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(5, _writer("five"))
    store.save(120, _writer("one twenty"))
    store.save(30, _writer("thirty"))

    latest = store.latest()

    assert latest == Checkpoint(step=120, path=tmp_path / "step-00000120")
    assert [cp.step for cp in store.checkpoints()] == [120, 30, 5]


def test_it_has_no_checkpoint_in_an_empty_or_missing_root(tmp_path):
    assert CheckpointStore(tmp_path / "missing").latest() is None
    assert CheckpointStore(tmp_path).latest() is None


def test_checkpoint_is_frozen(tmp_path):
    cp = Checkpoint(step=1, path=tmp_path)
    with pytest.raises(AttributeError):
        cp.step = 2


def test_it_ignores_a_half_written_temp_folder(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(1, _writer("one"))
    half = tmp_path / ".tmp-step-00000009-abc123"
    half.mkdir()
    (half / "weights.bin").write_text("partial")

    assert store.latest().step == 1


def test_it_ignores_a_checkpoint_without_completion_marker(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(1, _writer("one"))
    store.save(2, _writer("two"))
    (tmp_path / "step-00000002" / MARKER_NAME).unlink()

    assert store.latest().step == 1


def test_it_ignores_a_checkpoint_with_a_corrupt_marker(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(1, _writer("one"))
    store.save(2, _writer("two"))
    (tmp_path / "step-00000002" / MARKER_NAME).write_text('{"step": 2, "files": {"weights.b')

    assert store.latest().step == 1


def test_it_ignores_a_marker_that_names_another_step(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(1, _writer("one"))
    (tmp_path / "step-00000001").rename(tmp_path / "step-00000007")

    assert store.latest() is None


def test_it_ignores_a_marker_that_points_outside_the_folder(tmp_path):
    store = CheckpointStore(tmp_path)
    path = store.save(1, _writer("one"))
    (tmp_path / "outside.txt").write_text("x")
    marker = json.loads((path / MARKER_NAME).read_text())
    marker["files"]["../outside.txt"] = marker["files"]["weights.bin"]
    (path / MARKER_NAME).write_text(json.dumps(marker))

    assert store.latest() is None


def test_a_file_modified_after_save_makes_that_checkpoint_invalid(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(1, _writer("one"))
    store.save(2, _writer("two"))
    (tmp_path / "step-00000002" / "sub" / "extra.txt").write_text("TAMPERED")

    assert store.latest().step == 1


def test_a_file_removed_after_save_makes_that_checkpoint_invalid(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(1, _writer("one"))
    store.save(2, _writer("two"))
    (tmp_path / "step-00000002" / "weights.bin").unlink()

    assert store.latest().step == 1


def test_a_folder_marked_by_another_writer_is_verified_the_same_way(tmp_path):
    # Trainer checkpoints (workers/ml/finetune) are written by Trainer and marked afterwards
    # with these two functions: the marker format is this module's.
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    _writer("three")(folder)
    files = hash_and_sync_files(folder)
    assert set(files) == {"weights.bin", "sub/extra.txt"}
    (folder / MARKER_NAME).write_text(json.dumps({"step": 3, "files": files}))

    assert is_complete(Checkpoint(step=3, path=folder))
    assert not is_complete(Checkpoint(step=4, path=folder))
    (folder / "weights.bin").write_text("torn")
    assert not is_complete(Checkpoint(step=3, path=folder))


def test_a_failing_writer_leaves_no_folder_behind(tmp_path):
    store = CheckpointStore(tmp_path)

    def write(folder):
        (folder / "weights.bin").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        store.save(3, write)

    assert _entries(tmp_path) == []
    assert store.latest() is None


def test_a_writer_may_not_write_the_marker_itself(tmp_path):
    store = CheckpointStore(tmp_path)

    with pytest.raises(ValueError, match="COMPLETE"):
        store.save(3, lambda folder: (folder / MARKER_NAME).write_text("{}"))

    assert _entries(tmp_path) == []


def test_saving_a_step_again_replaces_the_earlier_checkpoint(tmp_path):
    # A retry after a crash that renamed the folder but died before recording progress.
    store = CheckpointStore(tmp_path)
    store.save(4, _writer("first attempt", name="old-only.bin"))

    store.save(4, _writer("second attempt"))

    latest = store.latest()
    assert latest.step == 4
    assert (latest.path / "weights.bin").read_text() == "second attempt"
    assert not (latest.path / "old-only.bin").exists()
    assert _entries(tmp_path) == ["step-00000004"]


def test_saving_over_a_corrupt_folder_of_the_same_step_makes_it_valid(tmp_path):
    store = CheckpointStore(tmp_path)
    stale = tmp_path / "step-00000004"
    stale.mkdir()
    (stale / "weights.bin").write_text("no marker")

    store.save(4, _writer("fresh"))

    assert store.latest().step == 4
    assert (stale / "weights.bin").read_text() == "fresh"


# ---- prune -------------------------------------------------------------------------------------


def test_prune_keeps_the_newest_complete_checkpoints_and_removes_temp_folders(tmp_path):
    store = CheckpointStore(tmp_path)
    for step in (1, 2, 3, 4):
        store.save(step, _writer(f"step {step}"))
    (tmp_path / ".tmp-step-00000005-dead").mkdir()
    (tmp_path / ".tmp-replaced-00000002-dead").mkdir()

    store.prune(keep=2)

    assert _entries(tmp_path) == ["step-00000003", "step-00000004"]
    assert store.latest().step == 4


def test_prune_counts_only_valid_checkpoints_as_kept(tmp_path):
    store = CheckpointStore(tmp_path)
    for step in (1, 2, 3):
        store.save(step, _writer(f"step {step}"))
    (tmp_path / "step-00000003" / MARKER_NAME).write_text("not json")

    store.prune(keep=2)

    assert _entries(tmp_path) == ["step-00000001", "step-00000002"]


def test_prune_refuses_to_keep_nothing(tmp_path):
    with pytest.raises(ValueError):
        CheckpointStore(tmp_path).prune(keep=0)


def test_prune_on_a_missing_root_does_nothing(tmp_path):
    CheckpointStore(tmp_path / "missing").prune()
    assert not (tmp_path / "missing").exists()


# ---- JSON state --------------------------------------------------------------------------------


def test_json_state_round_trips_through_the_newest_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path)
    assert store.load_json_state() is None

    store.save_json_state(10, {"rows_done": 10, "cursor": "a"})
    store.save_json_state(20, {"rows_done": 20, "cursor": "b"})

    assert store.load_json_state() == (20, {"rows_done": 20, "cursor": "b"})


def test_json_state_skips_a_corrupt_newest_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save_json_state(10, {"rows_done": 10})
    path = store.save_json_state(20, {"rows_done": 20})
    (path / "state.json").write_text('{"rows_done": 2')

    assert store.load_json_state() == (10, {"rows_done": 10})


def test_json_state_that_cannot_be_serialized_writes_nothing(tmp_path):
    store = CheckpointStore(tmp_path)
    with pytest.raises(TypeError):
        store.save_json_state(1, {"bad": object()})
    assert _entries(tmp_path) == []


# ---- RNG state ---------------------------------------------------------------------------------


@pytest.fixture
def preserved_rng():
    # These tests reseed the global generators; give other tests back the state they had.
    state = rng_state()
    yield
    restore_rng_state(state)


def _draw():
    import numpy as np
    import torch

    return (
        [random.random() for _ in range(3)],
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
        torch.randint(0, 1000, (3,)).tolist(),
    )


def test_rng_state_round_trip_in_memory_reproduces_the_same_numbers(preserved_rng):
    state = rng_state()
    first = _draw()
    restore_rng_state(state)
    assert _draw() == first


def test_rng_state_round_trip_through_a_checkpoint_reproduces_the_same_numbers(
    tmp_path, preserved_rng
):
    import numpy as np

    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.standard_normal()  # and in numpy's
    store = CheckpointStore(tmp_path)
    store.save(7, lambda folder: write_rng_state(folder))
    first = _draw()

    random.seed(123)
    np.random.seed(123)
    restore_rng_state(read_rng_state(store.latest().path))

    assert _draw() == first


def test_rng_state_is_stored_as_json_and_safetensors_only(tmp_path):
    write_rng_state(tmp_path)

    assert _entries(tmp_path) == ["rng.json", "rng.safetensors"]
    plain = json.loads((tmp_path / "rng.json").read_text())
    assert set(plain) == {"python", "numpy"}
    from safetensors.torch import load_file

    assert "torch_cpu" in load_file(str(tmp_path / "rng.safetensors"))
