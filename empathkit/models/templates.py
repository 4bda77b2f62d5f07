"""Structured-prompt templates (NLPCC 2025 Task 8 prompt engineering), named and versioned.

A template has a role definition, a task objective and response guidelines. ``{emotion}`` and ``{situation}`` are
filled from the example when ``use_emotion`` / ``use_situation`` are on (gold labels during evaluation; predicted
or none in chat). Changing a template's text means a new version name: results stay traceable to the prompt used.
"""

from __future__ import annotations

from dataclasses import dataclass

from empathkit.registry import Registry


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    role: str
    objective: str
    guidelines: tuple[str, ...]
    max_new_tokens: int | None = None  # a token cap that goes with the template (length-controlled variant)
    context_last: bool = False  # the per-example context after the guidelines: a longer prefix shared by all prompts

    def render(self, emotion: str | None = None, situation: str | None = None) -> str:
        parts = [f"# Role\n{self.role}", f"# Task\n{self.objective}"]
        ctx = []
        if emotion:
            ctx.append(f"The user seems to feel: {emotion}.")
        if situation:
            ctx.append(f"Their situation: {situation}")
        context = ["# Context\n" + "\n".join(ctx)] if ctx else []
        guidelines = ["# Guidelines\n" + "\n".join(f"- {g}" for g in self.guidelines)]
        parts += guidelines + context if self.context_last else context + guidelines
        return "\n\n".join(parts)


TEMPLATES: Registry[PromptTemplate] = Registry("prompt template")

_ROLE = ("You are a warm, attentive listener in a one-to-one conversation. You are not a therapist and you do not "
         "give medical advice; you respond the way a caring, emotionally intelligent friend would.")
_OBJECTIVE = ("Write the listener's next reply. Recognise what the user feels, show that you understood their "
              "situation, and keep the conversation going in a supportive way.")
_GUIDELINES = (
    "Acknowledge the user's feeling in your own words before anything else.",
    "Refer to a specific detail of what they said; avoid generic phrases.",
    "Match their emotional tone: share joy when they are happy, be gentle when they are hurting.",
    "Ask at most one open question, and only if it helps them continue.",
    "Do not lecture, judge, or give unsolicited lists of advice.",
)

TEMPLATES.register("structured-v1", PromptTemplate("structured-v1", _ROLE, _OBJECTIVE, _GUIDELINES))
# structured-v1's text with the emotion / situation after the guidelines: every prompt then shares the whole role,
# task and guidelines (the prefix the shared-prefix KV cache and continuous batching reuse), not only role + task
TEMPLATES.register("structured-v2", PromptTemplate("structured-v2", _ROLE, _OBJECTIVE, _GUIDELINES, context_last=True))
TEMPLATES.register("length-controlled-v1", PromptTemplate(
    "length-controlled-v1", _ROLE, _OBJECTIVE,
    _GUIDELINES + ("Reply in one or two short sentences (at most 30 words).",), max_new_tokens=40))
TEMPLATES.register("plain", PromptTemplate("plain", "You are a helpful, empathetic conversation partner.",
                                           "Reply to the user.", ()))


def system_prompt_builder(template: str | None = None, use_emotion: bool = False, use_situation: bool = False,
                          fixed: str | None = None):
    """``(emotion, situation) -> system prompt``: a structured template (filled with the emotion / situation when
    asked to), else the ``fixed`` prompt (or none). Training and inference build their system prompts with it."""
    if template:
        tpl = TEMPLATES.get(template)
        return lambda emotion=None, situation=None: tpl.render(emotion if use_emotion else None,
                                                               situation if use_situation else None)
    return lambda emotion=None, situation=None: fixed
