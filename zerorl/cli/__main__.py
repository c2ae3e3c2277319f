"""``python -m zerorl.cli``: the ``zerorl`` command."""

from zerorl.cli import app

app()
