"""One contract suite for every ``Generator``: each registered method (``empathkit.methods.METHODS``) plus the
Fusion-in-Decoder variant of ``seq2seq`` runs the same tests, as PEFT runs one shared suite over all its tuners.

A new method needs an entry in ``CASES`` (how to build a tiny generator, which ``Controls`` fields it reads and how
to see one of them work); :func:`test_every_registered_method_has_a_case` fails until it has one. Trained methods
train for one step on the written test dialogues, once per module. Sampling with a fixed seed gives visible words on
the random models (their greedy choice is often an end-of-turn or pad token, i.e. empty text).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from empathkit.api import load_generator
from empathkit.methods import METHODS
from empathkit.methods.base import Generator
from empathkit.models.generation import GenerationSettings, settings_dict
from empathkit.types import Controls, Exemplar, Reply

SAMPLED = GenerationSettings(max_new_tokens=8, batch_size=4, do_sample=True, temperature=1.0, top_p=1.0, seed=3)
GREEDY = GenerationSettings(max_new_tokens=8, batch_size=4)
CONVS = [[{"role": "user", "content": "I lost my keys and I feel awful."}],
         [{"role": "user", "content": "My sister is visiting!"}, {"role": "assistant", "content": "Nice!"},
          {"role": "user", "content": "We will go hiking."}]]
EXEMPLARS = (Exemplar("ex-a", "That sounds so hard, I am sorry.", ("I lost my wallet.",)),
             Exemplar("ex-b", "How lovely, enjoy your time together!", ("My brother is coming.",)))
# one value for every Controls field: a method must ignore the fields it does not read
EVERY_CONTROL = dict(emotion="sad", emotion_source="request", gate=0.25, exemplars=EXEMPLARS, intent="questioning",
                     situation="I lost my keys at the station.")
TRAIN = {"max_steps": 1, "batch_size": 4, "lr": 5e-3, "max_length": 64, "warmup_ratio": 0.0,
         "early_stopping_patience": None, "save_every": 100}
DPO = {"epochs": 1, "batch_size": 2, "gradient_accumulation_steps": 1, "train_limit": 2, "learning_rate": 1e-3,
       "save_steps": 100}


def _trained(method: str, model: dict, train: dict | None = None) -> Callable[[Path], Generator]:
    def build(root: Path) -> Generator:
        cfg = {"method": method, "seed": 0, "model": model, "train": TRAIN | (train or {}),
               "data": {"source": str(root / "dialogues.jsonl"), "protocol": "every-listener"}}
        METHODS.get(method).train(cfg, root / method, progress=False)
        return load_generator(run_dir=root / method)
    return build


def _zero_shot(method: str, model: dict) -> Callable[[Path], Generator]:
    return lambda root: load_generator(method, model_config=model)


def _prompt_changes(plain: Reply, forced: Reply) -> bool:
    return forced.prompt_tokens != plain.prompt_tokens


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], Generator]
    reads: tuple[str, ...] = ()  # the Controls fields the method reads; it must ignore the others
    probe: Controls | None = None  # a control it supports …
    works: Callable[[Reply, Reply], bool] | None = None  # … and how to see it: (reply without, reply with it)


TINY = {"backbone": "tiny-random-llama", "lora_r": 4}
# ReflectDiffu: a tiny network of its own; the seeded fake ERA and a uniform p_intent (no trained ERA / classifier)
RD_TINY = {"emb_dim": 32, "heads": 2, "enc_layers": 1, "dec_layers": 1, "ff_dim": 64, "reason_source": "hash",
           "intent_prior": "uniform", "diffusion_steps": 8, "denoiser_hidden": 32, "policy_hidden": 16}
CASES: dict[str, Case] = {
    "prompt": Case(_zero_shot("prompt", {"backbone": "tiny-random-llama"}), ("emotion",), Controls(emotion="sad"),
                   _prompt_changes),
    "sft": Case(_trained("sft", TINY | {"system_prompt": "Be kind."})),
    "ecg-lora": Case(_trained("ecg-lora", TINY | {"d_emo": 8, "unknown_emotion": "mean"}),
                     ("emotion", "emotion_source", "gate"), Controls(gate=0.0),
                     lambda plain, forced: forced.info["gate"] == 0.0 != plain.info["gate"]),
    "empo": Case(_trained("empo", TINY | {"system_prompt": "Be kind."}, {"dpo": DPO})),
    "seq2seq": Case(_zero_shot("seq2seq", {"backbone": "tiny-random-t5"}), ("emotion",), Controls(emotion="sad"),
                    _prompt_changes),
    # not a method of its own: seq2seq's fusion: fid variant (FiDGenerator), the FiD generator REG builds on
    "fid-toy": Case(_zero_shot("seq2seq", {"backbone": "tiny-random-t5", "fusion": "fid"}), ("emotion", "exemplars"),
                    Controls(exemplars=EXEMPLARS),
                    lambda plain, forced: (plain.info["exemplars"] == [] and forced.prompt_tokens > plain.prompt_tokens
                                           and forced.info["exemplars"] == ["ex-a", "ex-b"])),
    # REG stage 1 (G1) + its index on the written dialogues (real MiniLM; no EPITOME classifiers: semantic mode)
    "reg": Case(_trained("reg", TINY | {"k": 2, "mode": "semantic", "attribute_tags": False,
                                        "retrieval": {"attributes": {"source": "none"}}}, {"stages": ["g1"]}),
                ("exemplars",), Controls(exemplars=EXEMPLARS),
                lambda plain, forced: (forced.info["exemplars"] == ["ex-a", "ex-b"] and len(plain.info["exemplars"]) == 2
                                       and all("#" in i for i in plain.info["exemplars"]))),
    # ReflectDiffu reads only a forced final intent; emotion and intents are predicted (Reply.info)
    "reflectdiffu": Case(_trained("reflectdiffu", RD_TINY), ("intent",), Controls(intent="questioning"),
                         lambda plain, forced: (forced.info["intent"] == "questioning" and plain.info["intent"]
                                                and {"predicted_emotion", "intent_first", "intent_twice"}
                                                <= set(plain.info))),
}


@dataclass
class Subject:
    name: str
    case: Case
    gen: Generator


pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    from empathkit.data.jsonl import write_jsonl
    from empathkit.testing import make_dialogues

    d = tmp_path_factory.mktemp("contract")
    write_jsonl(make_dialogues(), d / "dialogues.jsonl")
    return d


@pytest.fixture(scope="module")
def examples():
    from empathkit.data.protocols import to_examples
    from empathkit.testing import make_dialogues

    return to_examples(make_dialogues(), "every-listener")[:6]


@pytest.fixture(scope="module", params=sorted(CASES))
def subject(request, root) -> Subject:
    case = CASES[request.param]
    return Subject(request.param, case, case.build(root))


def test_every_registered_method_has_a_case():
    missing = sorted(set(METHODS.names()) - set(CASES))
    assert not missing, f"add a contract case for method(s) {missing} in tests/methods/test_contract.py"


def test_generate(subject, examples):
    g = subject.gen
    preds = g.generate(examples, SAMPLED, progress=False)
    assert [p.id for p in preds] == [e.id for e in examples]
    assert [p.reference for p in preds] == [e.target for e in examples]
    assert any(p.prediction for p in preds)
    for p in preds:
        assert p.settings == settings_dict(SAMPLED) | {"method": g.name} | g.info
        assert p.extra["prompt_tokens"] > 0 and 0 <= p.extra["new_tokens"] <= SAMPLED.max_new_tokens
        assert p.extra["finish_reason"] in ("stop", "length")
        json.dumps(p.to_json())


def test_chat(subject):
    replies = subject.gen.chat(CONVS, SAMPLED)
    assert len(replies) == len(CONVS) and all(isinstance(r, Reply) for r in replies)
    assert all(r.text for r in replies)
    for r in replies:
        assert r.prompt_tokens > 0 and 0 < r.completion_tokens <= SAMPLED.max_new_tokens
        assert r.finish_reason in ("stop", "length")
        json.dumps(r.info)
    assert [r.text for r in subject.gen.chat(CONVS, SAMPLED)] == [r.text for r in replies]  # seeded


def test_chat_at_bfloat16_or_a_clear_refusal(subject):
    """``serve`` / ``chat`` load at ``auto`` precision (bfloat16 where the CPU has it): every method either chats
    with its weights in bfloat16 or declares the precisions it runs at and refuses the others in one line (and then
    ``auto`` keeps its own: ReflectDiffu). On a copy: the module's subject stays float32."""
    import copy

    import torch

    from empathkit.errors import ConfigError
    from empathkit.models.precision import apply_precision

    g = copy.copy(subject.gen)
    g.info = dict(g.info)
    supported = getattr(g, "precisions", None)
    model = getattr(g, "model", None)
    if supported is not None and "bfloat16" not in supported or not isinstance(model, torch.nn.Module):
        with pytest.raises(ConfigError, match="precision=bfloat16"):
            apply_precision(g, "bfloat16")
        return
    assert apply_precision(g, "bfloat16") == "bfloat16" and g.info["precision"] == "bfloat16"
    assert next(g.model.parameters()).dtype == torch.bfloat16
    replies = g.chat(CONVS, SAMPLED)
    assert len(replies) == len(CONVS) and all(isinstance(r, Reply) for r in replies)
    assert all(0 < r.completion_tokens <= SAMPLED.max_new_tokens for r in replies)
    assert next(subject.gen.model.parameters()).dtype == torch.float32  # the shared subject is untouched


