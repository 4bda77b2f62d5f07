"""Auxiliary classifiers trained by empathkit (the papers' Hub checkpoints cannot be downloaded here).

Kinds (``KINDS``): ``emotion`` (32 ED emotions from the dialogue context), ``goemotions`` (28 labels,
multi-label), ``epitome-er`` / ``epitome-ip`` / ``epitome-ex`` ((seeker post, response) → level 0/1/2) and
``intent`` (EmpatheticIntents: 8 intents + neutral). All use the embedded MiniLM encoder; ``empathkit classifiers
train`` builds them into ``cache_dir()/classifiers/<kind>/``.

``load_classifier(kind)`` returns the trained classifier (cached per process) or raises
:class:`~empathkit.errors.ResourceMissing` saying how to train it; ``required=False`` returns ``None`` instead.
Online users can point a kind at a Hugging Face id or a transformers folder: ``load_classifier(kind, source=...)``
or ``$EMPATHKIT_CLASSIFIER_<KIND>`` (``-`` → ``_``, upper case), e.g.
``EMPATHKIT_CLASSIFIER_GOEMOTIONS=SamLowe/roberta-base-go-emotions`` (loaded with ``trust_remote_code=False``).

Emotion of dialogue contexts (serving, chat, the ECG-LoRA predictor): ``detect_emotions`` / ``EmotionDetector``
(``classifiers.detect``). Module order, each importing only modules to its left: ``data``, ``core``, ``card`` →
``detect``, ``intent_align`` (on ``data``); ``ensemble``, ``hub``, ``scoring`` (on ``core``) → ``finetune`` → ``train``;
this package face on top (``train`` reads ``KINDS`` / ``classifier_dir`` from it at call time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from empathkit.classifiers.core import ClassifierConfig, TextClassifier, is_classifier_folder
from empathkit.classifiers.detect import EmotionDetector, EmotionGuess, conversation_context, detect_emotions
from empathkit.classifiers.ensemble import EnsembleClassifier  # also registers the ensemble folder layout
from empathkit.errors import ResourceMissing
from empathkit.paths import cache_dir
from empathkit.registry import Registry


@dataclass(frozen=True)
class ClassifierKind:
    name: str
    description: str
    input: str  # "text" or "pair"
    multi_label: bool = False
    hub_example: str = ""  # a Hub checkpoint of the same task (online users)


KINDS: Registry[ClassifierKind] = Registry("classifier kind")
for _k in (
    ClassifierKind("emotion", "32-way EmpatheticDialogues emotion from the dialogue context", "text"),
    ClassifierKind("goemotions", "GoEmotions 27 emotions + neutral, multi-label (EA-F1, EC)", "text", True,
                   "SamLowe/roberta-base-go-emotions"),
    ClassifierKind("epitome-er", "EPITOME emotional reactions level 0/1/2 of (seeker post, response)", "pair"),
    ClassifierKind("epitome-ip", "EPITOME interpretations level 0/1/2 of (seeker post, response)", "pair"),
    ClassifierKind("epitome-ex", "EPITOME explorations level 0/1/2 of (seeker post, response)", "pair"),
    ClassifierKind("intent", "EmpatheticIntents listener intent (8 intents + neutral)", "text"),
):
    KINDS.register(_k.name, _k)

_LOADED: dict[tuple[str, str], object] = {}


def classifier_dir(kind: str) -> Path:
    KINDS.get(kind)
    return cache_dir() / "classifiers" / kind


def is_trained(kind: str) -> bool:
    return is_classifier_folder(classifier_dir(kind))


def _env_source(kind: str) -> str | None:
    return os.environ.get("EMPATHKIT_CLASSIFIER_" + kind.replace("-", "_").upper()) or None


def load_classifier(kind: str, source: str | None = None, *, required: bool = True):
    """The classifier for ``kind``: ``source`` (a trained empathkit folder, a transformers folder or a Hub id) >
    ``$EMPATHKIT_CLASSIFIER_<KIND>`` > the trained cache folder. Cached per process."""
    spec = KINDS.get(kind)
    src = source or _env_source(kind)
    key = (kind, src or "")
    if key in _LOADED:
        return _LOADED[key]
    if src:
        p = Path(src)
        if p.is_dir() and is_classifier_folder(p):
            clf = TextClassifier.load(p)
        else:
            from empathkit.classifiers.hub import HubClassifier

            clf = HubClassifier(src, kind, input=spec.input)
    elif is_trained(kind):
        clf = TextClassifier.load(classifier_dir(kind))
    else:
        if not required:
            return None
        raise ResourceMissing(
            f"classifier '{kind}' is not trained (looked in {classifier_dir(kind)}): run "
            f"'empathkit classifiers train {kind}'" + (f", or point it at a Hub checkpoint such as "
                                                      f"{spec.hub_example} with EMPATHKIT_CLASSIFIER_"
                                                      f"{kind.replace('-', '_').upper()}" if spec.hub_example else ""))
    _LOADED[key] = clf
    return clf


def predict_context_emotion(contexts: list[list[str]], source: str | None = None, batch_size: int = 64
                            ) -> list[tuple[str, float | None]]:
    """Backwards-compatible form of :func:`detect_emotions`: ``(label, probability)`` per dialogue context (turns,
    oldest first, in the classifier's recorded input convention). Unlike ``detect_emotions`` it raises
    :class:`~empathkit.errors.ResourceMissing` when the ``emotion`` classifier is not available. ``batch_size`` is
    kept for old callers and not used (the classifier encodes in batches of 64)."""
    load_classifier("emotion", source)  # raises when missing, as before
    return [(g.label, g.prob) for g in detect_emotions(contexts, source)]


def read_metrics(kind: str) -> dict | None:
    import json

    p = classifier_dir(kind) / "metrics.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


__all__ = ["KINDS", "ClassifierKind", "ClassifierConfig", "TextClassifier", "EnsembleClassifier", "classifier_dir",
           "is_trained", "load_classifier", "predict_context_emotion", "read_metrics", "EmotionDetector", "EmotionGuess",
           "conversation_context", "detect_emotions"]
