"""Test session setup.

Without a GPU, the CUDA kernels run on Numba's simulator. ``NUMBA_ENABLE_CUDASIM`` is read once,
when numba is first imported, so it is set here, before any test module imports numba, and only
when the host has no NVIDIA device node (checked without importing anything GPU-related). A value
already in the environment wins.
"""

from __future__ import annotations

import os


def _has_nvidia_gpu() -> bool:
    """A device node of the NVIDIA driver (Linux) or of WSL's GPU paravirtualisation."""
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/dxg")


if not _has_nvidia_gpu():
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
