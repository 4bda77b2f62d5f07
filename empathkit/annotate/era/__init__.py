"""ERA, the Emotion Reason Annotator: ``model.py`` (BERT + semantic composition + CRF), ``train.py`` (training on an
annotated file, early stopping, the card). The trained ERA lives in the cache: :func:`default_era_path`."""

from __future__ import annotations

from pathlib import Path


def default_era_path() -> Path:
    """``cache_dir()/annotate/era`` — where ``empathkit annotate --train-era`` saves ERA (with ``card.md``)."""
    from empathkit.paths import cache_dir

    return cache_dir() / "annotate" / "era"


def load_era(path: str | Path | None = None):
    """The trained ERA (``path`` or the default one); raises ResourceMissing naming how to train it."""
    from empathkit.annotate.era.model import ERA

    return ERA.load(path or default_era_path())
