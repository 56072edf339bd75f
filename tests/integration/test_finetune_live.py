"""LoRA fine-tunes through the real worker: loss, artifacts, merge, and kill -9 resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from apps.datasets import services as dataset_services
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.jobs.selectors import job_metric_series
from apps.jobs.states import JobState
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows
from tests.harness import ROOT, database_url_for, free_port
from workers.ml.finetune import complete_checkpoints

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QA = [
    (f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.")
    for a in range(1, 7)
    for b in range(1, 5)
]
PARAMS = {
    "max_steps": 40,
    "logging_steps": 1,
    "save_steps": 8,
    "warmup_steps": 0,
    "learning_rate": 0.03,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_seq_length": 64,
    "seed": 7,
    "eval_fraction": 0.0,
}


def wait_for(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def approved_version(project, people, tmp_path):
    path = tmp_path / "sums.csv"
    path.write_text("question,answer\n" + "".join(f"{q},{a}\n" for q, a in QA), encoding="utf-8")
    version, _ = dataset_services.dataset_import(
        project=project,
        actor=people["member"],
        upload_path=path,
        filename=path.name,
        name="Sums",
        license="CC0-1.0",
        source="generated in tests",
        validation_fraction=0.2,
        seed=1,
    )
    dataset_services.version_set_pii_report(version=version, report={"counts": {}})
    version.refresh_from_db()
    dataset_services.version_decide(
        version=version,
        actor=people["reviewer"],
        role="reviewer",
        approve=True,
        comment="synthetic arithmetic",
    )
    return version


@pytest.fixture
def tiny(db):
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-llama")


def launch(project, member, version, tiny, **extra) -> Job:
    params = {"base_model_id": tiny.pk, "dataset_version_id": version.pk, **PARAMS, **extra}
    return job_services.job_create(
        project=project, kind="finetune.lora", params=params, created_by=member
    )


def finished(job: Job) -> bool:
    job.refresh_from_db()
    return job.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def losses(job: Job) -> list[tuple[int, float]]:
    return [
        (e.data["step"], e.data["values"]["loss"])
        for e in job.events.filter(kind="metrics").order_by("seq")
        if "loss" in e.data["values"]
    ]


def adapter_tensors(adapter: Adapter) -> dict:
    from safetensors.torch import load_file

    return load_file(Path(settings.MEDIA_ROOT) / adapter.storage_path / "adapter_model.safetensors")


def test_a_tiny_fine_tune_learns_and_its_adapter_works_in_a_plain_script(
    processes, project, people, approved_version, tiny
):
    processes.worker()
    job = launch(project, people["member"], approved_version, tiny)
    wait_for(lambda: finished(job), what="fine-tune to finish")
    assert job.state == JobState.SUCCEEDED, job.error + processes.log("worker")[-3000:]

    curve = losses(job)
    assert len(curve) >= 10
    first, last = [v for _, v in curve[:5]], [v for _, v in curve[-5:]]
    assert sum(last) / 5 < sum(first) / 5 - 0.3, curve  # the loss goes down
    adapter = Adapter.objects.get(job=job)
    folder = Path(settings.MEDIA_ROOT) / adapter.storage_path
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in folder.iterdir()
    }
    assert "eval_loss_before" in adapter.metrics and "eval_loss_after" in adapter.metrics
    assert adapter.metrics["eval_loss_after"] < adapter.metrics["eval_loss_before"]

    # Loaded by PeftModel.from_pretrained in a separate, plain script, the adapter changes the output.
    tiny.refresh_from_db()
    script = textwrap.dedent(f"""
        import json, torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from peft import PeftModel
        tok = AutoTokenizer.from_pretrained({tiny.path!r})
        ids = tok("What is 3 plus 4?", return_tensors="pt").input_ids
        base = AutoModelForCausalLM.from_pretrained({tiny.path!r})
        with torch.no_grad():
            before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, {str(folder)!r})
        with torch.no_grad():
            after = tuned(ids).logits
        print(json.dumps({{"max_diff": float((after - before).abs().max())}}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["max_diff"] > 1e-3

    # Merge and export gives the same logits as base + adapter.
    merge = job_services.job_create(
        project=project,
        kind="adapter.merge",
        params={"adapter_id": adapter.pk},
        created_by=people["member"],
    )
    wait_for(lambda: finished(merge), what="merge to finish")
    assert merge.state == JobState.SUCCEEDED, merge.error
    adapter.refresh_from_db()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.path)
    ids = tok("What is 5 plus 2?", return_tensors="pt").input_ids
    merged = AutoModelForCausalLM.from_pretrained(Path(settings.MEDIA_ROOT) / adapter.merged_path)
    combined = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny.path), str(folder)
    )
    with torch.no_grad():
        diff = (merged(ids).logits - combined(ids).logits).abs().max().item()
    assert diff < 1e-4


