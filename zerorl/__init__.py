"""zerorl: zero-RL training of base language models, following Open-Reasoner-Zero."""

__version__ = "0.1.0"
