"""Helpers for tests (ours and users'): tiny hand-written dialogues — never dataset text."""

from __future__ import annotations

from empathkit.types import Dialogue, Turn


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
