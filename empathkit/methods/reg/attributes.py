"""REG's four emotion attributes (Sec. 3.2.1): Sentiment, Emotional Presence, Interpretation, Exploration, each
Low / Mid / High.

- **Sentiment** = the VADER compound score (``vaderSentiment``) of a text, binned with VADER's own conventional
  thresholds: ``compound >= 0.05`` → high (positive), ``compound <= -0.05`` → low (negative), else mid (neutral).
  Hutto & Gilbert's reference implementation documents exactly these cut-offs for positive / neutral / negative,
  so the bins mean what VADER's users already read them as (REG does not state its own thresholds).
- **Emotional Presence / Interpretation / Exploration** = the EPITOME ``epitome-er`` / ``epitome-ip`` /
  ``epitome-ex`` classifiers' levels 0 / 1 / 2 = low / mid / high (``empathkit.classifiers.load_classifier``; train
  them with ``empathkit classifiers train epitome-er epitome-ip epitome-ex``, about a minute each on 2 CPUs).

Which text the attributes describe (``source``):

- ``context`` (the default): Sentiment = VADER of the whole context (turns joined by spaces); EPITOME on the pair
  (the turn before the last one, or ``""``, → the last context turn), i.e. the last turn read as a reply to the one it
  answers (the metrics' "seeker = the turn answered" convention, ``metrics/epitome.py``). This is the paper's Eq. 1
  (attributes of the context X) and the only choice available for a *query* at inference, when no response exists;
  computing the corpus the same way makes query and exemplar attributes comparable like for like.
- ``response``: Sentiment = VADER of the response; EPITOME on (last context turn, response) — EPITOME's native input
  (seeker post, response). The attributes of a gold response, which is what Fig. 2 describes for G1 conditioning.
- ``both``: Sentiment = VADER of context and response together; EPITOME as for ``response`` (Fig. 2's "from the gold
  response and dialogue context").

Queries are always described with the ``context`` rule (nothing else is known at inference).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Literal, Mapping, Sequence

from empathkit.errors import DataError, ResourceMissing

log = logging.getLogger(__name__)

ATTRIBUTES = ("sentiment", "presence", "interpretation", "exploration")
LEVELS = ("low", "mid", "high")
EPITOME_KINDS = {"presence": "epitome-er", "interpretation": "epitome-ip", "exploration": "epitome-ex"}
SOURCES = ("context", "response", "both")
Source = Literal["context", "response", "both"]

VADER_POSITIVE = 0.05  # compound >= this: positive (VADER's documented convention)
VADER_NEGATIVE = -0.05  # compound <= this: negative

Item = "tuple[Sequence[str], str]"  # (context turns oldest first, response; "" for a query)


def sentiment_level(compound: float) -> str:
    """VADER compound → ``low`` (≤ −0.05) / ``mid`` / ``high`` (≥ 0.05)."""
    if compound >= VADER_POSITIVE:
        return "high"
    if compound <= VADER_NEGATIVE:
        return "low"
    return "mid"


@functools.lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(text: str) -> float:
    return float(_vader().polarity_scores(text)["compound"])


def epitome_level(label: Any) -> str:
    """A classifier label ``0/1/2`` (string or int) → ``low/mid/high``."""
    try:
        i = int(label)
    except (TypeError, ValueError):
        raise DataError(f"EPITOME classifier returned label {label!r}; expected 0, 1 or 2") from None
    if i not in (0, 1, 2):
        raise DataError(f"EPITOME classifier returned level {i}; expected 0, 1 or 2")
    return LEVELS[i]


def load_epitome_classifiers(sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """attribute → classifier for the three EPITOME attributes; one :class:`ResourceMissing` line naming every
    untrained kind and the command that trains it. ``sources``: kind (or attribute) → Hub id / folder."""
    from empathkit.classifiers import load_classifier

    sources = dict(sources or {})
    out, missing = {}, []
    for attr, kind in EPITOME_KINDS.items():
        clf = load_classifier(kind, sources.get(kind) or sources.get(attr), required=False)
        if clf is None:
            missing.append(kind)
        out[attr] = clf
    if missing:
        raise ResourceMissing(
            f"REG emotion attributes need the EPITOME classifier(s) {', '.join(missing)}, not trained: run "
            f"'empathkit classifiers train {' '.join(missing)}' (about a minute each, docs/classifiers.md), "
            f"or retrieve with --mode semantic")
    return out


def attribute_texts(context: Sequence[str], response: str, source: str) -> tuple[str, tuple[str, str]]:
    """The VADER text and the EPITOME (seeker, text) pair of one item under ``source``."""
    ctx = [t for t in context]
    if source == "context":
        if not ctx:
            raise DataError("an empty context has no attributes")
        return " ".join(ctx), (ctx[-2] if len(ctx) > 1 else "", ctx[-1])
    if source in ("response", "both"):
        seeker = ctx[-1] if ctx else ""
        vader_text = response if source == "response" else " ".join(ctx + [response])
        return vader_text, (seeker, response)
    raise DataError(f"unknown attribute source {source!r}; expected one of {list(SOURCES)}", field="attributes.source")


class AttributeTagger:
    """Computes the four attributes of (context, response) items. ``classifiers``: attribute → object with
    ``predict(pairs, batch_size=…) -> [(label, prob)]`` (tests pass fakes); default: the trained EPITOME kinds."""

    def __init__(self, classifiers: Mapping[str, Any] | None = None, source: str = "context",
                 classifier_sources: Mapping[str, str] | None = None):
        if source not in SOURCES:
            raise DataError(f"unknown attribute source {source!r}; expected one of {list(SOURCES)}",
                            field="attributes.source")
        self.source = source
        self._classifiers = dict(classifiers) if classifiers is not None else None
        self._classifier_sources = classifier_sources

    @property
    def classifiers(self) -> dict[str, Any]:
        if self._classifiers is None:
            self._classifiers = load_epitome_classifiers(self._classifier_sources)
        return self._classifiers

    def tag(self, items: Sequence[tuple[Sequence[str], str]], source: str | None = None,
            batch_size: int = 64) -> list[dict[str, Any]]:
        """One dict per item: the four levels plus ``sentiment_compound``."""
        src = source or self.source
        texts = [attribute_texts(c, r, src) for c, r in items]
        out = []
        for vt, _ in texts:
            comp = vader_compound(vt)
            out.append({"sentiment": sentiment_level(comp), "sentiment_compound": round(comp, 4)})
        pairs = [p for _, p in texts]
        if pairs:
            for attr in EPITOME_KINDS:
                preds = self.classifiers[attr].predict(pairs, batch_size=batch_size)
                for row, (label, _prob) in zip(out, preds):
                    row[attr] = epitome_level(label)
        return out

    def tag_queries(self, contexts: Sequence[Sequence[str]], batch_size: int = 64) -> list[dict[str, Any]]:
        """Attributes of query contexts: always the ``context`` rule (no response exists at inference)."""
        return self.tag([(c, "") for c in contexts], source="context", batch_size=batch_size)


def compute_attributes(items: Sequence[tuple[Sequence[str], str]], tagger: AttributeTagger | None = None,
                       source: str = "context", chunk: int = 512, progress: bool = True) -> list[dict[str, Any]]:
    """Attributes of many items in chunks of ``chunk`` with a progress bar (the EPITOME classifiers share one encoder
    and its embedding memo, so each text is embedded once for the three of them)."""
    from tqdm.auto import tqdm

    tagger = tagger or AttributeTagger(source=source)
    out: list[dict[str, Any]] = []
    bar = tqdm(total=len(items), desc=f"emotion attributes ({tagger.source})", unit="ex", disable=not progress)
    for i in range(0, len(items), chunk):
        part = items[i:i + chunk]
        out.extend(tagger.tag(part))
        bar.update(len(part))
    bar.close()
    return out
