"""Emotion knowledge: the 32 EmpatheticDialogues labels with stable ids, Plutchik opposites (EmPO Table 6),
polarity groups (MIME / ReflectDiffu), arousal groups (ECG-LoRA logging) and label → VAD from the NRC VAD lexicon.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

from empathkit.errors import DataError, ResourceMissing

# Stable ids: the order of the MoEL/MIME/CEM/KEMP `emo_map`, so emotion ids match those codebases' checkpoints.
EMOTIONS: tuple[str, ...] = (
    "surprised", "excited", "annoyed", "proud", "angry", "sad", "grateful", "lonely",
    "impressed", "afraid", "disgusted", "confident", "terrified", "hopeful", "anxious", "disappointed",
    "joyful", "prepared", "guilty", "furious", "nostalgic", "jealous", "anticipating", "embarrassed",
    "content", "devastated", "sentimental", "caring", "trusting", "ashamed", "apprehensive", "faithful",
)
EMOTION_TO_ID = {e: i for i, e in enumerate(EMOTIONS)}
NUM_EMOTIONS = len(EMOTIONS)

# EmPO Table 6 ("wheel" = Plutchik's wheel, "dyads" = Plutchik's dyads, "" = the EmPO authors' own proposal).
PLUTCHIK_OPPOSITE: dict[str, str] = {
    "afraid": "angry", "angry": "afraid", "sad": "joyful", "grateful": "disgusted", "surprised": "anticipating",
    "trusting": "disgusted", "disgusted": "trusting", "anticipating": "surprised", "content": "anxious",
    "apprehensive": "annoyed", "joyful": "sad", "proud": "ashamed", "prepared": "anxious", "ashamed": "proud",
    "guilty": "proud", "nostalgic": "hopeful", "anxious": "content", "hopeful": "nostalgic",
    "sentimental": "apprehensive", "jealous": "faithful", "embarrassed": "confident", "excited": "devastated",
    "annoyed": "apprehensive", "lonely": "caring", "faithful": "jealous", "terrified": "furious",
    "confident": "embarrassed", "furious": "terrified", "disappointed": "impressed", "caring": "lonely",
    "impressed": "disappointed", "devastated": "excited",
}

# MIME (Majumder et al. 2020) emotion grouping, reused by ReflectDiffu's emotion mimicry: 15 positive, 17 negative.
POSITIVE_EMOTIONS: frozenset[str] = frozenset({
    "surprised", "excited", "proud", "grateful", "impressed", "hopeful", "confident", "anticipating",
    "joyful", "nostalgic", "prepared", "content", "caring", "trusting", "faithful",
})
NEGATIVE_EMOTIONS: frozenset[str] = frozenset(EMOTIONS) - POSITIVE_EMOTIONS

# Fallback arousal grouping (used when no NRC VAD lexicon is configured): labels whose NRC VAD v2.1 arousal > 0.3.
# With a lexicon, :func:`arousal_group` computes it from the lexicon instead.
_HIGH_AROUSAL_FALLBACK: frozenset[str] = frozenset({
    "surprised", "excited", "angry", "afraid", "terrified", "anxious", "furious", "jealous", "embarrassed",
    "devastated", "disgusted", "annoyed", "apprehensive", "joyful",
})


def emotion_id(label: str) -> int:
    try:
        return EMOTION_TO_ID[label]
    except KeyError:
        raise DataError(f"unknown emotion '{label}'; expected one of the 32 ED labels: {', '.join(EMOTIONS)}",
                        field="emotion") from None


def normalise_emotion(label: str) -> str:
    """Case/space-insensitive label normalisation; raises on an unknown label."""
    lab = label.strip().lower()
    emotion_id(lab)
    return lab


def opposite(label: str) -> str:
    return PLUTCHIK_OPPOSITE[normalise_emotion(label)]


def polarity(label: str) -> str:
    return "positive" if normalise_emotion(label) in POSITIVE_EMOTIONS else "negative"


def arousal_group(label: str, vad: dict[str, tuple[float, float, float]] | None = None, threshold: float = 0.3) -> str:
    """'high' or 'low' arousal. With a VAD table (v2.1 scale, [-1, 1]) the label's own arousal decides."""
    lab = normalise_emotion(label)
    if vad is not None and lab in vad:
        return "high" if vad[lab][1] > threshold else "low"
    return "high" if lab in _HIGH_AROUSAL_FALLBACK else "low"


def gradient_group(label: str) -> str:
    """The three groups ECG-LoRA logs LoRA gradient norms by: 'negative-high', 'positive-high', 'subtle'."""
    if arousal_group(label) == "high":
        return f"{polarity(label)}-high"
    return "subtle"


@functools.lru_cache(maxsize=4)
def load_vad_lexicon(path: str | Path) -> dict[str, tuple[float, float, float]]:
    """Read an NRC VAD lexicon (v2.1 ``term\tvalence\tarousal\tdominance`` in [-1, 1], or v1 in [0, 1])."""
    p = Path(path)
    if not p.is_file():
        raise ResourceMissing(f"NRC VAD lexicon not found at {p} (configure lexicons.vad or EMPATHKIT_DATA)")
    out: dict[str, tuple[float, float, float]] = {}
    with p.open(encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if not header or len(header) < 4:
            raise DataError("expected a header 'term<TAB>valence<TAB>arousal<TAB>dominance'", file=str(p), line=1)
        for lineno, row in enumerate(reader, start=2):
            if len(row) < 4:
                raise DataError(f"expected 4 tab-separated columns, got {len(row)}", file=str(p), line=lineno)
            try:
                out[row[0].lower()] = (float(row[1]), float(row[2]), float(row[3]))
            except ValueError:
                raise DataError("non-numeric score", file=str(p), line=lineno, field="valence/arousal/dominance") from None
    return out


def emotion_vad(label: str, lexicon: dict[str, tuple[float, float, float]]) -> tuple[float, float, float]:
    """Valence/arousal/dominance of an ED label from a loaded NRC VAD lexicon (the label word's own entry)."""
    lab = normalise_emotion(label)
    if lab not in lexicon:
        raise ResourceMissing(f"emotion '{lab}' has no entry in the VAD lexicon")
    return lexicon[lab]


def default_vad_path(root: str | Path | None = None) -> Path:
    from empathkit.paths import data_root

    return data_root(root) / "nrc_vad" / "v2.1" / "NRC-VAD-Lexicon-v2.1.txt"
