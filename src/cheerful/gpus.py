"""GPUs: how many this machine has, and which one each worker process may see.

``cf.processes(gpus="all" | n)`` and ``cheerful worker --gpus all|n`` run one worker (one
slot) per GPU; each sees only its own device, through ``CUDA_VISIBLE_DEVICES`` set before
its tasks run (CUDA reads it when a library first initializes it, so a task's
``torch.cuda.device_count()`` is 1 and its device is ``cuda:0``). The GPUs are those
``nvidia-smi`` lists (narrowed by a ``CUDA_VISIBLE_DEVICES`` the caller set already);
asking for GPUs where there are none, or more than there are, is a clear error before
anything starts.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from .errors import ConfigError

__all__ = ["GPU_FAMILIES", "VISIBLE", "detect_gpus", "gpu_devices", "has_gpus"]

GPU_FAMILIES = ("p2", "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "g3", "g3s", "g4dn", "g4ad",
                "g5", "g5g", "g6", "g6e", "gr6")  # fmt: skip
"""EC2 instance families with NVIDIA GPUs (their workers run one slot per GPU)."""

VISIBLE = "CUDA_VISIBLE_DEVICES"
"""The variable that tells CUDA which devices a process sees."""
SMI_TIMEOUT_S = 20.0
"""Longest wait for ``nvidia-smi`` (it can be slow on a busy machine)."""


def detect_gpus() -> list[str]:
    """The GPUs of this machine, as ``CUDA_VISIBLE_DEVICES`` names them ([] if none)."""
    given = os.environ.get(VISIBLE)
    if given is not None and given.strip() not in ("", "all"):
        return [d.strip() for d in given.split(",") if d.strip() and d.strip() != "-1"]
    import subprocess  # only here: a map without GPUs never runs a program

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=SMI_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip().isdigit()]


def gpu_devices(gpus: Any) -> list[str] | None:
    """The devices to give one each to the workers of ``gpus=`` ("all", a count, "auto":
    all if there are any, or None: no GPU assignment). Raises ConfigError if they are not
    there."""
    if gpus is None:
        return None
    if gpus == "auto":
        return detect_gpus() or None
    if gpus != "all" and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1):
        raise ConfigError(f"gpus must be 'all', 'auto' or a positive whole number, not {gpus!r}")
    found = detect_gpus()
    if not found:
        raise ConfigError(
            f"gpus={gpus!r}, but this machine has no GPU that nvidia-smi lists (is the NVIDIA "
            "driver installed? on a fleet, choose a GPU instance type such as g5.xlarge)"
        )
    if gpus == "all":
        return found
    if gpus > len(found):
        raise ConfigError(f"gpus={gpus}, but this machine has {len(found)}: {', '.join(found)}")
    return found[:gpus]


def has_gpus(instance_type: str) -> bool:
    """True for an EC2 instance type with NVIDIA GPUs (``g5.xlarge``, ``p4d.24xlarge``)."""
    return instance_type.split(".", 1)[0] in GPU_FAMILIES
