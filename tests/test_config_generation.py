"""Config overrides, run metadata, batched generation and the prompt baseline on a tiny random model."""

from __future__ import annotations

import json

import pytest

from empathkit.api import resolve
from empathkit.config import apply_overrides, load_config, validate
from empathkit.data.protocols import to_examples
from empathkit.errors import ConfigError
from empathkit.methods import METHODS
from empathkit.methods.prompt import PromptConfig
from empathkit.methods.prompt import load as load_prompt
from empathkit.models.templates import TEMPLATES
from empathkit.models.generation import GenerationSettings, _buckets, generate_texts
from empathkit.runs import read_jsonl, save_run_meta, write_jsonl


def test_overrides_parse_yaml_values_and_nest(tmp_path):
    cfg = apply_overrides({"data": {"protocol": "every-listener"}},
                          ["data.test_limit=50", "generation.do_sample=true", "model.template=length-controlled-v1",
                           "train.lr=1e-4"])
    assert cfg["data"] == {"protocol": "every-listener", "test_limit": 50}
    assert cfg["generation"]["do_sample"] is True and cfg["train"]["lr"] == 1e-4
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["oops"])
    y = tmp_path / "c.yaml"
    y.write_text("method: prompt\ndata:\n  split: valid\n")
    assert load_config(y, ["seed=3"])["seed"] == 3 and load_config(y)["data"]["split"] == "valid"
    y.write_text("method: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: invalid YAML"):
        load_config(y)


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match=r"data.protocl"):
        resolve({"data": {"protocl": "x"}})
    with pytest.raises(ConfigError, match=r"model.templat"):
        validate(PromptConfig, {"templat": "x"}, "model")
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        METHODS.get("nope")


def test_run_meta_saved(tmp_path):
    d = save_run_meta(tmp_path / "r", {"method": "prompt", "seed": 7}, 7)
    assert (d / "seed").read_text().strip() == "7"
    v = json.loads((d / "versions.json").read_text())
    assert "torch" in v and "transformers" in v and "python" in v
    write_jsonl([{"a": 1}, {"a": 2}], d / "x.jsonl")
    assert read_jsonl(d / "x.jsonl") == [{"a": 1}, {"a": 2}]


def test_buckets_group_by_length_and_cover_everything():
    b = _buckets([5, 1, 9, 3, 7], 2)
    assert sorted(i for g in b for i in g) == [0, 1, 2, 3, 4]
    assert b[0] == [2, 4]  # longest first


def test_batched_generation_matches_one_at_a_time(tiny_model):
    model, tok = tiny_model
    prompts = ["Hello there, how are you?", "I lost my keys again today and I feel so stupid about it.", "Hi"]
    s = GenerationSettings(max_new_tokens=6, batch_size=8, repetition_penalty=1.0)
    batched = generate_texts(model, tok, prompts, s, progress=False)
    single = [generate_texts(model, tok, [p], s.model_copy(update={"batch_size": 1}), progress=False)[0]
              for p in prompts]
    assert [o.text for o in batched] == [o.text for o in single]  # order kept, left padding does not change output
    assert all(o.new_tokens <= 6 for o in batched)


def test_prompt_baseline_uses_template_and_emotion(tiny_model, dialogues):
    model, tok = tiny_model
    gen = load_prompt({"template": "structured-v1"}, model=model, tokenizer=tok)
    ex = to_examples(dialogues[:2], "every-listener")
    sp = gen.system_prompt(gen.example_controls(ex[:1])[0])
    assert "# Role" in sp and "# Guidelines" in sp and "joyful" in sp
    preds = gen.generate(ex, GenerationSettings(max_new_tokens=4), progress=False)
    assert [p.id for p in preds] == [e.id for e in ex]
    assert preds[0].settings["template"] == "structured-v1" and preds[0].settings["method"] == "prompt"
    assert preds[0].reference == ex[0].target
    lc = load_prompt({"template": "length-controlled-v1"}, model=model, tokenizer=tok)
    assert lc.default_settings.max_new_tokens == TEMPLATES.get("length-controlled-v1").max_new_tokens == 40
    assert "30 words" in lc.system_prompt(lc.example_controls(ex[:1])[0])


