"""``method: reg`` — a trained REG run as a :class:`~empathkit.methods.base.Generator` with retrieval per request.

:class:`REGRunGenerator` is the run's generator — G2 (``run_dir/g2``, stage 3) when it was trained, else G1
(:class:`~empathkit.methods.reg.generator.REGCausalGenerator` over the PEFT adapter, as ``methods/sft.load``) — plus
the run's exemplar index (``run_dir/index``; queries embedded by the latest trained query encoder — the joint one in
``g2/adapter/query_encoder``, else stage 2's ``retriever/query_encoder`` — else by the index's own encoder) and the
index's attribute tagger. For every row the caller leaves without them it fills

- ``Controls.attributes``: the tagger on the *context* (VADER + the EPITOME levels; ``context`` rule), when the
  prompt tags or the ``reg`` score need them;
- ``Controls.exemplars``: the top-``k`` exemplars by ``mode`` (``reg`` or ``semantic``) for the context —
  dataset examples (``generate`` / ``score``, :meth:`example_controls`) never get an exemplar of their own
  conversation; conversations (``chat`` / ``serve``, :meth:`resolve_controls`) exclude nothing (they belong to none).

``Reply.info`` carries ``exemplars`` (ids), ``exemplar_scores``, ``attributes`` and ``predicted_emotion`` (the
exemplar vote: REG's Acc_emo), as :class:`REGCausalGenerator` reports them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from pathlib import Path
from typing import Any, Sequence

from empathkit.methods.base import Conversation, controls_list
from empathkit.methods.reg.config import REGModelConfig
from empathkit.methods.reg.generator import REGCausalGenerator, REGFiDGenerator, _fill_attributes, query_attributes
from empathkit.types import Controls, Example

INDEX_DIR = "index"
QUERY_ENCODER_DIR = Path("retriever") / "query_encoder"
G2_DIR = "g2"
JOINT_QUERY_ENCODER_DIR = Path(G2_DIR) / "adapter" / "query_encoder"


def conversation_context(conv: Conversation) -> list[str]:
    """The turns of a conversation (oldest first) as retrieval / attribute context; system messages dropped."""
    return [m["content"] for m in conv if m.get("role") != "system" and m.get("content", "").strip()]


def attribute_fn_for(tagger):
    """``conversations -> [attributes]`` from an :class:`~empathkit.methods.reg.attributes.AttributeTagger`
    (the ``context`` rule: nothing but the context exists at inference)."""
    def fn(convs: Sequence[Conversation]):
        ctxs = [conversation_context(c) for c in convs]
        todo = [i for i, c in enumerate(ctxs) if c]
        out: list[dict | None] = [None] * len(ctxs)
        if todo:
            for i, a in zip(todo, tagger.tag_queries([ctxs[i] for i in todo])):
                out[i] = a
        return out
    return fn


class _PerRequestRetrieval:
    """The run's index + per-request retrieval, shared by the causal and the FiD run generators (a mixin before
    the generator class)."""

    def _init_retrieval(self, model_config: REGModelConfig, index) -> None:
        self.index = index
        self.run_config = model_config  # the REG model section (inference-time overrides such as k / mode)
        self._local = threading.local()

    def retrieve(self, contexts: Sequence[Sequence[str]], attributes: Sequence[dict | None],
                 exclude: Sequence[str | None] | None = None):
        """Top-``k`` exemplars per context by the configured mode and score settings."""
        mc = self.run_config
        sc = mc.retrieval.score
        qa = None
        if mc.mode == "reg":
            qa = [a or {} for a in attributes]
        return self.index.search(contexts, k=mc.k, mode=mc.mode, exclude_dialogue_ids=exclude, query_attributes=qa,
                                 weight=sc.weight, attribute_weights=sc.attribute_weights, pool=sc.pool)

    def _fill_exemplars(self, contexts: Sequence[Sequence[str]], ctrls: list[Controls],
                        exclude: Sequence[str | None] | None) -> list[Controls]:
        todo = [i for i, c in enumerate(ctrls) if not c.exemplars and contexts[i]]
        if not todo:
            return ctrls
        rows = self.retrieve([list(contexts[i]) for i in todo], [query_attributes(ctrls[i]) for i in todo],
                             None if exclude is None else [exclude[i] for i in todo])
        out = list(ctrls)
        for i, ex in zip(todo, rows):
            out[i] = dataclasses.replace(out[i], exemplars=tuple(ex))
        return out

    def example_controls(self, examples: Sequence[Example], controls=None) -> list[Controls]:
        ctrls = super().example_controls(examples, controls)
        return self._fill_exemplars([[t.text for t in ex.context] for ex in examples], ctrls,
                                    [ex.dialogue_id for ex in examples])

    def _conversation_controls(self, conversations, ctrls: list[Controls]) -> list[Controls]:
        if getattr(self._local, "examples", False):  # generate(): example_controls already retrieved (with the
            return ctrls  # own-conversation exclusion); never retrieve again without it
        return self._fill_exemplars([conversation_context(c) for c in conversations], ctrls, None)

    @contextlib.contextmanager
    def _examples_resolved(self):
        self._local.examples = True
        try:
            yield
        finally:
            self._local.examples = False

    def generate(self, examples, settings=None, controls=None, progress: bool = True):
        with self._examples_resolved():  # example_controls retrieves (own conversation excluded); chat must not
            return super().generate(examples, settings, controls, progress)


class REGRunGenerator(_PerRequestRetrieval, REGCausalGenerator):
    """G1 / G2 (causal) + the run's index: retrieval per request (module docstring)."""

    name = "reg"

    def __init__(self, model, tokenizer, model_config: REGModelConfig, index, info: dict[str, Any] | None = None,
                 source_dir=None):
        attribute_fn = attribute_fn_for(index.tagger) if model_config.needs_query_attributes else None
        super().__init__(model, tokenizer, model_config.prompt_config(), model_config.prompt_builder(),
                         attribute_fn=attribute_fn, info=info, source_dir=source_dir)
        self._init_retrieval(model_config, index)
        self.config = model_config  # Generator.save writes it back

    def resolve_controls(self, conversations, controls):
        return self._conversation_controls(conversations, super().resolve_controls(conversations, controls))


