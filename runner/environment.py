"""The software and hardware a run trains on, recorded with the run (``environment_json``).

A run's numbers are bit-for-bit the same when its spec is trained again on the same
environment, and only then: another CPU (its vector unit picks other kernels, which sum in
another order), another torch, numpy or tokenizers build, another thread count or the batched
trainer can change the floats from some step on, and grokking's slow dynamics can carry such a
difference into a different step or regime at a size near the CDS. Recording what each run
trained on lets a reader who gets other numbers see whether the environment differs.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runner.tasks.base import ClassificationData

#: Packages whose build can change a run's floats (tokenizers: the trained vocabulary of text
#: tasks; transformers: the HF models' kernels).
PACKAGES = ("torch", "numpy", "tokenizers", "transformers")


@functools.cache  # read once per process: every run's start asks
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return cpu_model()
    return device.type


def training_environment(device: torch.device, trainer: str) -> dict[str, Any]:
    """What a run is about to train on: ``trainer`` ('sequential', or 'batched (K runs)'), the
    device and its name, the CPU, torch's CPU vector unit and thread count, and the versions of
    Python, :data:`PACKAGES` (and CUDA, on a GPU). Only what changes numbers: no host name."""
    environment: dict[str, Any] = {
        "trainer": trainer,
        "device": device.type,
        "device_name": _device_name(device),
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "os": sys.platform,
    }
    environment.update({package: _version(package) for package in PACKAGES})
    if device.type == "cuda":
        environment["cuda"] = torch.version.cuda or ""
    return environment


def data_sha256(data: ClassificationData) -> str:
    """sha256 (hex) of what the run is fed: its training and test arrays (token ids or pairs,
    masks, labels), each with its name, dtype and shape. Equal on two machines only when the
    data file, the subset and, for text, the vocabulary are: a WordPiece vocabulary trained on
    another machine can number some tokens differently (:mod:`runner.tokenization`)."""
    digest = hashlib.sha256()
    arrays = {
        **{f"train.{k}": v for k, v in data.train_features.items()},
        "train.labels": data.train_labels,
        **{f"test.{k}": v for k, v in data.test_features.items()},
        "test.labels": data.test_labels,
    }
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
