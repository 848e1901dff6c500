"""Scoring kernels behind one API: ``kernels_for(problem, backend)`` returns bound kernels.

Backends: ``reference`` (NumPy, the spec), ``cpu`` (Numba), ``gpu`` (Numba CUDA on CuPy).
``auto`` picks ``gpu`` only when a CUDA device is usable, else ``cpu``, and logs its choice;
``gpu`` without a device raises ``BackendUnavailableError``: never a silent fallback.
"""

from placement.kernels.backend import Backend, Kernels, gpu_status, kernels_for, resolve_backend

__all__ = ["Backend", "Kernels", "gpu_status", "kernels_for", "resolve_backend"]