class REGFiDRunGenerator(_PerRequestRetrieval, REGFiDGenerator):
    """FiD G1 / G2 (encoder–decoder) + the run's index: retrieval per request (module docstring)."""

    name = "reg-fid-run"

    def __init__(self, model, tokenizer, model_config: REGModelConfig, index, info: dict[str, Any] | None = None,
                 source_dir=None):
        from empathkit.methods.reg.generator import AttributeControlConfig, seq2seq_config

        mc = model_config
        reg = AttributeControlConfig(attribute_tags=mc.attribute_tags, exemplar_tags=mc.exemplar_tags,
                                     exemplar_context=mc.exemplar_context, context_tokens=mc.context_tokens)
        attribute_fn = attribute_fn_for(index.tagger) if mc.needs_query_attributes else None
        super().__init__(model, tokenizer, seq2seq_config(mc), reg, attribute_fn=attribute_fn, info=info,
                         source_dir=source_dir)
        self._init_retrieval(mc, index)

    def chat(self, conversations, settings=None, controls=None, *, on_text=None, should_stop=None,
             progress: bool = False, desc: str | None = None):
        convs = [list(c) for c in conversations]
        ctrls = _fill_attributes(convs, controls_list(len(convs), controls), self.attribute_fn)
        ctrls = self._conversation_controls(convs, ctrls)
        return super().chat(convs, settings, ctrls, on_text=on_text, should_stop=should_stop, progress=progress,
                            desc=desc)

    def save(self, run_dir):
        """The run directory copied (index and weights), with the effective REG model section."""
        import shutil

        from empathkit.runs import load_run_config, write_run_config

        dest = Path(run_dir)
        shutil.copytree(self.source_dir, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("checkpoints", "checkpoint-*", "predictions.jsonl"))
        write_run_config(dest, load_run_config(dest) | {"model": self.run_config.model_dump()})
        return dest


