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
