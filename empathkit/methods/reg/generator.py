"""REG's exemplar-fused generators (Sec. 3.2.2 / 3.2.4) on the shared :class:`~empathkit.methods.base.Generator`
interface: :class:`REGFiDGenerator` (Fusion-in-Decoder, the paper's T5 variant; G1 and G2) and
:class:`REGCausalGenerator` (exemplars in the system prompt, the paper's Llama-3.1-8B variant).

**Attribute control** (the ``Attr`` / ``A_x`` / ``A_ti`` of Eq. 2–3) is a tag prefix, in a fixed order::

    [sentiment=low] [presence=mid] [interpretation=high] [exploration=low]

(:func:`attribute_tags`; keys = :data:`ATTRIBUTE_KEYS`, the same names as ``reg/attributes.py``'s ``ATTRIBUTES``;
missing keys are skipped, other keys such as ``emotion`` / ``sentiment_compound`` never become tags.)

**Where the query's attributes come from** (``Controls.attributes``), in this order:

1. the caller's controls;
2. in :meth:`generate` / :meth:`score` (``example_controls``): the example's ``annotations.attributes``;
3. ``attribute_fn(conversations) -> [dict | None]`` given to the generator (e.g. the EPITOME + VADER tagger on the
   context — the only source at inference, in ``chat`` / ``serve``);
4. none: no query tags.

(Putting the query's attributes into every ``Exemplar.attributes`` was rejected: it duplicates them K times and loses
them when there is no exemplar — G1 is trained on (X, Attr) alone, Eq. 2.)

**Passages** (FiD, format ``reg-fid-v1``), one per exemplar (at most ``max_exemplars``, responses cut to
``exemplar_tokens``), ``source`` being :class:`~empathkit.methods.seq2seq.Seq2SeqGenerator`'s flat input::

    {query tags}\\n                               (when the query has attributes and attribute_tags is on)
    Exemplar context: {context, its end}\\n       (exemplar_context only)
    Exemplar {exemplar tags}: {response}\\n{source}

No exemplar: ``{query tags}\\n{source}`` (G1's Eq. 2 input). With ``attribute_tags`` and ``exemplar_tags`` off
(the ``w/o EA`` ablation) and no context, the passages are exactly :class:`FiDGenerator`'s.

**System prompt** (causal, version ``reg-exemplars-v1``): the base system prompt (a template / fixed prompt, as for
the other causal methods), then::

    # Emotion attributes of the user's message
    {query tags}

    # Replies from similar conversations
    Listeners replied to similar messages like this. Use them as guidance for tone and content; do not copy them.
    Exemplar 1 {tags}:
    Context: {context}          (exemplar_context only)
    Reply: {response}
    …

A conversation that brings its own system message keeps it, with this block appended (the exemplars are never
dropped silently).

**Reported** in ``Reply.info`` (→ ``Prediction.extra``, the server's ``empathkit`` metadata): ``exemplars`` (ids,
as :class:`FiDGenerator`), ``exemplar_scores``, ``attributes`` (the query's, when known) and ``predicted_emotion`` —
for ``acc-emo`` — the similarity-weighted vote of the exemplars' ED labels (:func:`exemplar_emotion_vote`; REG does
not say how its generator yields an emotion for Acc, this is our choice).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from pydantic import BaseModel, Field

from empathkit.methods.base import Conversation, controls_list
from empathkit.methods.causal import CausalLMGenerator
from empathkit.methods.seq2seq import FiDGenerator
from empathkit.models.chat import fit_messages, render, with_system
from empathkit.registry import Registry
from empathkit.types import Controls, Example, Exemplar

ATTRIBUTE_KEYS = ("sentiment", "presence", "interpretation", "exploration")  # = reg/attributes.py ATTRIBUTES
EMOTION_KEY = "emotion"  # the ED label of an exemplar (reg/corpus.py to_exemplars)
PASSAGE_FORMAT = "reg-fid-v1"

AttributeFn = Callable[[Sequence[Conversation]], Sequence["dict[str, Any] | None"]]


# ================================================================================================ attributes
def attribute_tags(attributes: Mapping[str, Any] | None, keys: Sequence[str] = ATTRIBUTE_KEYS) -> str:
    """``[key=value] …`` for ``keys`` in order; missing / ``None`` values skipped, floats with 2 decimals."""
    if not attributes:
        return ""
    out = []
    for k in keys:
        v = attributes.get(k)
        if v is None or v == "":
            continue
        out.append(f"[{k}={v:.2f}]" if isinstance(v, float) else f"[{k}={v}]")
    return " ".join(out)


def query_attributes(controls: Controls | None) -> dict[str, Any] | None:
    a = getattr(controls, "attributes", None)
    return dict(a) if a else None


def with_attributes(controls: Controls, attributes: Mapping[str, Any] | None) -> Controls:
    """``controls`` carrying ``attributes`` (unchanged when there are none to add)."""
    if not attributes:
        return controls
    return dataclasses.replace(controls, attributes=dict(attributes))


def _fill_attributes(convs: Sequence[Conversation], ctrls: list[Controls],
                     attribute_fn: AttributeFn | None) -> list[Controls]:
    """Rows without attributes get ``attribute_fn``'s (one batched call), when there is one."""
    todo = [i for i, c in enumerate(ctrls) if not query_attributes(c)]
    if attribute_fn is None or not todo:
        return ctrls
    found = list(attribute_fn([convs[i] for i in todo]))
    if len(found) != len(todo):
        raise ValueError(f"attribute_fn returned {len(found)} rows for {len(todo)} conversations")
    out = list(ctrls)
    for i, a in zip(todo, found):
        out[i] = with_attributes(out[i], a)
    return out


