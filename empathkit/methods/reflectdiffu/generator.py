"""The ReflectDiffu :class:`~empathkit.methods.base.Generator` and the run directory's ``model/`` folder.

``model/``: ``weights.safetensors`` (the network), ``vocab.json``, ``meta.json`` (ERA state size, Intent_refer
mask as intent lists per emotion). ``load(model_cfg, run_dir)`` rebuilds the network from the run's ``model``
config, so a run loads by path alone.

Controls: the generator reads ``intent`` only (a forced final intent, e.g. a request's). The emotion and intent are
*predicted* — in :meth:`generate` the example's annotated intent is not used as a control (that would leak the
label Acc_intent is scored on); a caller's explicit ``Controls(intent=…)`` still forces it. ``Reply.info``:
``predicted_emotion``, ``intent_first``, ``intent_twice`` and ``intent`` (final) — predictions store them as
``extra`` fields, where ``acc-emo`` reads ``predicted_emotion``; ``generate`` adds ``ref_nll`` / ``ref_tokens``
(the model's own score of the reference), where ``perplexity`` reads the model's PPL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from empathkit.data.emotions import EMOTIONS
from empathkit.methods.base import (
    Generator,
    OnText,
    ShouldStop,
    controls_list,
    merge_controls,
)
from empathkit.methods.reflectdiffu.config import RDModelConfig
from empathkit.methods.reflectdiffu.decoding import decode
from empathkit.methods.reflectdiffu.features import (
    Featurizer,
    collate,
    conversation_turns,
)
from empathkit.methods.reflectdiffu.model import ReflectDiffu
from empathkit.methods.reflectdiffu.sources import INTENTS
from empathkit.methods.reflectdiffu.vocab import Vocab
from empathkit.models.generation import GenerationSettings
from empathkit.types import Controls, Example, Reply, TokenScore


def row_generators(keys: Sequence[str], seed: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed((int(k) + 7919 * seed) % 2 ** 63) for k in keys]


class RDGenerator(Generator):
    name = "reflectdiffu"
    # float32 only (``models.precision.apply_precision``): the DDPM's betas start at 1e-5 and its noise, timestep
    # features and the ERA's reason states are float32 — bfloat16 would lose the schedule and mix dtypes, and a
    # 2M-parameter network gains nothing from it. ``auto`` (chat / serve) keeps float32; ``bfloat16`` is refused.
    precisions = ("float32",)

    def __init__(self, model: ReflectDiffu, vocab: Vocab, config: RDModelConfig, reasons=None, prior=None,
                 info: dict[str, Any] | None = None, default_settings: GenerationSettings | None = None,
                 source_dir=None):
        super().__init__({"variant": variant_name(config)} | (info or {}),
                         default_settings or GenerationSettings(max_new_tokens=config.max_target_tokens,
                                                                repetition_penalty=1.0),
                         source_dir)
        self.model, self.vocab, self.config = model.eval(), vocab, config
        self.reasons, self.prior = reasons, prior
        self.era_dim = model.encoder.h_proj.in_features if config.use_era else None
        self.features = Featurizer(vocab, reasons if config.use_era else None,
                                   prior if config.use_intent_twice else None, config.max_context_tokens,
                                   config.max_target_tokens, config.vader_threshold)

    def count_tokens(self, text: str) -> int:
        return len(self.vocab.pieces(self.vocab.words(text))[0]) if text.strip() else 0

    def example_controls(self, examples, controls=None) -> list[Controls]:
        """Only the caller's controls: the example's gold emotion and annotated intent are what the model predicts."""
        return [merge_controls(Controls(), c) for c in controls_list(len(examples), controls)]

    def generate(self, examples, settings=None, controls=None, progress: bool = True):
        """Predictions (base behaviour) + the reference's own NLL per example (``score_references``), which the
        ``perplexity`` metric reads as the model's PPL (Table 2)."""
        preds = super().generate(examples, settings, controls, progress)
        if self.config.score_references and preds:
            for p, sc in zip(preds, self.score(examples, controls, batch_size=32)):
                p.extra["ref_nll"], p.extra["ref_tokens"] = sc.nll, sc.tokens
        return preds

    def _info(self, st_info: dict, r: int) -> dict[str, Any]:
        out = {"predicted_emotion": EMOTIONS[st_info["emotion"][r]]}
        for k in ("intent_first", "intent_twice", "intent"):
            if k in st_info:
                out[k] = INTENTS[st_info[k][r]]
        return out

    def _forced(self, ctrls: Sequence[Controls]) -> list[int | None] | None:
        if not self.config.use_intent_twice:
            return None
        out = []
        for c in ctrls:
            if c.intent is not None and c.intent not in INTENTS:
                raise ValueError(f"unknown intent {c.intent!r}; expected one of {list(INTENTS)}")
            out.append(INTENTS.index(c.intent) if c.intent is not None else None)
        return out

    def chat(self, conversations, settings=None, controls=None, *, on_text: OnText | None = None,
             should_stop: ShouldStop | None = None, progress: bool = False, desc: str | None = None) -> list[Reply]:
        from tqdm.auto import tqdm

        s = settings or self.default_settings
        ctrls = controls_list(len(conversations), controls)
        budget = min(self.config.max_context_tokens, s.max_prompt_tokens or self.config.max_context_tokens)
        self.features.max_tokens = budget
        items = self.features.items([conversation_turns(m) for m in conversations])
        out: list[Reply | None] = [None] * len(items)
        bar = tqdm(total=len(items), desc=desc or f"generating ({self.name})", disable=not progress, unit="resp")
        for start in range(0, len(items), s.batch_size):
            idx = list(range(start, min(start + s.batch_size, len(items))))
            b = collate([items[i] for i in idx], self.vocab, self.era_dim)
            gens = row_generators(b["keys"], s.seed)
            st = self.model.state(b, gens, self._forced([ctrls[i] for i in idx]))
            rows = decode(self.model, st, self.vocab, b["oovs"], s, gens, idx, self.config.num_beams,
                          self.config.length_penalty, on_text, should_stop, self.config.no_repeat_ngram_size)
            for r, (i, (toks, fin)) in enumerate(zip(idx, rows)):
                out[i] = Reply(self.vocab.detok(toks), 1 + len(items[i].tokens), len(toks), fin,
                               self._info(st["info"], r))
            bar.update(len(idx))
        bar.close()
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def score(self, examples: Sequence[Example], controls=None, batch_size: int = 8,
              progress: bool = False) -> list[TokenScore]:
        """Teacher-forced NLL (nats, summed) of each reference's tokens + EOS under the pointer-generator mixture,
        given the context and the model's own decisions (diffusion noise seeded per row)."""
        ctrls = self.example_controls(examples, controls)
        self.features.max_tokens = self.config.max_context_tokens
        items = self.features.example_items(examples)
        seed = self.default_settings.seed
        out = []
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            b = collate(chunk, self.vocab, self.era_dim)
            st = self.model.state(b, row_generators(b["keys"], seed), self._forced(ctrls[start:start + batch_size]))
            lp = self.model.next_logprobs(st, b["dec_in"])
            tgt = b["dec_out"]
            nll = -lp.gather(2, tgt[..., None]).squeeze(-1)
            mask = tgt.ne(0)
            for r in range(len(chunk)):
                out.append(TokenScore(float(nll[r][mask[r]].sum()), int(mask[r].sum())))
        return out

    def save(self, run_dir: str | Path) -> Path:
        from empathkit.runs import save_run_meta

        d = Path(run_dir)
        save_model_dir(d / "model", self.model, self.vocab, self.era_dim)
        save_run_meta(d, {"method": "reflectdiffu", "model": self.config.model_dump()}, self.default_settings.seed)
        return d