def _query_encoder(run_dir: Path):
    """The latest trained query encoder (stage 3 ``joint``, else stage 2; ``QueryEncoder.load``), or ``None``."""
    cands = (run_dir / JOINT_QUERY_ENCODER_DIR, run_dir / G2_DIR / "model" / "query_encoder", run_dir / QUERY_ENCODER_DIR)
    d = next((x for x in cands if x.is_dir()), None)
    if d is None:
        return None
    from empathkit.methods.reg.retriever import QueryEncoder

    return QueryEncoder.load(d)


def run_index(run_dir: str | Path, query_encoder=None):
    """The index a trained run retrieves from — stage 2's refreshed ``retriever/index`` when it re-indexed, else
    ``index/`` — with queries embedded by ``query_encoder`` (default: the run's latest trained one, else the
    index's own encoder). A folder that is itself an index (``--run`` given an index) loads as it is."""
    from empathkit.methods.reg.index import CONFIG_FILE, ExemplarIndex
    from empathkit.methods.reg.retriever import stage_index

    rd = Path(run_dir)
    if (rd / CONFIG_FILE).is_file() and not (rd / INDEX_DIR).is_dir():
        return ExemplarIndex.load(rd)
    qenc = _query_encoder(rd) if query_encoder is None else query_encoder
    return stage_index(rd, ExemplarIndex.load(rd / INDEX_DIR, encoder=qenc))


def load(config: dict | REGModelConfig | None = None, run_dir: str | Path | None = None) -> REGRunGenerator:
    """A trained REG run directory as a generator (``config``: the run's ``model`` section with any inference-time
    overrides, e.g. ``k`` or ``mode``)."""
    from empathkit.config import validate
    from empathkit.errors import ConfigError
    from empathkit.methods.reg.index import ExemplarIndex
    from empathkit.training.backbone import load_trained

    if run_dir is None:
        raise ConfigError("method 'reg' needs a trained run: `empathkit generate --run RUN_DIR` "
                          "(train one with `empathkit train -c reg/cpu-small`)")
    rd = Path(run_dir)
    g2 = rd / G2_DIR
    stage = "g2" if (g2 / "done").is_file() else "g1"
    from empathkit.methods.reg.fid_weights import is_fid_stage, load_fid_weights

    fid = is_fid_stage(rd)
    if fid:  # FiD run (reg/fid_train.py): model/ (full) or adapter/ (LoRA) of G1, the same under g2/ for G2
        from empathkit.runs import load_run_config
        from empathkit.runconfig import resolve

        run_mc = validate(REGModelConfig, resolve(load_run_config(rd)).model, "model")
        model, tok = load_fid_weights(g2 if stage == "g2" else rd, run_mc)
    else:
        model, tok, run_mc = load_trained(g2 if stage == "g2" else rd, REGModelConfig)
    mc = config if isinstance(config, REGModelConfig) else (
        validate(REGModelConfig, config, "model") if config else run_mc)
    qenc = _query_encoder(rd)
    index = run_index(rd, qenc)
    if mc.mode == "reg" and not index.has_attributes:
        raise ConfigError(f"{rd / INDEX_DIR} was built without emotion attributes: load with model.mode=semantic")
    info = {"run_dir": str(rd), "generator": stage, "mode": mc.mode, "k": mc.k,
            "query_encoder": "trained" if qenc is not None else index.config.get("encoder"),
            "index": "refreshed" if index.config.get("refreshed") else "built"}
    cls = REGFiDRunGenerator if fid else REGRunGenerator
    return cls(model, tok, mc, index, info=info, source_dir=rd)

