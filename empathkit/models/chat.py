"""Chat formatting: an ``Example`` (or a raw message list) → the model's chat template.

Speaker (seeker) turns become ``user`` messages, listener turns ``assistant`` messages; an optional system prompt
comes first. ``max_prompt_tokens`` drops the oldest turns (never the last user turn) until the prompt fits.
"""

from __future__ import annotations

from empathkit.types import Example

ROLE_MAP = {"speaker": "user", "listener": "assistant"}


def example_messages(ex: Example, system_prompt: str | None = None, user_prefix: str = "") -> list[dict[str, str]]:
    msgs: list[dict[str, str]] = []
    if system_prompt:
        msgs.append({"role": "system", "content": system_prompt})
    for i, t in enumerate(ex.context):
        content = t.text
        if i == 0 and user_prefix and t.role == "speaker":
            content = user_prefix + content
        msgs.append({"role": ROLE_MAP[t.role], "content": content})
    return msgs


def render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    # models without a chat template: a plain, documented fallback format
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
    return text + ("Assistant:" if add_generation_prompt else "")


def fit_messages(tokenizer, messages: list[dict[str, str]], max_prompt_tokens: int | None) -> list[dict[str, str]]:
    """Drop the oldest non-system turns until the rendered prompt has at most ``max_prompt_tokens`` tokens."""
    if not max_prompt_tokens:
        return messages
    msgs = list(messages)
    system = [m for m in msgs if m["role"] == "system"][:1]
    rest = [m for m in msgs if m["role"] != "system"]
    while len(rest) > 1 and len(tokenizer(render(tokenizer, system + rest))["input_ids"]) > max_prompt_tokens:
        rest = rest[1:]
        while len(rest) > 1 and rest[0]["role"] != "user":
            rest = rest[1:]
    return system + rest