def test_stream(subject):
    deltas: dict[int, list[str]] = {i: [] for i in range(len(CONVS))}
    final: dict[int, Reply] = {}
    for ev in subject.gen.stream(CONVS, SAMPLED):
        if ev.reply is None:
            deltas[ev.index].append(ev.delta)
        else:
            final[ev.index] = ev.reply
    chat = subject.gen.chat(CONVS, SAMPLED)
    for i in range(len(CONVS)):
        assert "".join(deltas[i]) == final[i].text == chat[i].text
    it = subject.gen.stream(CONVS, SAMPLED.model_copy(update={"max_new_tokens": 64}))
    next(it)
    it.close()  # stops generation (should_stop) and joins the worker


def test_should_stop_cancels_one_row(subject):
    s = SAMPLED.model_copy(update={"max_new_tokens": 12})
    normal = subject.gen.chat(CONVS, s)
    out = subject.gen.chat(CONVS, s, should_stop=lambda i: i == 0)
    assert out[0].finish_reason == "cancelled" and out[0].completion_tokens <= 1
    assert out[1].finish_reason != "cancelled" and out[1].text == normal[1].text


def test_score(subject, examples):
    a = subject.gen.score(examples[:4])
    assert len(a) == 4
    assert all(math.isfinite(s.nll) and s.nll > 0 and s.tokens > 0 for s in a)
    assert subject.gen.score(examples[:4]) == a
    one = subject.gen.score(examples[:4], batch_size=1)  # padding does not change a row's score
    assert [s.tokens for s in one] == [s.tokens for s in a]
    assert all(math.isclose(x.nll, y.nll, rel_tol=1e-4) for x, y in zip(one, a))


