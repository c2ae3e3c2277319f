"""Speed and memory benchmarks of zerorl; each module runs with ``python -m benchmarks.NAME``."""
