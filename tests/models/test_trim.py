"""Sentence trimming of replies cut by the token budget (models/trim.py, NLTK Punkt boundaries)."""

from __future__ import annotations

import pytest

from empathkit.models.trim import ELLIPSIS, complete_prefix, is_complete, trim_to_sentence


@pytest.mark.parametrize("text, kept, removed", [
    ("I'm so sorry to hear that. It must be hard! What happened to", "I'm so sorry to hear that. It must be hard!",
     " What happened to"),
    ('Oh no... that is awful. Did Dr. Smith say "you will be fine." Then he', 'Oh no... that is awful. Did Dr. Smith '
     'say "you will be fine."', " Then he"),  # an abbreviation is no boundary; a closing quote ends the sentence
    ("That is great. (I hope it lasts.) Especially those", "That is great. (I hope it lasts.)", " Especially those"),
    ("Wow!! I am so happy for you", "Wow!!", " I am so happy for you"),
])
def test_a_cut_reply_ends_at_its_last_complete_sentence(text, kept, removed):
    t = trim_to_sentence(text)
    assert (t.text, t.removed, t.marked, t.changed) == (kept, removed, False, True)
    assert is_complete(t.text) and text.startswith(t.text)


def test_complete_replies_are_kept_and_a_reply_without_any_sentence_end_is_marked():
    for done in ("That sounds hard. How are you holding up?", "I see…", "Great job!\n", ""):
        t = trim_to_sentence(done)
        assert t.text == done.rstrip() and not t.changed
    t = trim_to_sentence("I am really sorry that your dog especially those")
    assert t.text == "I am really sorry that your dog especially those" + ELLIPSIS and t.marked and not t.removed
    assert complete_prefix("No end here") == "" and complete_prefix("One. Two") == "One."