def test_kill_9_mid_training_resumes_from_the_checkpoint_and_matches_an_uninterrupted_run(
    processes, project, people, approved_version, tiny
):
    processes.scheduler(interval=0.3)
    processes.worker("worker-a")
    job = launch(project, people["member"], approved_version, tiny, max_steps=600, save_steps=25)
    checkpoints = Path(settings.JOBS_DIR) / str(job.pk) / "run" / "checkpoints"

    def past_a_checkpoint():
        done = complete_checkpoints(checkpoints)
        steps = [e.data["step"] for e in job.events.filter(kind="metrics")]
        if finished(job):
            raise AssertionError(
                f"the job ended ({job.state}) before the worker could be killed mid-training"
            )
        return done and steps and done[0].step + 1 < max(steps) < 550 and done[0].step

    kept = wait_for(past_a_checkpoint, what="a complete checkpoint and two more steps")
    processes.kill("worker-a", signal.SIGKILL)
    at_kill = complete_checkpoints(checkpoints)[0].step
    assert at_kill >= kept
    processes.worker("worker-b")
    wait_for(lambda: finished(job), timeout=180, what="resumed fine-tune")
    assert job.state == JobState.SUCCEEDED and job.attempt >= 2, job.error

    # Training steps of the second attempt (loss points) all come after the checkpoint it resumed.
    resumed_steps = [
        e.data["step"]
        for e in job.events.filter(kind="metrics", attempt=2)
        if "loss" in e.data["values"]
    ]
    assert resumed_steps and min(resumed_steps) == at_kill + 1, (at_kill, resumed_steps[:5])
    assert job.result["resumed_from_step"] == at_kill

    # The same seed, uninterrupted, gives the same adapter.
    again = launch(project, people["member"], approved_version, tiny, max_steps=600, save_steps=25)
    wait_for(lambda: finished(again), what="uninterrupted run")
    assert again.state == JobState.SUCCEEDED, again.error
    a, b = (
        adapter_tensors(Adapter.objects.get(job=job)),
        adapter_tensors(Adapter.objects.get(job=again)),
    )
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst
    # The run's mean loss counts every step once, the resumed run's too (Trainer's own
    # train_loss would average the second attempt's steps only), and the chart has each step once.
    assert job.result["metrics"]["train_loss"] == pytest.approx(
        again.result["metrics"]["train_loss"], rel=1e-6
    )
    assert [s for s, _ in job_metric_series(job=job)["loss"]] == list(range(1, 601))


# ------------------------------------------------------------------ the supervised platform


# Long enough that the fine-tune is still running after five processes were killed and came back
# and the GPU worker was killed and resumed (the test fails with a clear message if not).
STEPS = 900


class Platform:
    """`manage.py runplatform` (what `make run` runs) as a subprocess, with its own embedded Redis
    and var folder, against the test database."""

    def __init__(self, tmp_path: Path, env: dict[str, str]):
        self.var = tmp_path / "var"
        self.port = free_port()
        self.env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": "",  # start the embedded one, a child to kill
            "ATELIER_EMBEDDED_REDIS_PORT": str(free_port()),
            "ATELIER_VAR_DIR": str(self.var),
            **env,
        }
        self.out = tmp_path / "runplatform.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "runplatform", "--no-demo", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self.healthy, timeout=180, what="the platform to answer\n" + self.tail())

    def tail(self) -> str:
        return self.out.read_text(errors="replace")[-3000:] if self.out.exists() else ""

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return json.loads(r.read())
        except Exception:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("runplatform exited:\n" + self.tail()) from None
            return None

    def healthy(self) -> bool:
        body = self.health()
        return bool(body and "processes" in body)

    def children(self) -> dict:
        return json.loads((self.var / "supervisor.json").read_text())["children"]

    def kill(self, name: str) -> int:
        pid = self.children()[name]["pid"]
        os.killpg(pid, signal.SIGKILL)
        return pid

    def wait_back(self, name: str, old_pid: int) -> None:
        def back():
            child = self.children()[name]
            return child["state"] == "running" and child["pid"] != old_pid and self.health()

        wait_for(back, timeout=60, what=f"{name} to be started again\n{self.tail()}")

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise


