"""The benchmark suite: ``python -m benchmarks`` (see ``benchmarks/suite.py``).

The single-purpose scripts beside it still run on their own: ``python benchmarks/bench_hot_path.py``.
"""