def test_structured_v2_moves_only_the_context_and_shares_the_guidelines():
    """structured-v2 = structured-v1's sections with the context last: the same text, and two prompts with different
    emotions share everything up to the context (v1: only role + task)."""
    v1, v2 = TEMPLATES.get("structured-v1"), TEMPLATES.get("structured-v2")
    a1, b1, a2, b2 = v1.render("sad"), v1.render("joyful"), v2.render("sad"), v2.render("joyful")
    assert sorted(a1.split("\n\n")) == sorted(a2.split("\n\n")) and a1 != a2
    assert a2.endswith("# Context\nThe user seems to feel: sad.") and a1.endswith(v1.guidelines[-1])
    shared = lambda x, y: next(i for i, (p, q) in enumerate(zip(x, y)) if p != q)  # noqa: E731
    assert "# Guidelines" in a2[:shared(a2, b2)] and "# Guidelines" not in a1[:shared(a1, b1)]
    assert v1.render() == v2.render()  # no context: identical prompts


def test_fit_messages_drops_oldest_turns(tiny_model):
    from empathkit.models.chat import fit_messages

    _, tok = tiny_model
    msgs = [{"role": "system", "content": "be kind"}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "word " * 30} for i in range(7)]
    fitted = fit_messages(tok, msgs, 120)
    assert fitted[0]["role"] == "system" and fitted[-1] == msgs[-1] and len(fitted) < len(msgs)
    assert fitted[1]["role"] == "user"


def test_train_validates_the_whole_method_config_before_any_work(tmp_path):
    from empathkit import api

    out = tmp_path / "runs"
    for bad, key in (({"train": {"lrr": 1}}, "train.lrr"), ({"model": {"lora_r": "big"}}, "model.lora_r"),
                     ({"train": {"dpo": {"betta": 1}}}, "train.dpo")):
        cfg = {"method": "empo" if "dpo" in bad.get("train", {}) else "sft", "output_dir": str(out), **bad}
        with pytest.raises(ConfigError, match=key):
            api.train(cfg)
    with pytest.raises(ConfigError, match="train.gate_lr"):
        api.train({"method": "ecg-lora", "output_dir": str(out), "train": {"gate_lr": -1}})
    with pytest.raises(ConfigError, match="nothing to train"):
        api.train({"method": "prompt", "output_dir": str(out)})
    assert not out.exists()  # failed before a run directory was made
    assert api.method_config({"method": "sft"}).train.lr == 2e-4
    assert api.method_config({"method": "prompt", "model": {"template": "plain"}}).template == "plain"  # model only
    with pytest.raises(ConfigError, match="model.templat"):
        api.method_config({"method": "prompt", "model": {"templat": "plain"}})


def test_generation_settings_layer_generator_defaults_config_and_overrides():
    from types import SimpleNamespace

    from empathkit.api import generation_settings

    gen = SimpleNamespace(default_settings=GenerationSettings(max_new_tokens=40))  # e.g. a template's token cap
    cfg = {"method": "prompt", "generation": {"batch_size": 8}}
    assert generation_settings(None, gen) == gen.default_settings
    for c in (cfg, resolve(cfg)):  # a raw config or a resolved RunConfig (it remembers which keys were given)
        s = generation_settings(c, gen)
        assert (s.max_new_tokens, s.batch_size, s.repetition_penalty) == (40, 8, 1.1)
    s = generation_settings(cfg, gen, {"max_new_tokens": 12, "seed": 3})
    assert (s.max_new_tokens, s.batch_size, s.seed) == (12, 8, 3)
    assert generation_settings({"method": "prompt"}, None) == GenerationSettings()
    assert generation_settings(resolve({}), gen).max_new_tokens == 40
    with pytest.raises(ConfigError, match="generation.max_new_tokenz"):
        generation_settings({"generation": {"max_new_tokenz": 3}}, gen)
    with pytest.raises(ConfigError, match="generation.max_new_tokens"):
        generation_settings(None, gen, {"max_new_tokens": 0})


def test_every_recipe_validates_against_its_method_config():
    from empathkit.api import method_config
    from empathkit.config import REPO_RECIPES

    recipes = sorted(REPO_RECIPES.rglob("*.yaml"))
    assert recipes
    for f in recipes:
        cfg = load_config(f)
        assert method_config(cfg).model is not None, f


def test_unknown_split_is_one_clear_line():
    from typer.testing import CliRunner

    from empathkit.cli.main import app

    r = CliRunner().invoke(app, ["generate", "--method", "prompt", "--split", "tset", "--limit", "2"])
    assert r.exit_code == 2 and "unknown split 'tset' (train, valid, test)" in r.output
    assert "Traceback" not in r.output and "tset_limit" not in r.output
    with pytest.raises(ConfigError, match="data.split"):
        resolve({"data": {"split": "tset"}})