def variant_name(cfg: RDModelConfig) -> str:
    if cfg.baseline:
        return "multitask-transformer"
    off = [n for n, on in (("era", cfg.use_era), ("c-experts", cfg.use_c_experts),
                           ("intent-twice", cfg.use_intent_twice), ("emu", cfg.use_emu)) if not on]
    return "full" if not off else "w/o " + ", ".join(off)


def save_model_dir(folder: Path, model: ReflectDiffu, vocab: Vocab, era_dim: int | None) -> Path:
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "weights.safetensors"))  # drops the tied / shared copies of the embedding
    vocab.save(folder)
    refer = {e: [INTENTS[j] for j in range(len(INTENTS)) if model.refer_mask[i, j]] for i, e in enumerate(EMOTIONS)}
    (folder / "meta.json").write_text(json.dumps({"era_dim": era_dim, "intent_refer": refer}, indent=1))
    return folder


def load_model_dir(folder: Path, cfg: RDModelConfig) -> tuple[ReflectDiffu, Vocab, int | None]:
    from safetensors.torch import load_model

    from empathkit.methods.reflectdiffu.model import refer_mask_from_map

    vocab = Vocab.load(folder)
    meta = json.loads((folder / "meta.json").read_text())
    model = ReflectDiffu(cfg, len(vocab), meta["era_dim"], refer_mask_from_map(meta["intent_refer"]))
    missing, unexpected = load_model(model, str(folder / "weights.safetensors"), strict=False)
    if missing or unexpected:
        from empathkit.errors import ConfigError

        raise ConfigError(f"{folder}: weights do not match the run's model config (missing {sorted(missing)[:3]}, "
                          f"unexpected {sorted(unexpected)[:3]})")
    return model.eval(), vocab, meta["era_dim"]


def load(config: RDModelConfig | dict | None = None, run_dir: str | Path | None = None) -> RDGenerator:
    """A trained run (``run_dir/model``); ReflectDiffu has no zero-shot form."""
    from empathkit.config import validate
    from empathkit.errors import ConfigError
    from empathkit.methods.reflectdiffu.sources import (
        load_intent_prior,
        load_reason_source,
    )

    cfg = config if isinstance(config, RDModelConfig) else validate(RDModelConfig, config or {}, "model")
    if run_dir is None or not (Path(run_dir) / "model" / "weights.safetensors").is_file():
        raise ConfigError("method 'reflectdiffu' needs a trained run: `empathkit train -c reflectdiffu/cpu-small`, "
                          "then load it with --run <run_dir>")
    model, vocab, _ = load_model_dir(Path(run_dir) / "model", cfg)
    reasons = load_reason_source(cfg.reason_source, cfg.era_path) if cfg.use_era else None
    prior = load_intent_prior(cfg.intent_prior, cfg.intent_classifier) if cfg.use_intent_twice else None
    return RDGenerator(model, vocab, cfg, reasons, prior, source_dir=run_dir)
