"""empathkit: train, evaluate and serve empathetic dialogue models.

One data layer (:mod:`empathkit.data`), one model layer (:mod:`empathkit.models`), methods registered in
:mod:`empathkit.methods`, metrics registered in :mod:`empathkit.metrics`, and a thin CLI (:mod:`empathkit.cli`).
"""

__version__ = "0.1.0"

from empathkit.types import Dialogue, Example, Prediction, Turn  # noqa: E402,F401
