"""Written stand-ins for the annotation tests: a keyword reason tagger and a rule-based intent labeler."""

from __future__ import annotations

import time


class KeywordTagger:
    annotator = "kw@1"

    def __init__(self, keywords=("wonderful", "sorry", "infuriating", "frightening", "passed")):
        self.keywords = set(keywords)

    def tag(self, tokens):
        return [["<em>" if w.lower() in self.keywords else "<noem>" for w in t] for t in tokens]


class FixedIntents:
    annotator = "fixed@1"

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def label(self, texts):
        time.sleep(self.delay)
        return ["questioning" if t.rstrip().endswith("?") else "acknowledging" for t in texts]


def written_lexicon_tagger(folder, intensity: str, emolex: str):
    """A LexiconTagger over tiny lexicon files written into ``folder`` (made-up scores in the NRC formats)."""
    from empathkit.annotate.lexicon import LexiconTagger

    (folder / "int.txt").write_text(intensity)
    (folder / "emolex.txt").write_text(emolex)
    return LexiconTagger(folder / "emolex.txt", folder / "int.txt")
