"""REG's Table 2 switches (empathkit/methods/reg/ablations.py): each removes exactly its component (the effective
config differs from full REG in exactly the documented fields), and G1+RAG's target is G1's likelihood of the gold
response given each exemplar (Generator.score), softmaxed as Eq. 3."""

from __future__ import annotations

import types

import pytest
import torch

from empathkit.api import method_config
from empathkit.methods.reg.ablations import ABLATIONS, apply_ablations
from empathkit.testing import make_dialogues

BASE = {"method": "reg", "seed": 0, "model": {"backbone": "tiny-random-llama"},
        "train": {"stages": ["g1", "retriever", "joint"]}}

EXPECTED = {  # switch -> {dotted path of the validated config: value}; nothing else may differ
    "w/o-ea": {"model.mode": "semantic", "model.attribute_tags": False, "model.exemplar_tags": False},
    "w/o-bleu": {"retriever.distill.utility": {"rouge-l": 1.0, "bleu": 0.0, "f1": 1.0}},
    "w/o-f1": {"retriever.distill.utility": {"rouge-l": 1.0, "bleu": 1.0, "f1": 0.0}},
    "w/o-rouge-l": {"retriever.distill.utility": {"rouge-l": 0.0, "bleu": 1.0, "f1": 1.0}},
    "w/o-rca": {"retriever.distill.k": 0.0},
    "g1+rag": {"retriever.target": "g1-likelihood"},
    "scratch": {"g2.init": "base"},
}


def _flat(cfg) -> dict:
    """The effective settings: model section, retriever config, g2 config (validated), flattened."""
    mc = method_config(cfg)
    out = {}

    def walk(prefix, d):
        for k, v in d.items():
            if isinstance(v, dict) and k != "utility":
                walk(f"{prefix}{k}.", v)
            else:
                out[prefix + k] = v

    walk("model.", mc.model.model_dump(mode="json"))
    walk("retriever.", mc.train.retriever_config().model_dump(mode="json"))
    walk("g2.", mc.train.g2_config().model_dump(mode="json"))
    u = out.get("retriever.distill.utility")
    if isinstance(u, str):
        from empathkit.methods.reg.utility import utility_weights

        out["retriever.distill.utility"] = utility_weights(u)
    return out


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_each_switch_removes_exactly_its_component(name):
    base = _flat(apply_ablations(BASE))
    cfg = apply_ablations({**BASE, "train": {**BASE["train"], "ablations": [name]}})
    got = _flat(cfg)
    diff = {k: got[k] for k in got if got[k] != base.get(k)}
    assert diff == EXPECTED[name]
    assert apply_ablations(cfg) == cfg  # idempotent (the saved config reapplies to itself)


def test_switches_combine_and_have_paper_aliases():
    cfg = apply_ablations({**BASE, "train": {**BASE["train"], "ablations": ["w/o BLEU".lower(), "REG_scratch",
                                                                             "w/o-f1"]}})
    got = _flat(cfg)
    assert got["retriever.distill.utility"] == {"rouge-l": 1.0, "bleu": 0.0, "f1": 0.0} and got["g2.init"] == "base"


def test_g1_rag_target_is_softmax_of_g1_likelihood():
    """target=g1-likelihood: F = −mean NLL of the gold response with that one exemplar (G1.score), P = softmax(F/τ)."""
    from empathkit.data.protocols import to_examples
    from empathkit.methods.reg.corpus import corpus_examples
    from empathkit.methods.reg.distill import distillation_target
    from empathkit.methods.reg.index import build_index
    from empathkit.methods.reg.retriever import Distiller, RetrieverTrainConfig
    from empathkit.types import TokenScore
    from tests.methods.test_reg_retrieval import HashEncoder

    import tempfile
    from pathlib import Path

    nll = {}

    class FakeG1:
        source_dir = None

        def score(self, examples, controls=None):
            out = []
            for ex, c in zip(examples, controls):
                e = c.exemplars[0].id
                nll[(ex.id, e)] = 1.0 + (hash(e) % 7) / 3.0
                out.append(TokenScore(nll=nll[(ex.id, e)] * 4, tokens=4))
            return out

        def generate(self, *a, **k):
            raise AssertionError("g1-likelihood never decodes")

    with tempfile.TemporaryDirectory() as tmp:
        idx = build_index({"attributes": {"source": "none"}}, Path(tmp) / "i", examples=corpus_examples(make_dialogues()),
                          encoder=HashEncoder(), progress=False)
        qs = to_examples(make_dialogues(), "every-listener")[:3]
        pools = [[e.id for e in idx.exemplars if not e.id.startswith(q.dialogue_id + "#")][:3] for q in qs]
        cfg = RetrieverTrainConfig(target="g1-likelihood", pool=3, distill={"tau": 0.5, "k": 0.0})
        d = Distiller(idx, FakeG1(), qs, pools, cfg, Path(tmp), "semantic")
        assert d.fill(pools, progress=False) == 9
        F = d.utilities([0, 1, 2], pools)
        want = torch.tensor([[-nll[(q.id, e)] for e in row] for q, row in zip(qs, pools)])
        assert torch.allclose(F, want)
        assert torch.allclose(distillation_target(F, 0.5), torch.softmax(want / 0.5, dim=-1))
        assert "target" in d.cache.key  # never mixed with a decode cache


def test_wo_ea_candidate_pools_ignore_the_index_attributes():
    """w/o EA sets model.mode=semantic; stage 2 / joint pools follow the run's mode even on an attributed index."""
    import tempfile
    from pathlib import Path

    from empathkit.data.protocols import to_examples
    from empathkit.methods.reg.attributes import AttributeTagger
    from empathkit.methods.reg.corpus import corpus_examples
    from empathkit.methods.reg.index import build_index
    from empathkit.methods.reg.retriever import candidate_pools
    from tests.methods.test_reg_retrieval import HashEncoder, fake_classifiers

    with tempfile.TemporaryDirectory() as tmp:
        idx = build_index({}, Path(tmp), examples=corpus_examples(make_dialogues()), encoder=HashEncoder(),
                          tagger=AttributeTagger(fake_classifiers(), source="context"), progress=False)
    assert idx.has_attributes
    qs = to_examples(make_dialogues(), "every-listener")[:6]
    _, pools, mode = candidate_pools(idx, qs, HashEncoder(), 3, "semantic")
    want = idx.search([[t.text for t in q.context] for q in qs], k=3, mode="semantic",
                      exclude_dialogue_ids=[q.dialogue_id for q in qs])
    assert mode == "semantic" and pools == [[e.id for e in r] for r in want]
    assert candidate_pools(idx, qs, HashEncoder(), 3, None)[2] == "reg"