def _example_attribute_controls(gen, examples: Sequence[Example], merged: list[Controls],
                                controls: Sequence[Controls | None] | None) -> list[Controls]:
    given = controls_list(len(examples), controls)
    out = [with_attributes(m, query_attributes(g) or dict(ex.annotations.attributes) or None)
           for ex, m, g in zip(examples, merged, given)]
    return _fill_attributes([gen.example_conversation(ex) for ex in examples], out, gen.attribute_fn)


# ================================================================================================ emotion vote
def exemplar_emotion_vote(exemplars: Sequence[Exemplar], key: str = EMOTION_KEY) -> str | None:
    """The ED label with the largest summed retrieval score among the exemplars that carry one.

    Weights are ``max(score, 0)`` (a negative similarity gives no support); when every weight is 0 (e.g. exemplars
    without scores) each exemplar counts 1 (a plain majority). Ties go to the label of the highest-scoring exemplar
    among the tied ones (then the earlier one). ``None`` when no exemplar has a label. REG reports an emotion
    accuracy for its generators without saying where the emotion comes from: this vote is our choice."""
    from empathkit.metrics.retrieval import weighted_vote  # one implementation: the acc-emo-exemplar metric's

    return weighted_vote([e.attributes.get(key) or None for e in exemplars], [float(e.score) for e in exemplars])


