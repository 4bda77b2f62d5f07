"""Emotion detection of dialogue contexts: the one path that serving, the terminal chat and the ECG-LoRA predictor use.

A *context* is the list of turn texts before the reply to write, oldest first, speaker and listener turns
alternating as in EmpatheticDialogues (in a chat: user, assistant, user, …; :func:`conversation_context` builds it
from OpenAI-style messages). Each context is converted with the classifier's recorded input convention
(``classifiers.data.context_inputs``: the whole context, or the last N turns for classifiers trained that way),
exactly like the held-out evaluation of the ``emotion`` classifier.

:class:`EmotionDetector` never raises: without a classifier, or when it fails, every context gets
``EmotionGuess("none", None, "none")`` (and a warning when it failed), so chat and serve keep working.

:attr:`EmotionDetector.description` says which classifier produces the guesses (read once from its folder's
``metrics.json``): name, method, whether it is the quick demo classifier (``make demo`` trains one in about a minute;
``empathkit classifiers train emotion`` replaces it), its held-out test accuracy and a one-line ``summary`` that
chat, serve and the web page show. :data:`HOW_TO_GET_ONE` is what they say when there is none.

```python
det = EmotionDetector.load()                     # the trained "emotion" classifier, or unavailable
det.detect([conversation_context(messages)])     # [EmotionGuess(label="sad", prob=0.61, source="classifier:emotion")]
detect_emotions([["I lost my job today."]])      # the same as a function
```
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

from empathkit.classifiers.data import context_inputs

log = logging.getLogger(__name__)

NONE = "none"
REQUEST = "request"
QUICK_VARIANT = "demo-quick"  # metrics.json "variant" of the quick demo classifier (classifiers/quick.py)
HOW_TO_GET_ONE = ("no emotion classifier is trained, so the detected emotion is 'none': `make demo` (or `empathkit "
                  "classifiers train emotion --demo`) trains a quick one in about a minute, `empathkit classifiers "
                  "train emotion` the full one (ED test accuracy 0.505, about 40 minutes on 2 cores)")


@dataclass(frozen=True)
class EmotionGuess:
    """The emotion of one context. ``source``: ``"classifier:<name or path>"`` (predicted), ``"none"`` (no
    classifier, or it failed: ``label`` is ``"none"`` and ``prob`` None) or ``"request"`` (forced by the caller)."""

    label: str
    prob: float | None
    source: str

    @classmethod
    def forced(cls, label: str) -> "EmotionGuess":
        """An emotion the caller chose (a request field, a chat command)."""
        return cls(label, None, REQUEST)

    @property
    def is_none(self) -> bool:
        return self.label == NONE


NO_GUESS = EmotionGuess(NONE, None, NONE)

# one lock per classifier object, shared by every detector wrapping it (the encoder's embedding memo and torch
# modules are not guaranteed thread-safe; detection is cheap next to generation, so serialising it costs little)
_LOCKS: "weakref.WeakKeyDictionary[Any, threading.Lock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _lock_for(classifier: Any) -> threading.Lock:
    if classifier is None:
        return threading.Lock()
    with _LOCKS_GUARD:
        try:
            return _LOCKS.setdefault(classifier, threading.Lock())
        except TypeError:  # not weak-referenceable or unhashable: a lock of this detector only
            return threading.Lock()


def _turns(context: Sequence[str] | str) -> list[str]:
    # a bare string is one turn (the old detect(texts) took the last user text alone), never a list of characters
    return [context] if isinstance(context, str) else [str(t) for t in context]


class EmotionDetector:
    """Thread-safe, never-raising emotion detection over any object with ``predict(texts) -> [(label, prob)]``
    (an empathkit classifier; its ``config.extra["input_turns"]`` decides how contexts become texts)."""

    def __init__(self, classifier: Any | None = None, name: str = "emotion"):
        self.classifier = classifier
        self.name = name
        self._lock = _lock_for(classifier)

    @property
    def available(self) -> bool:
        return self.classifier is not None

    @property
    def source(self) -> str:
        """The ``source`` of this detector's guesses."""
        return f"classifier:{self.name}" if self.available else NONE

    @classmethod
    def load(cls, name: str = "emotion", source: str | None = None) -> "EmotionDetector":
        """``empathkit.classifiers.load_classifier(name, source)`` (a kind; ``source``: a classifier folder or a Hub
        id, else ``$EMPATHKIT_CLASSIFIER_<KIND>``, else the trained cache folder). Never raises: a missing or broken
        classifier gives an unavailable detector that reports "none"."""
        from empathkit.errors import ResourceMissing

        label = source or name
        try:
            from empathkit.classifiers import load_classifier

            clf = load_classifier(name, source)
        except ResourceMissing as e:  # not trained / not installed: the normal state of a fresh checkout
            log.info("emotion classifier %r not available (%s); detected emotion will be 'none'", label, e)
            clf = None
        except Exception as e:  # noqa: BLE001 — unknown kind, unreadable folder, import error: chat goes on
            log.warning("emotion classifier %r could not be loaded (%s: %s); detected emotion will be 'none'",
                        label, type(e).__name__, e)
            clf = None
        return cls(clf, label)

    def detect(self, contexts: Sequence[Sequence[str]]) -> list[EmotionGuess]:
        """One guess per context (turn texts, oldest first)."""
        contexts = list(contexts)
        if not contexts:
            return []
        if self.classifier is None:
            return [NO_GUESS] * len(contexts)
        try:
            inputs = context_inputs(self.classifier, [_turns(c) for c in contexts])
            with self._lock:
                preds = list(self.classifier.predict(inputs))
            if len(preds) != len(contexts):
                raise ValueError(f"{len(preds)} predictions for {len(contexts)} inputs")
            src = self.source
            return [EmotionGuess(str(label), float(prob), src) for label, prob in preds]
        except Exception as e:  # noqa: BLE001 — a broken classifier must not take the chat down
            log.warning("emotion classifier %r failed (%s: %s); reporting 'none'", self.name, type(e).__name__, e)
            return [NO_GUESS] * len(contexts)

    @property
    def description(self) -> dict[str, Any] | None:
        """Which classifier this is (None when there is none); see :func:`describe_classifier`."""
        if self.classifier is None:
            return None
        if not hasattr(self, "_description"):
            self._description = describe_classifier(self.classifier, self.name)
        return self._description

    def __repr__(self) -> str:
        return f"EmotionDetector(name={self.name!r}, available={self.available})"


