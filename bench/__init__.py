"""Benchmarks: instance families, peers and the runner (``python -m bench``); kernel roofline (``python -m bench.kernels``)."""
