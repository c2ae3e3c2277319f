"""Evaluation (avg@K, pass@k, maj@K), reflection analysis, step moments and training reports.

See docs/evaluation.md. ``runner.evaluate`` is shared by the trainer and ``zerorl eval``.
"""
