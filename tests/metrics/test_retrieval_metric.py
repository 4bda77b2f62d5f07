"""acc-emo-exemplar (empathkit/metrics/retrieval.py): the similarity-weighted exemplar vote against the gold emotion,
from the fields REG records (extra.exemplar_emotions / exemplar_scores) or exemplar objects; hand-computed cases."""

from __future__ import annotations

import math

import pytest

from empathkit.errors import ResourceMissing
from empathkit.metrics.base import Batch
from empathkit.metrics.retrieval import acc_emo_exemplar, weighted_vote


def test_vote_is_score_weighted_with_ties_to_the_better_exemplar():
    assert weighted_vote(["sad", "joyful", "joyful"], [0.9, 0.5, 0.5]) == "joyful"   # 1.0 > 0.9
    assert weighted_vote(["sad", "joyful", "joyful"], [0.9, 0.4, 0.4]) == "sad"      # 0.9 > 0.8
    assert weighted_vote(["sad", "joyful"], [0.5, 0.5]) == "sad"                     # tie: the earlier one
    assert weighted_vote(["sad", "joyful", "joyful"], [-1.0, 0.0, 0.0]) == "joyful"  # all weights 0: majority
    assert weighted_vote([None, "proud"], [0.9, 0.1]) == "proud" and weighted_vote([None], [1.0]) is None


def test_metric_scores_votes_against_gold_and_skips_unscorable_rows():
    b = Batch(hypotheses=["a", "b", "c"], references=["x", "y", "z"], emotions=["sad", "Joyful", None],
              extra={"exemplar_emotions": [["sad", "angry"], ["joyful", "sad", "sad"], ["sad"]],
                     "exemplar_scores": [[0.8, 0.7], [0.9, 0.3, 0.3], [1.0]]})
    r = acc_emo_exemplar(b)
    assert r.per_example["acc-emo-exemplar"][:2] == [1.0, 1.0] and math.isnan(r.per_example["acc-emo-exemplar"][2])
    assert r.aggregate["acc-emo-exemplar"] == 1.0 and r.info["n_scored"] == 2
    b2 = Batch(hypotheses=["a"], references=["x"], emotions=["sad"],
               extra={"exemplars": [[{"id": "d#1", "score": 0.2, "attributes": {"emotion": "sad"}},
                                     {"id": "e#1", "score": 0.5, "attributes": {"emotion": "afraid"}}]]})
    assert acc_emo_exemplar(b2).aggregate["acc-emo-exemplar"] == 0.0


def test_systems_without_exemplar_labels_are_skipped():
    with pytest.raises(ResourceMissing, match="exemplar_emotions"):
        acc_emo_exemplar(Batch(hypotheses=["a"], references=["x"], emotions=["sad"],
                               extra={"exemplars": [["d#1"]]}))  # ids only (FiD / plain RAG systems)


def test_reg_generator_records_what_the_metric_reads():
    from empathkit.methods.reg.generator import _reply_info
    from empathkit.types import Exemplar

    exs = [Exemplar(id="d#1", response="r", score=0.6, attributes={"emotion": "sad"}),
           Exemplar(id="e#1", response="r", score=0.5, attributes={"emotion": "proud"}),
           Exemplar(id="f#1", response="r", score=0.4, attributes={"emotion": "proud"})]
    info = _reply_info(exs, None)
    assert info["exemplar_emotions"] == ["sad", "proud", "proud"] and info["predicted_emotion"] == "proud"
    b = Batch(hypotheses=["h"], references=["r"], emotions=["proud"], extra={k: [v] for k, v in info.items()})
    assert acc_emo_exemplar(b).aggregate["acc-emo-exemplar"] == 1.0