def test_the_supervised_platform_outlives_kill_9_of_each_process_and_a_warm_restart(
    processes, project, people, approved_version, tiny, tmp_path, monkeypatch
):
    # This test process is not part of the platform under test (whose Redis is its own child):
    # it only creates rows, and the platform's scheduler sends them.
    monkeypatch.setattr(job_services, "_publish", lambda job_id, queue: False)
    # Leases far longer than the test: a job can only go on because the supervisor gave it back
    # (a dead worker) or the warm shutdown re-queued it, never because a lease expired.
    platform = Platform(
        tmp_path,
        {
            "DATABASE_URL": database_url_for(connection.settings_dict),
            "ATELIER_LEASE_SECONDS": "3600",
            "ATELIER_STOP_GRACE": "90",
        },
    )
    platform.start()
    try:
        job = launch(
            project, people["member"], approved_version, tiny, max_steps=STEPS, save_steps=25
        )
        checkpoints = Path(settings.JOBS_DIR) / str(job.pk) / "run" / "checkpoints"
        wait_for(lambda: complete_checkpoints(checkpoints), what="a first checkpoint")

        # Every other process killed while the fine-tune runs (one after the other, without
        # waiting in between, so the fine-tune is still running after): each comes back.
        others = ("redis", "scheduler", "worker-cpu", "signer", "web")
        killed = {name: platform.kill(name) for name in others}
        for name, pid in killed.items():
            platform.wait_back(name, pid)
        assert not finished(job), "the fine-tune ended before the GPU worker could be killed"
        health = platform.health()
        assert health["status"] == "ok"
        for name in ("redis", "scheduler", "worker-cpu", "signer", "web"):
            assert health["processes"][name]["restarts"] == 1
            assert health["processes"][name]["last_exit"]["what"] == "killed by SIGKILL"

        # The GPU worker, mid-training: the supervisor gives its job back at once.
        platform.wait_back("worker-gpu", platform.kill("worker-gpu"))
        wait_for(
            lambda: job_services.Job.objects.filter(
                pk=job.pk, attempt=2, state=JobState.RUNNING
            ).exists(),
            what="the fine-tune resumed by the restarted GPU worker",
        )
        assert "exited" in json.dumps(list(job.events.filter(kind="state").values_list("data")))
        wait_for(
            lambda: job.events.filter(kind="metrics", attempt=2).exists(),
            what="the second attempt to train",
        )

        # A warm shutdown mid-training: the job stops at a checkpoint and is queued again.
        assert not finished(job), "the fine-tune ended before the warm shutdown"
        assert platform.stop() == 0, platform.tail()
        job.refresh_from_db()
        assert job.state == JobState.QUEUED and job.attempt == 2, platform.tail()
        assert "shutting down" in job.events.filter(kind="state").last().data["message"]
        stopped_at = complete_checkpoints(checkpoints)[0].step

        platform.start()  # resumes at once: not after the hour-long lease
        wait_for(lambda: finished(job), timeout=300, what="the fine-tune to finish")
    finally:
        platform.stop()
    assert "Traceback" not in platform.out.read_text(), platform.tail()
    assert job.state == JobState.SUCCEEDED and job.attempt == 3, job.error
    assert job.result["resumed_from_step"] == stopped_at
    loss_steps = [s for s, _ in job_metric_series(job=job)["loss"]]
    assert loss_steps == list(range(1, STEPS + 1))  # no step missing or doubled

    # The same seed, uninterrupted, on a plain worker, gives the same adapter.
    monkeypatch.undo()
    processes.scheduler(interval=0.3)
    processes.worker()
    again = launch(
        project, people["member"], approved_version, tiny, max_steps=STEPS, save_steps=25
    )
    wait_for(lambda: finished(again), what="uninterrupted run")
    assert again.state == JobState.SUCCEEDED, again.error
    a = adapter_tensors(Adapter.objects.get(job=job))
    b = adapter_tensors(Adapter.objects.get(job=again))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert job.result["metrics"]["train_loss"] == pytest.approx(
        again.result["metrics"]["train_loss"], rel=1e-6
    )