_METHODS = {"frozen-minilm+logreg": "frozen MiniLM + logistic regression", "frozen-minilm+mlp": "frozen MiniLM + MLP"}


def describe_classifier(classifier: Any, name: str = "emotion") -> dict[str, Any]:
    """``{"name", "method", "variant" ("demo-quick" or None), "test_accuracy", "test_examples", "folder",
    "short", "summary"}`` of a classifier (``short``: "quick demo classifier" or "classifier '<name>'"), from the
    ``metrics.json`` of its folder when it has one (a stand-in object without a folder gets its name only). Never
    raises."""
    import json
    from pathlib import Path

    out: dict[str, Any] = {"name": name, "method": None, "variant": None, "test_accuracy": None,
                           "test_examples": None, "folder": None}
    path = getattr(classifier, "path", None)
    try:
        if path is not None and (Path(path) / "metrics.json").is_file():
            m = json.loads((Path(path) / "metrics.json").read_text(encoding="utf-8"))
            test = m.get("test") or {}
            out.update(method=m.get("method"), variant=m.get("variant"), test_accuracy=test.get("accuracy"),
                       test_examples=((m.get("data") or {}).get("sizes") or {}).get("test"), folder=str(path))
    except (OSError, ValueError, AttributeError) as e:
        log.info("could not read the metrics of classifier %r (%s)", name, e)
    method = out["method"] or ""
    if method.startswith("finetune") or "fine-tuned" in method:
        how = "fine-tuned MiniLM" + (" ensemble" if method.startswith("ensemble") else "")
    else:
        how = _METHODS.get(method, method)
    what = "quick demo classifier" if out["variant"] == QUICK_VARIANT else f"classifier '{name}'"
    acc = out["test_accuracy"]
    details = [d for d in (how, f"ED test accuracy {acc:.2f}" if isinstance(acc, float) else "") if d]
    out["short"] = what
    out["summary"] = what + (f" ({', '.join(details)})" if details else "")
    if out["variant"] == QUICK_VARIANT:
        out["summary"] += "; `empathkit classifiers train emotion` trains the full one"
    return out


def conversation_context(messages: Sequence[dict]) -> list[str]:
    """The context turn texts of an OpenAI-style message list, as the ``emotion`` classifier was trained on: the
    user and assistant contents in order (ED speaker and listener turns); system / developer / tool messages and
    empty contents are dropped. Content given as text parts (``[{"type": "text", "text": …}]``) is joined."""
    out = []
    for m in messages:
        if m.get("role") not in ("user", "assistant"):
            continue
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
        if isinstance(content, str) and content.strip():
            out.append(content)
    return out


def detect_emotions(contexts: Sequence[Sequence[str]], source: str | None = None) -> list[EmotionGuess]:
    """The function form: :meth:`EmotionDetector.detect` with the ``emotion`` classifier (``source``: a classifier
    folder or Hub id, as in ``load_classifier``); "none" guesses when it is unavailable. The classifier is loaded
    once per process (``load_classifier`` caches it)."""
    return EmotionDetector.load("emotion", source).detect(contexts)


__all__ = ["HOW_TO_GET_ONE", "NONE", "NO_GUESS", "QUICK_VARIANT", "EmotionGuess", "EmotionDetector",
           "conversation_context", "describe_classifier", "detect_emotions"]
