"""The offline reason tagger: NRC EmoLex + NRC Emotion Intensity cue words, negation-aware, multi-word cues.

A token is ``<em>`` when it is an emotion cue:

1. **single words** (lower-cased, then lemmatised — below): a word of the Emotion Intensity lexicon whose highest
   intensity over anger, disgust, fear, joy, sadness and surprise is ≥ ``threshold`` (0.45: keeps "nervous", fear 0.469); a word only in EmoLex
   when it is associated with ≥ 2 of those six. Trust and anticipation are left out: in both lexicons they mark
   many neutral context nouns (friend, mother, school, time), which are not the speaker's emotion;
2. **multi-word cues**: a short handwritten list of emotional phrases the lexicons cannot hold (EmoLex and the
   intensity lexicon have no multi-word entries), e.g. "fed up", "passed away", "over the moon", "can't wait";
   hyphenated tokens ("over-the-moon", "heart-broken") are matched whole, as a phrase, then by their parts;
3. **negation**: a negator ("not", "n't", "never", "no", "didnt" …) up to ``negation_window`` tokens before a cue
   joins the cue's span with the words between ("not very happy" → three ``<em>``), as the polarity the speaker
   expresses lives in the whole span. The window never crosses punctuation.

Tokens without a letter (punctuation, numbers, emoticons) are never ``<em>``.

Lemmatisation: NLTK's WordNet data is not installed here and cannot be downloaded, so the WordNet lemmatiser does
not work offline. We lemmatise by lexicon-checked suffix rules (hand-written): a word not in the lexicon is looked
up again without its inflection (-s/-es/-ies, -ed/-ied, -ing, doubled consonants, -ly/-ily, -er/-est, -ness) and
the first candidate that is a lexicon word is used ("cried" → "cry", "worried" → "worry", "sadly" → "sad").
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

from empathkit.errors import DataError, ResourceMissing

CORE_EMOTIONS = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
NEGATORS = frozenset({"not", "n't", "no", "never", "nothing", "nobody", "none", "neither", "nor", "hardly", "barely",
                      "cannot", "without", "nt", "didnt", "dont", "doesnt", "wasnt", "isnt", "cant", "couldnt",
                      "wouldnt", "wont", "arent", "werent", "havent", "hasnt", "hadnt", "shouldnt", "aint"})
# our own short list of emotional phrases (written for empathkit, not taken from a lexicon)
PHRASES = ("fed up", "freaked out", "stressed out", "burned out", "burnt out", "worn out", "let down", "broke my heart",
           "broken heart", "heart broken", "looking forward", "can't wait", "cannot wait", "cant wait", "over the moon",
           "on edge", "at ease", "in tears", "on cloud nine", "passed away", "lost my job", "got fired", "laid off",
           "broke up", "pissed off", "grossed out", "creeped out", "blown away", "sick of", "tired of", "fell apart",
           "mixed feelings", "butterflies in my stomach", "bummed out", "scared to death", "sick to my stomach",
           "on top of the world", "a nervous wreck", "lost it", "lump in my throat")
_SUFFIXES = (("ies", "y"), ("ied", "y"), ("ily", "y"), ("ier", "y"), ("iest", "y"), ("iness", "y"), ("ness", ""),
             ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"), ("ly", ""), ("er", ""),
             ("er", "e"), ("est", ""), ("est", "e"))


def load_emolex(path: str | Path) -> dict[str, frozenset[str]]:
    """EmoLex word level (``word<TAB>emotion<TAB>0|1``, CRLF) → word → the emotions it is associated with."""
    p = Path(path)
    if not p.is_file():
        raise ResourceMissing(f"NRC EmoLex not found at {p} (put nrc_emolex/ under the data root or pass emolex=)")
    out: dict[str, set[str]] = {}
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\r\n").split("\t")
            if not line.strip():
                continue
            if len(parts) != 3 or parts[2] not in ("0", "1"):
                raise DataError("expected 'word<TAB>emotion<TAB>0|1'", file=str(p), line=lineno)
            if parts[2] == "1":
                out.setdefault(parts[0].lower(), set()).add(parts[1])
    return {w: frozenset(e) for w, e in out.items()}


def load_intensity(path: str | Path) -> dict[str, dict[str, float]]:
    """NRC Emotion Intensity → word → {emotion: score}. (``metrics.resources`` keeps only the max over emotions;
    we need the per-emotion scores to leave trust and anticipation out.)"""
    p = Path(path)
    if not p.is_file():
        raise ResourceMissing(f"NRC Emotion Intensity lexicon not found at {p} (set intensity= or the data root)")
    out: dict[str, dict[str, float]] = {}
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\r\n").split("\t")
            if not line.strip() or (lineno == 1 and parts[0].lower() == "word"):
                continue
            try:
                out.setdefault(parts[0].lower(), {})[parts[1]] = float(parts[2])
            except (IndexError, ValueError):
                raise DataError("expected 'word<TAB>emotion<TAB>score'", file=str(p), line=lineno) from None
    return out


@functools.lru_cache(maxsize=2)
def cue_words(emolex: str, intensity: str, threshold: float = 0.45) -> frozenset[str]:
    """The single-word cues (see the module doc), computed once per process."""
    inten = load_intensity(intensity)
    cues = {w for w, sc in inten.items() if max((sc.get(e, 0.0) for e in CORE_EMOTIONS), default=0.0) >= threshold}
    for w, emos in load_emolex(emolex).items():
        if w not in inten and len(emos & set(CORE_EMOTIONS)) >= 2:
            cues.add(w)
    return frozenset(cues)


def lemma_candidates(word: str) -> list[str]:
    """``word`` and its suffix-stripped forms, most specific first (see the module doc)."""
    out = [word]
    for suf, rep in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= (2 if rep else 3):
            stem = word[: -len(suf)]
            out.append(stem + rep)
            if rep == "" and len(stem) >= 4 and stem[-1] == stem[-2]:  # stopped → stop, sadder → sad
                out.append(stem[:-1])
    return out


def _has_letter(tok: str) -> bool:
    return any(c.isalpha() for c in tok)


class LexiconTagger:
    name = "lexicon"
    version = "1"

    def __init__(self, emolex: str | Path | None = None, intensity: str | Path | None = None, *,
                 threshold: float = 0.45, negation_window: int = 2, data_root: str | None = None):
        from empathkit.annotate.base import words
        from empathkit.metrics.resources import Resources

        res = Resources({"data_root": data_root, "intensity_lexicon": str(intensity) if intensity else None})
        self.emolex_path = Path(emolex) if emolex else res.data_root() / "nrc_emolex" / "NRC-Emotion-Lexicon-Wordlevel-v0.92.txt"
        self.intensity_path = res.intensity_path()
        self.cues = cue_words(str(self.emolex_path), str(self.intensity_path), threshold)
        self.threshold, self.negation_window = threshold, negation_window
        phrases = {tuple(t.lower() for t in words(p)) for p in PHRASES} | {tuple(p.split()) for p in PHRASES}
        self.phrases = sorted(phrases, key=len, reverse=True)

    @property
    def annotator(self) -> str:
        return f"{self.name}@{self.version}"

    def is_cue(self, token: str) -> bool:
        w = token.lower()
        if not _has_letter(w):
            return False
        if any(c in self.cues for c in lemma_candidates(w)):
            return True
        if "-" in w:
            parts = [p for p in w.split("-") if p]
            return tuple(parts) in self.phrases or any(self.is_cue(p) for p in parts)
        return False

    def tag_tokens(self, tokens: Sequence[str]) -> list[str]:
        low = [t.lower() for t in tokens]
        em = [self.is_cue(t) for t in tokens]
        for i in range(len(low)):  # multi-word cues
            for ph in self.phrases:
                if tuple(low[i:i + len(ph)]) == ph:
                    for k in range(i, i + len(ph)):
                        em[k] = True
                    break
        for i, on in enumerate(list(em)):  # negation joins the span of the cue it precedes
            if not on or (i > 0 and em[i - 1]):
                continue
            for j in range(i - 1, max(-1, i - 2 - self.negation_window), -1):
                if not _has_letter(low[j]):
                    break
                if low[j] in NEGATORS:
                    for k in range(j, i):
                        em[k] = True
                    break
        return ["<em>" if e else "<noem>" for e in em]

    def tag(self, tokens: Sequence[Sequence[str]]) -> list[list[str]]:
        return [self.tag_tokens(t) for t in tokens]