def _reply_info(exemplars: Sequence[Exemplar], attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    info: dict[str, Any] = {"exemplars": [e.id for e in exemplars], "exemplar_scores": [e.score for e in exemplars]}
    if attributes:
        info["attributes"] = dict(attributes)
    emo = exemplar_emotion_vote(exemplars)
    if emo is not None:
        info["predicted_emotion"] = emo
        info["exemplar_emotions"] = [e.attributes.get(EMOTION_KEY) for e in exemplars]  # for acc-emo-exemplar
    return info


def _cut(tokenizer, text: str, max_tokens: int, keep_end: bool = False) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text.strip()
    return tokenizer.decode(ids[-max_tokens:] if keep_end else ids[:max_tokens]).strip()


# ================================================================================================ configs
class AttributeControlConfig(BaseModel):
    """How attributes and exemplars are written into the input (both generators)."""

    model_config = {"extra": "forbid"}

    attribute_tags: bool = Field(True, description="prefix the query's attribute tags (off: the w/o EA ablation)")
    exemplar_tags: bool = Field(True, description="tag each exemplar with its own attributes (A_ti of Eq. 3)")
    attribute_keys: tuple[str, ...] = Field(ATTRIBUTE_KEYS, description="attributes written as tags, in order")
    exemplar_context: bool = Field(False, description="also write each exemplar's context (its end)")
    context_tokens: int = Field(48, ge=1, description="tokens kept of an exemplar's context (its end)")


class REGPromptConfig(AttributeControlConfig):
    """:class:`REGCausalGenerator`'s options: the attribute options, the exemplar block's version, K and cuts."""

    prompt: str = Field("reg-exemplars-v1", description="version of the exemplar block (EXEMPLAR_PROMPTS)")
    max_exemplars: int = Field(5, ge=1, description="K: exemplars written into the system prompt")
    exemplar_tokens: int = Field(64, ge=1, description="tokens kept of each exemplar response")


# ================================================================================== causal: exemplar system prompt
ExemplarItem = tuple[str, str, str]  # (tags, context, response)


def _exemplar_block_v1(query_tags: str, items: Sequence[ExemplarItem]) -> str | None:
    parts = []
    if query_tags:
        parts.append(f"# Emotion attributes of the user's message\n{query_tags}")
    if items:
        lines = ["# Replies from similar conversations",
                 "Listeners replied to similar messages like this. Use them as guidance for tone and content; "
                 "do not copy them."]
        for n, (tags, ctx, resp) in enumerate(items, start=1):
            lines.append(f"Exemplar {n}{' ' + tags if tags else ''}:")
            if ctx:
                lines.append(f"Context: {ctx}")
            lines.append(f"Reply: {resp}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) or None


EXEMPLAR_PROMPTS: Registry[Callable[[str, Sequence[ExemplarItem]], "str | None"]] = Registry("REG exemplar prompt")
EXEMPLAR_PROMPTS.register("reg-exemplars-v1", _exemplar_block_v1)  # a changed text is a new version name


class REGCausalGenerator(CausalLMGenerator):
    """A causal LM with the query's attribute tags and its top-K exemplars (with their attributes) in the system
    prompt (module docstring). ``system_prompt``: the base prompt, as for :class:`CausalLMGenerator`;
    ``attribute_fn``: query attributes for conversations that come without any (chat / serve)."""

    name = "reg-causal"

    def __init__(self, model, tokenizer, config: REGPromptConfig | None = None, system_prompt=None,
                 attribute_fn: AttributeFn | None = None, info: dict[str, Any] | None = None,
                 default_settings=None, source_dir=None):
        self.reg = config or REGPromptConfig()
        self._block = EXEMPLAR_PROMPTS.get(self.reg.prompt)
        super().__init__(model, tokenizer, system_prompt, {"exemplar_prompt": self.reg.prompt} | (info or {}),
                         default_settings, source_dir)
        self.attribute_fn = attribute_fn

    def exemplars(self, controls: Controls | None) -> list[Exemplar]:
        return list((controls or Controls()).exemplars[:self.reg.max_exemplars])

    def exemplar_block(self, controls: Controls | None) -> str | None:
        """The REG part of the system prompt: query tags and exemplars (``None`` when there is neither)."""
        r = self.reg
        qtags = attribute_tags(query_attributes(controls), r.attribute_keys) if r.attribute_tags else ""
        items = []
        for e in self.exemplars(controls):
            tags = attribute_tags(e.attributes, r.attribute_keys) if r.exemplar_tags else ""
            ctx = _cut(self.tokenizer, " ".join(e.context), r.context_tokens, keep_end=True) \
                if r.exemplar_context and e.context else ""
            items.append((tags, ctx, _cut(self.tokenizer, e.response, r.exemplar_tokens)))
        return self._block(qtags, items)

    def system_prompt(self, controls: Controls | None = None) -> str | None:
        parts = [super().system_prompt(controls), self.exemplar_block(controls)]
        return "\n\n".join(p for p in parts if p) or None

    def prompt(self, messages: Conversation, controls: Controls | None, settings) -> str:
        msgs = list(messages)
        block = self.exemplar_block(controls)
        first = next((i for i, m in enumerate(msgs) if m["role"] == "system"), None)
        if first is not None and block:  # the conversation's own system message keeps the exemplars
            msgs[first] = {**msgs[first], "content": f"{msgs[first]['content']}\n\n{block}"}
        msgs = with_system(msgs, self.system_prompt(controls))
        return render(self.tokenizer, fit_messages(self.tokenizer, msgs, settings.max_prompt_tokens))

    def example_controls(self, examples, controls=None) -> list[Controls]:
        return _example_attribute_controls(self, examples, super().example_controls(examples, controls), controls)

    def resolve_controls(self, conversations, controls):
        return _fill_attributes(conversations, super().resolve_controls(conversations, controls), self.attribute_fn)

    def reply_info(self, controls: Controls) -> dict[str, Any]:
        return _reply_info(self.exemplars(controls), query_attributes(controls))


# ================================================================================================ seq2seq: FiD
class REGFiDGenerator(FiDGenerator):
    """Fusion-in-Decoder with REG's attribute prefix on every passage (format ``reg-fid-v1``, module docstring):
    G1 (trained on one or no exemplar) and G2 (top-K exemplars) of the T5 variant. ``config``: the seq2seq model
    options (``max_exemplars`` = K, ``exemplar_tokens``); ``reg``: the attribute options."""

    name = "reg-fid"

    def __init__(self, model, tokenizer, config=None, reg: AttributeControlConfig | None = None,
                 attribute_fn: AttributeFn | None = None, info: dict[str, Any] | None = None,
                 default_settings=None, source_dir=None):
        self.reg = reg or AttributeControlConfig()
        super().__init__(model, tokenizer, config, {"passages": PASSAGE_FORMAT} | (info or {}), default_settings,
                         source_dir)
        self.attribute_fn = attribute_fn

    def passages(self, source: str, controls: Controls) -> list[str]:
        r = self.reg
        qtags = attribute_tags(query_attributes(controls), r.attribute_keys) if r.attribute_tags else ""
        head = f"{qtags}\n" if qtags else ""
        out = []
        for e in self.exemplars(controls):
            ids = self.tokenizer(e.response, add_special_tokens=False)["input_ids"][:self.config.exemplar_tokens]
            resp = self.tokenizer.decode(ids).strip()  # cut as FiDGenerator cuts
            tags = attribute_tags(e.attributes, r.attribute_keys) if r.exemplar_tags else ""
            ctx = ""
            if r.exemplar_context and e.context:
                ctx = f"Exemplar context: {_cut(self.tokenizer, ' '.join(e.context), r.context_tokens, True)}\n"
            out.append(f"{head}{ctx}Exemplar{' ' + tags if tags else ''}: {resp}\n{source}")
        return out or [head + source]

    def example_controls(self, examples, controls=None) -> list[Controls]:
        return _example_attribute_controls(self, examples, super().example_controls(examples, controls), controls)

    def reply_info(self, controls: Controls) -> dict[str, Any]:
        return _reply_info(self.exemplars(controls), query_attributes(controls))

    def chat(self, conversations, settings=None, controls=None, *, on_text=None, should_stop=None,
             progress: bool = False, desc: str | None = None):
        convs = [list(c) for c in conversations]
        ctrls = _fill_attributes(convs, controls_list(len(convs), controls), self.attribute_fn)
        return super().chat(convs, settings, ctrls, on_text=on_text, should_stop=should_stop, progress=progress,
                            desc=desc)

    def save(self, run_dir):
        raise NotImplementedError("REG run directories come with REG's training stages (issue 14): saving this as a "
                                  "plain seq2seq run would drop the attribute options")


# ====================================================================================== FiD of a REG model section
def seq2seq_config(mc):
    """The :class:`~empathkit.methods.seq2seq.Seq2SeqConfig` of a REG model section (FiD over K exemplars, no gold
    emotion in the input; ``system_prompt`` replaces the default instruction when set)."""
    from empathkit.methods.seq2seq import DEFAULT_INSTRUCTION, Seq2SeqConfig

    return Seq2SeqConfig(backbone=mc.backbone, dtype=mc.dtype, instruction=mc.system_prompt or DEFAULT_INSTRUCTION,
                         use_emotion=False, use_situation=False, fusion="fid", max_exemplars=mc.k,
                         exemplar_tokens=mc.exemplar_tokens)


def fid_generator(model, tokenizer, mc, attribute_fn=None, source_dir=None, info=None):
    reg = AttributeControlConfig(attribute_tags=mc.attribute_tags, exemplar_tags=mc.exemplar_tags,
                                 exemplar_context=mc.exemplar_context, context_tokens=mc.context_tokens)
    return REGFiDGenerator(model, tokenizer, seq2seq_config(mc), reg, attribute_fn=attribute_fn, info=info,
                           source_dir=source_dir)