def test_controls(subject):
    plain = subject.gen.chat(CONVS[:1], SAMPLED)[0]
    if subject.case.probe is not None:
        forced = subject.gen.chat(CONVS[:1], SAMPLED, [subject.case.probe])[0]
        assert subject.case.works(plain, forced), (plain, forced)
    ignored = Controls(**{k: v for k, v in EVERY_CONTROL.items() if k not in subject.case.reads})
    other = subject.gen.chat(CONVS[:1], SAMPLED, [ignored])[0]
    assert (other.text, other.prompt_tokens, other.info) == (plain.text, plain.prompt_tokens, plain.info)
    with pytest.raises(ValueError):
        subject.gen.chat(CONVS, SAMPLED, [None])  # one control per conversation


def test_save_load_identical(subject, examples, tmp_path):
    g = subject.gen
    copy = load_generator(run_dir=g.save(tmp_path / "copy"))
    assert type(copy) is type(g) and copy.name == g.name
    for s in (GREEDY, SAMPLED):
        assert [r.text for r in copy.chat(CONVS, s)] == [r.text for r in g.chat(CONVS, s)]
    assert ([p.prediction for p in copy.generate(examples, SAMPLED, progress=False)]
            == [p.prediction for p in g.generate(examples, SAMPLED, progress=False)])
    assert all(math.isclose(x.nll, y.nll, rel_tol=1e-5) for x, y in zip(copy.score(examples), g.score(examples)))


def test_count_tokens(subject):
    n = subject.gen.count_tokens
    assert n("") == 0
    assert 0 < n("Hello") < n("Hello, how are you today?")
    reply = subject.gen.chat(CONVS[:1], SAMPLED)[0]
    assert n(reply.text) > 0


def test_cases_are_well_formed():
    for name, case in CASES.items():
        assert set(case.reads) <= {f.name for f in dataclasses.fields(Controls)}, name
        assert (case.probe is None) == (case.works is None), name
