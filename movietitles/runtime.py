"""What the CPU and TensorFlow run with: CPU model and vector extensions, oneDNN, threads.

Recorded beside every feature cache (see `movietitles.features.cache`) and printed by the
benchmarks, so that a figure or an embedding can be traced to the kernels that made it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The CPU flags that decide which kernels oneDNN and Eigen can use.
VECTOR_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def _cpuinfo() -> dict[str, str]:
    """The first processor's entry of /proc/cpuinfo ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_vector_flags() -> list[str]:
    flags = set(_cpuinfo().get("flags", "").split())
    return [f for f in VECTOR_FLAGS if f in flags]


def onednn_enabled() -> bool | None:
    """Whether this process's TensorFlow runs oneDNN kernels (None when it cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def runtime_info() -> dict:
    """The settings that can change an embedding in its last bits, and the CPU they ran on."""
    import tensorflow as tf

    info = {
        "tensorflow": tf.__version__,
        "onednn": onednn_enabled(),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_vector_flags(),
    }
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):  # oneDNN's own ISA cap (e.g. AVX2 on an AVX-512 CPU)
        info["ONEDNN_MAX_CPU_ISA"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    return info
