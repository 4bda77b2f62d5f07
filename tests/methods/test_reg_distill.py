"""REG's distillation maths (Eq. 3–5, 7), the G1-decode cache and the exemplar-fused generators (FiD on the tiny
random T5, the system-prompt variant on the tiny random Llama)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from empathkit.errors import ConfigError
from empathkit.methods.reg.decodes import DecodeCache, pair_decoder, targets_from_cache
from empathkit.methods.reg.distill import (CandidateAugmenter, DistillConfig, JointLoss, RetrieverDistillLoss,
                                           distillation_target, joint_loss, kl_fid, kl_paper, retrieval_loss,
                                           similarity_scores)
from empathkit.methods.reg.utility import UTILITY_PRESETS, Utility, f1_tokens, rouge_l, sentence_bleu, unigram_f1
from empathkit.methods.reg.generator import (REGCausalGenerator, REGFiDGenerator, REGPromptConfig,
                                             AttributeControlConfig, attribute_tags, exemplar_emotion_vote)
from empathkit.models.generation import GenerationSettings
from empathkit.types import Controls, ExampleAnnotations, Exemplar

SAMPLED = GenerationSettings(max_new_tokens=6, batch_size=4, do_sample=True, temperature=1.0, top_p=1.0, seed=3)
CONV = [{"role": "user", "content": "My sister is visiting!"}, {"role": "assistant", "content": "Nice!"},
        {"role": "user", "content": "We will go hiking."}]
QUERY = {"sentiment": "high", "presence": "mid", "interpretation": "low", "exploration": "high",
         "sentiment_compound": 0.61}
EXEMPLARS = (
    Exemplar("d1#1", "How lovely, enjoy the hike!", ("We are going camping.",), 0.9,
             {"sentiment": "high", "presence": "high", "interpretation": "mid", "exploration": "low",
              "emotion": "joyful", "dialogue_id": "d1"}),
    Exemplar("d2#3", "That sounds like fun, where to?", ("My cousin arrives today.",), 0.5,
             {"sentiment": "high", "presence": "mid", "interpretation": "low", "exploration": "high",
              "emotion": "excited", "dialogue_id": "d2"}),
    Exemplar("d3#1", "Oh no, what happened next?", (), 0.3, {"emotion": "excited", "dialogue_id": "d3"}),
)


pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


# ============================================================================================ target and losses
def test_target_is_the_hand_softmax():
    F = torch.tensor([[0.2, 0.5, 0.1], [0.0, 0.0, 1.0]])
    tau = 0.1
    want = []
    for row in F.tolist():
        e = [math.exp(x / tau) for x in row]
        want.append([x / sum(e) for x in e])
    assert torch.allclose(distillation_target(F, tau), torch.tensor(want), atol=1e-6)
    masked = distillation_target(F, tau, torch.tensor([[True, True, False], [True, True, True]]))
    e = [math.exp(0.2 / tau), math.exp(0.5 / tau)]
    assert masked[0].tolist() == pytest.approx([e[0] / sum(e), e[1] / sum(e), 0.0], abs=1e-6)


P = torch.tensor([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]])
S = torch.tensor([[1.0, -0.5, 0.2], [0.3, 0.0, 2.0]])


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_kl_paper_is_the_literal_eq4():
    want = sum(p * math.log(p / _sigmoid(s)) for pr, sr in zip(P.tolist(), S.tolist())
               for p, s in zip(pr, sr) if p > 0) / 2
    assert kl_paper(P, S).item() == pytest.approx(want, rel=1e-5)
    assert kl_paper(P, S).item() == pytest.approx(
        torch.nn.KLDivLoss(reduction="batchmean")(torch.nn.functional.logsigmoid(S), P).item(), rel=1e-5)
    s = S.clone().requires_grad_(True)  # σ(S) is no distribution: every score is pushed up
    kl_paper(P, s).backward()
    assert (s.grad[P > 0] < 0).all()


def test_kl_fid_is_kl_to_the_tempered_softmax():
    tau_r = 0.5
    want = 0.0
    for pr, sr in zip(P.tolist(), S.tolist()):
        z = [x / tau_r for x in sr]
        lse = math.log(sum(math.exp(x) for x in z))
        want += sum(p * (math.log(p) - (x - lse)) for p, x in zip(pr, z) if p > 0)
    assert kl_fid(P, S, tau_r).item() == pytest.approx(want / 2, rel=1e-5)
    assert kl_fid(P, S, tau_r).item() == pytest.approx(
        torch.nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(S / tau_r, -1), P).item(), rel=1e-5)
    assert kl_fid(P, P.log().clamp(min=-30), 1.0).item() == pytest.approx(0.0, abs=1e-6)  # S = log P: no loss
    # a masked candidate is the same as a row without it
    mask = torch.tensor([[True, True, False]])
    p2 = torch.tensor([[0.75, 0.25, 0.0]])
    assert kl_fid(p2, S[:1], tau_r, mask).item() == pytest.approx(kl_fid(p2[:, :2], S[:1, :2], tau_r).item(), rel=1e-5)
    assert retrieval_loss("kl-fid", P, S, tau_r).item() == kl_fid(P, S, tau_r).item()
    assert retrieval_loss("kl-paper", P, S).item() == kl_paper(P, S).item()
    with pytest.raises(ConfigError, match="kl-paper"):
        retrieval_loss("kl", P, S)


def test_loss_modules_and_joint_loss():
    F = torch.tensor([[0.2, 0.5, 0.1]])
    scores = torch.tensor([[0.3, 0.1, -0.2]])
    mod = RetrieverDistillLoss("kl-fid", tau=0.1, tau_r=0.5)
    assert mod(F, scores).item() == pytest.approx(kl_fid(distillation_target(F, 0.1), scores, 0.5).item())
    q, c = torch.tensor([[1.0, 2.0]]), torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])
    assert similarity_scores(q, c).tolist() == [[1.0, 1.5]]
    a, b = torch.tensor(2.0), torch.tensor(1.0)
    assert joint_loss(a, b).item() == pytest.approx(0.2 * 2 + 0.8 * 1)
    assert JointLoss(0.5)(a, b).item() == pytest.approx(1.5)
    cfg = DistillConfig()
    assert cfg.alpha == 0.2 and cfg.retrieval_loss().loss == "kl-fid"
    with pytest.raises(ConfigError):
        RetrieverDistillLoss("nope")


# ============================================================================================ utility metrics
def test_utility_metrics_on_hand_examples():
    # ROUGE-L: LCS 3 of hyp 3 / ref 6 tokens → P 1, R 0.5, F 2/3
    assert rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    # F1: articles and punctuation go; hyp {cat, sat}, ref {cat, sat, on, mat} → P 1, R 0.5
    assert f1_tokens("The cat's hat, a mat!") == ["cat", "s", "hat", "mat"]
    assert unigram_f1("The cat sat.", "a cat sat on the mat") == pytest.approx(2 / 3)
    assert unigram_f1("", "anything") == 0.0 and unigram_f1("dog", "cat") == 0.0
    # BLEU: identical → 1; "the cat" vs "the cat sat": effective order 2, precisions 1, BP exp(1 − 3/2)
    assert sentence_bleu("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert sentence_bleu("the cat", "the cat sat") == pytest.approx(math.exp(1 - 3 / 2), abs=1e-4)
    assert sentence_bleu("", "the cat") == 0.0
    # the weighted combination, normalised; ablations are weights set to 0
    both = Utility({"rouge-l": 1.0, "f1": 1.0})
    assert both("the cat sat", "the cat sat on the mat") == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert Utility("w/o-bleu").components("a b", "a b").keys() == {"rouge-l", "f1"}
    assert UTILITY_PRESETS["rouge-l"] == {"rouge-l": 1.0, "bleu": 0.0, "f1": 0.0}
    assert Utility("rouge-l")("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    m = Utility("rouge-l").matrix([["the cat sat", "dog"]], ["the cat sat on the mat"])
    assert m.shape == (1, 2) and m[0, 1] == 0.0
    for bad in ({"meteor": 1.0}, {"bleu": -1.0}, {"bleu": 0.0}, "w/o-everything"):
        with pytest.raises(ConfigError):
            Utility(bad)


# ==================================================================================== augmentation (Eq. 5)
def _corpus(n_dialogues=100, per=10):
    return [Exemplar(f"c{d}#{t}", f"reply {d}-{t}", attributes={"dialogue_id": f"c{d}"})
            for d in range(n_dialogues) for t in range(per)]


def test_augmentation_rate_and_reproducibility():
    corpus = _corpus()
    cands = corpus[:5]  # the query is in conversation c0, its candidates from c0 too
    aug = CandidateAugmenter(corpus, k=0.3, seed=7)
    replaced = total = 0
    for _ in range(4000):
        out, flags = aug(cands, "c0")
        replaced += sum(flags)
        total += len(flags)
        for o, f, c in zip(out, flags, cands):
            assert (o is c) != f
            if f:
                assert o.attributes["dialogue_id"] != "c0"  # never the query's own conversation
        assert len({o.id for o in out}) == len(out)  # no duplicate passages
    assert replaced / total == pytest.approx(0.3, abs=0.015)  # 20k draws: SD ≈ 0.003

    def run(seed):
        a = CandidateAugmenter(corpus, k=0.3, seed=seed)
        return [[e.id for e in a(cands, "c0")[0]] for _ in range(50)]

    assert run(7) == run(7) and run(7) != run(8)
    same, flags = CandidateAugmenter(corpus, k=0.0, seed=1)(cands, "c0")
    assert same == cands and not any(flags)
    lonely = [Exemplar("q#1", "only", attributes={"dialogue_id": "q"})]  # nothing outside the query's conversation
    assert CandidateAugmenter(lonely, k=1.0)(lonely, "q") == (lonely, [False])
    ids = CandidateAugmenter(["a#1", "b#1", "c#1"], k=1.0, seed=0).batch([["a#1"]], ["a"])[0]
    assert ids[0][0] in {"b#1", "c#1"}  # plain string ids: conversation = the part before '#'


# ============================================================================================ G1-decode cache
def test_decode_cache_resumes(tmp_path):
    settings = SAMPLED.model_dump()
    pairs = [(f"q{i}", f"e{j}") for i in range(3) for j in range(3)]
    calls = []

    def decode(chunk):
        calls.append(list(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the second batch
        return [f"{q}+{e}" for q, e in chunk]

    cache = DecodeCache.open(tmp_path, g1="runs/g1", settings=settings, passages="reg-fid-v1")
    with pytest.raises(KeyboardInterrupt):
        cache.fill(pairs, decode, batch_size=4)
    assert len(cache) == 4
    with cache.path.open("a", encoding="utf-8") as f:
        f.write('{"query": "q9", "exem')  # a torn line from a crash mid-write
    again = DecodeCache.open(tmp_path, g1="runs/g1", settings=settings, passages="reg-fid-v1")
    assert again.path == cache.path and len(again) == 4
    calls.clear()
    got = again.fill(pairs + [("q0", "e0")], lambda chunk: calls.append(list(chunk)) or [f"{q}+{e}" for q, e in chunk],
                     batch_size=4)
    assert [p for c in calls for p in c] == pairs[4:]  # only what was missing
    assert got[("q2", "e1")] == "q2+e1" and len(got) == len(pairs)
    rows = [json.loads(line) for line in again.path.read_text().splitlines()]
    assert "cache_key" in rows[0] and len(rows) == 1 + len(pairs)
    assert DecodeCache.open(tmp_path, g1="runs/g1", settings=settings, passages="reg-fid-v1").get("q1", "e2") == "q1+e2"
    other = DecodeCache.open(tmp_path, g1="runs/g1", settings=settings | {"seed": 1}, passages="reg-fid-v1")
    assert other.path != cache.path and len(other) == 0  # other decoding settings: another file
    other.path.write_text(cache.path.read_text())
    with pytest.raises(ConfigError, match="another G1 run"):
        DecodeCache.open(tmp_path, g1="runs/g1", settings=settings | {"seed": 1}, passages="reg-fid-v1")
    P = targets_from_cache(again, ["q0"], [["e0", "e1"]], ["q0+e0"], Utility("f1"), tau=0.1)
    assert P.shape == (1, 2) and P[0, 0] > P[0, 1]


# ================================================================================================ generators
def test_attribute_tags_and_emotion_vote():
    assert attribute_tags(QUERY) == "[sentiment=high] [presence=mid] [interpretation=low] [exploration=high]"
    assert attribute_tags({"exploration": "low", "emotion": "sad", "sentiment": 0.123}) == \
        "[sentiment=0.12] [exploration=low]"
    assert attribute_tags(None) == ""
    assert exemplar_emotion_vote(EXEMPLARS) == "joyful"  # 0.9 vs 0.5 + 0.3
    assert exemplar_emotion_vote(EXEMPLARS[1:]) == "excited"
    flat = [dataclasses.replace(e, score=0.0) for e in EXEMPLARS]
    assert exemplar_emotion_vote(flat) == "excited"  # no scores: a plain majority
    tie = [dataclasses.replace(EXEMPLARS[1], score=0.4), dataclasses.replace(EXEMPLARS[0], score=0.4)]
    assert exemplar_emotion_vote(tie) == "excited"  # a tie: the earlier exemplar
    assert exemplar_emotion_vote([Exemplar("x", "no label", score=1.0)]) is None


@pytest.fixture(scope="module")
def t5():
    from empathkit.models.backbones import cached_backbone

    return cached_backbone("tiny-random-t5")


@pytest.fixture(scope="module")
def reg_fid(t5):
    from empathkit.methods.seq2seq import Seq2SeqConfig

    return REGFiDGenerator(*t5, Seq2SeqConfig(backbone="tiny-random-t5", fusion="fid", max_exemplars=2))


@pytest.fixture(scope="module")
def examples():
    from empathkit.data.protocols import to_examples
    from empathkit.testing import make_dialogues

    return to_examples(make_dialogues(), "every-listener")[:2]


def test_fid_passages_carry_the_attribute_prefix(reg_fid, t5):
    from empathkit.methods.seq2seq import FiDGenerator, Seq2SeqConfig

    src = reg_fid.source(CONV, Controls(), None)
    ps = reg_fid.passages(src, Controls(exemplars=EXEMPLARS, attributes=QUERY))
    assert ps == [f"{attribute_tags(QUERY)}\nExemplar {attribute_tags(EXEMPLARS[0].attributes)}: "
                  f"{EXEMPLARS[0].response}\n{src}",
                  f"{attribute_tags(QUERY)}\nExemplar {attribute_tags(EXEMPLARS[1].attributes)}: "
                  f"{EXEMPLARS[1].response}\n{src}"]
    assert reg_fid.passages(src, Controls(attributes=QUERY)) == [f"{attribute_tags(QUERY)}\n{src}"]  # G1, Eq. 2
    cfg = Seq2SeqConfig(backbone="tiny-random-t5", fusion="fid", max_exemplars=2)
    off = REGFiDGenerator(*t5, cfg, AttributeControlConfig(attribute_tags=False, exemplar_tags=False))
    ctrl = Controls(exemplars=EXEMPLARS, attributes=QUERY)
    assert off.passages(src, ctrl) == FiDGenerator(*t5, cfg).passages(src, ctrl)  # w/o EA = plain FiD
    ctx = REGFiDGenerator(*t5, cfg, AttributeControlConfig(exemplar_context=True))
    assert ctx.passages(src, Controls(exemplars=EXEMPLARS[:1]))[0].startswith(
        f"Exemplar context: {EXEMPLARS[0].context[0]}\nExemplar [sentiment=high]")


def test_fid_fuses_generates_and_reports(reg_fid, t5, examples):
    from empathkit.models.fid import fuse

    model, tok = t5
    same = tuple(dataclasses.replace(e, response=r, attributes={"sentiment": "mid"})
                 for e, r in zip(EXEMPLARS[:2], ("so sorry to hear", "so glad to hear")))
    ctrl = Controls(exemplars=same, attributes=QUERY)
    rows = [reg_fid.passages(reg_fid.source(CONV, ctrl, None), ctrl)] * 2
    lengths = {len(tok(p)["input_ids"]) for p in rows[0]}
    assert len(lengths) == 1  # equal-length passages: the fused length is N·L
    enc, mask, _ = fuse(model, tok, rows)
    assert enc.last_hidden_state.shape == (2, 2 * lengths.pop(), model.config.d_model) and bool(mask.all())

    reply = reg_fid.chat([CONV], SAMPLED, [Controls(exemplars=EXEMPLARS, attributes=QUERY)])[0]
    assert reply.completion_tokens > 0 and reply.info["exemplars"] == ["d1#1", "d2#3"]
    assert reply.info["exemplar_scores"] == [0.9, 0.5] and reply.info["predicted_emotion"] == "joyful"
    assert reply.info["attributes"] == QUERY

    annotated = [dataclasses.replace(ex, annotations=ExampleAnnotations(attributes=QUERY, exemplars=EXEMPLARS[1:]))
                 for ex in examples]
    preds = reg_fid.generate(annotated, SAMPLED, progress=False)
    assert all(p.extra["exemplars"] == ["d2#3", "d3#1"] and p.extra["predicted_emotion"] == "excited" and
               p.extra["attributes"] == QUERY for p in preds)
    assert preds[0].settings["method"] == "reg-fid" and preds[0].settings["passages"] == "reg-fid-v1"
    tagged = reg_fid.score(annotated[:1])[0]
    plain = reg_fid.score([dataclasses.replace(annotated[0], annotations=ExampleAnnotations(exemplars=EXEMPLARS[1:]))])
    assert tagged.nll != plain[0].nll  # the attributes reach the encoder

    seen = []
    fn = REGFiDGenerator(*t5, reg_fid.config, attribute_fn=lambda convs: seen.extend(convs) or [QUERY] * len(convs))
    assert fn.chat([CONV], SAMPLED)[0].info["attributes"] == QUERY and seen == [CONV]  # chat: attributes predicted


def test_fid_with_one_passage_is_plain_seq2seq(reg_fid, t5, examples):
    from empathkit.models.fid import target_ids
    from empathkit.models.generation import generate_texts

    model, tok = t5
    ctrl = Controls(exemplars=EXEMPLARS[:1], attributes=QUERY)
    (passage,) = reg_fid.passages(reg_fid.source(CONV, ctrl, SAMPLED.max_prompt_tokens), ctrl)
    fused = reg_fid.chat([CONV], SAMPLED, [ctrl])[0]
    plain = generate_texts(model, tok, [passage], SAMPLED, progress=False)[0]
    assert fused.text == plain.text and fused.prompt_tokens == plain.prompt_tokens

    ex = dataclasses.replace(examples[0], annotations=ExampleAnnotations(attributes=QUERY, exemplars=EXEMPLARS[:1]))
    c = reg_fid.example_controls([ex])[0]
    src = reg_fid.source(reg_fid.example_conversation(ex), c, reg_fid.default_settings.max_prompt_tokens)
    (p,) = reg_fid.passages(src, c)
    labels = torch.tensor([target_ids(tok, ex.target, reg_fid.config.max_target_tokens)])
    with torch.no_grad():
        out = model(**tok([p], return_tensors="pt"), labels=labels)
    assert reg_fid.score([ex])[0].nll == pytest.approx(out.loss.item() * labels.shape[1], rel=1e-4)


def test_causal_generator_puts_exemplars_in_the_prompt(tiny_model, examples):
    model, tok = tiny_model
    gen = REGCausalGenerator(model, tok, REGPromptConfig(max_exemplars=2), system_prompt="Be kind.")
    ctrl = Controls(exemplars=EXEMPLARS, attributes=QUERY)
    sp = gen.system_prompt(ctrl)
    assert sp.startswith("Be kind.\n\n# Emotion attributes of the user's message\n" + attribute_tags(QUERY))
    assert "Exemplar 1 [sentiment=high] [presence=high]" in sp and f"Reply: {EXEMPLARS[1].response}" in sp
    assert EXEMPLARS[2].response not in sp  # K = 2
    prompt = gen.prompt(CONV, ctrl, SAMPLED)
    assert EXEMPLARS[0].response in prompt and "We will go hiking." in prompt
    own = gen.prompt([{"role": "system", "content": "Answer briefly."}] + CONV, ctrl, SAMPLED)
    assert "Answer briefly." in own and EXEMPLARS[0].response in own and "Be kind." not in own
    assert gen.system_prompt(Controls()) == "Be kind."  # nothing to add

    reply = gen.chat([CONV], SAMPLED, [ctrl])[0]
    assert reply.info["exemplars"] == ["d1#1", "d2#3"] and reply.info["exemplar_scores"] == [0.9, 0.5]
    assert reply.info["predicted_emotion"] == "joyful" and reply.prompt_tokens > 0

    annotated = [dataclasses.replace(ex, annotations=ExampleAnnotations(attributes=QUERY, exemplars=EXEMPLARS[1:]))
                 for ex in examples]
    preds = gen.generate(annotated, SAMPLED, progress=False)
    assert preds[0].extra["exemplars"] == ["d2#3", "d3#1"] and preds[0].extra["attributes"] == QUERY
    with_ex, without = gen.score(annotated[:1])[0], gen.score(examples[:1])[0]
    assert with_ex.tokens == without.tokens and with_ex.nll != without.nll


def test_pair_decoder_decodes_one_exemplar_each(reg_fid, examples, tmp_path):
    annotated = {ex.id: dataclasses.replace(ex, annotations=ExampleAnnotations(attributes=QUERY,
                                                                               exemplars=EXEMPLARS))
                 for ex in examples}
    qid = examples[0].id
    decode = pair_decoder(reg_fid, annotated, {e.id: e for e in EXEMPLARS}, SAMPLED)
    cache = DecodeCache.open(tmp_path, g1="tiny", settings=SAMPLED.model_dump())
    got = cache.fill([(qid, "d1#1"), (qid, "")], decode, batch_size=1)  # one row per decode: same sampling
    direct = reg_fid.chat([reg_fid.example_conversation(examples[0])], SAMPLED,
                          [Controls(emotion=examples[0].emotion, emotion_source="gold", exemplars=EXEMPLARS[:1],
                                       attributes=QUERY)])[0]
    assert got[(qid, "d1#1")] == direct.text
    assert len(cache) == 2
