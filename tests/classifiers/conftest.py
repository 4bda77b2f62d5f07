"""Fixtures shared by the classifier tests."""

from __future__ import annotations

import pytest

from empathkit.classifiers import _LOADED, KINDS


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """An empty ``EMPATHKIT_CACHE``, no classifier folder overrides in the environment, no loaded classifiers."""
    monkeypatch.setenv("EMPATHKIT_CACHE", str(tmp_path / "cache"))
    for k in list(KINDS):
        monkeypatch.delenv("EMPATHKIT_CLASSIFIER_" + k.replace("-", "_").upper(), raising=False)
    _LOADED.clear()
    yield tmp_path / "cache"
    _LOADED.clear()
