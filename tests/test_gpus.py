"""GPUs: detection through ``nvidia-smi`` (a fake one on PATH here: this machine has no
GPU), and the device each worker gets."""

from __future__ import annotations

import os
import stat

import pytest

import cheerful as cf
from cheerful.gpus import detect_gpus, gpu_devices


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """An ``nvidia-smi`` that lists ``count`` GPUs (set it with the returned function)."""
    script = tmp_path / "bin" / "nvidia-smi"
    script.parent.mkdir()

    def with_gpus(count: int) -> None:
        lines = "".join(f"echo {i}\n" for i in range(count))
        script.write_text(f"#!/bin/sh\n{lines}")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)

    with_gpus(0)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return with_gpus


def test_the_gpus_nvidia_smi_lists(fake_smi):
    fake_smi(4)
    assert detect_gpus() == ["0", "1", "2", "3"]
    assert gpu_devices("all") == ["0", "1", "2", "3"] and gpu_devices(2) == ["0", "1"]
    assert gpu_devices(None) is None


def test_a_caller_that_narrowed_the_devices_is_obeyed(fake_smi, monkeypatch):
    fake_smi(4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpu_devices("all") == ["2", "3"]


@pytest.mark.parametrize(
    ("count", "asked", "said"),
    [
        (0, "all", "has no GPU"),
        (2, 3, "has 2: 0, 1"),
        (2, 0, "positive whole number"),
        (2, "some", "positive whole number"),
    ],
)
def test_gpus_that_are_not_there_are_a_clear_error(fake_smi, count, asked, said):
    fake_smi(count)
    with pytest.raises(cf.ConfigError, match=said):
        gpu_devices(asked)


def test_no_nvidia_smi_means_no_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert detect_gpus() == []


def visible_device(x):
    import os
    import time

    time.sleep(0.2)  # both slots busy at once
    return os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid()


def test_a_worker_runs_one_slot_per_gpu_each_seeing_its_own(fake_smi, tmp_path):
    fake_smi(2)
    from cheerful.durable.worker import run_worker

    job = cf.submit(visible_device, range(8), backend=f"local://{tmp_path}/b", chunk_size=1)
    summary = run_worker(job.backend, job=job.id, gpus="all")
    assert summary.reason == "job settled"
    seen = job.results()
    by_process = {pid: device for device, pid in seen}
    assert sorted(set(by_process.values())) == ["0", "1"]  # each slot its own device, always
    assert len(by_process) == 2
    with pytest.raises(cf.ConfigError, match="one slot per GPU"):
        run_worker(job.backend, job=job.id, gpus="all", slots=3)


def test_gpu_instance_types_start_workers_with_a_slot_per_gpu():
    from cheerful.durable.fleet.userdata import BootSpec, render_user_data
    from cheerful.gpus import has_gpus

    assert has_gpus("g5.xlarge") and has_gpus("p4d.24xlarge") and not has_gpus("c6i.large")
    spec = BootSpec(backend="s3://b/p?region=us-east-1", wheel_key="k/w.whl", python="3.11")
    assert "--gpus auto" not in render_user_data(spec)
    assert "--gpus auto" in render_user_data(BootSpec(**{**spec.__dict__, "gpus": True}))


def device_of_worker(_):
    import time

    time.sleep(0.2)  # every worker takes a task
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_processes_run_one_worker_per_gpu_each_seeing_its_own(fake_smi):
    fake_smi(3)
    plan = cf.processes(gpus="all")
    seen = cf.map(device_of_worker, range(9), plan=plan, chunk_size=1)
    by_worker = {}
    for pid, device in seen:
        by_worker.setdefault(pid, set()).add(device)
    assert sorted(d for devices in by_worker.values() for d in devices) == ["0", "1", "2"]
    assert all(len(devices) == 1 for devices in by_worker.values())  # one device each
    assert cf.processes(gpus=2).count(16) == 2 and "gpus" in repr(plan)


def test_gpu_processes_are_refused_where_there_is_none(fake_smi):
    fake_smi(0)
    with pytest.raises(cf.ConfigError, match="has no GPU"):
        cf.processes(gpus="all")
    fake_smi(2)
    with pytest.raises(cf.ConfigError, match="one worker per GPU"):
        cf.processes(3, gpus="all")
