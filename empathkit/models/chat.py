"""The one prompt builder, shared by training, generation, chat, serving and EmPO's preference pairs.

- Speaker (seeker) turns become ``user`` messages, listener turns ``assistant`` messages; leading listener turns are
  dropped (a conversation starts with the user: Gemma-style templates require it, and training and inference must
  see the same prompt); an optional system prompt comes first.
- :func:`render` applies the tokenizer's chat template; a template without a system role (Gemma) gets the system
  prompt folded into the first user turn; a tokenizer without a template gets a plain documented fallback format.
- :func:`fit_messages` drops the oldest turns (never the last user turn) until the prompt fits ``max_prompt_tokens``;
  a last user turn that cannot fit even alone is clipped to its last tokens (the budget is never exceeded).
"""

from __future__ import annotations

from typing import Sequence

from empathkit.types import Example, Turn

ROLE_MAP = {"speaker": "user", "listener": "assistant"}


def conversation_messages(turns: Sequence[Turn], system_prompt: str | None = None,
                          target: str | None = None) -> list[dict[str, str]]:
    """Messages for context ``turns`` (and, for training, the ``target`` listener reply as the last message)."""
    ctx = list(turns)
    while ctx and ctx[0].role != "speaker":
        ctx = ctx[1:]
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    msgs += [{"role": ROLE_MAP[t.role], "content": t.text} for t in ctx]
    if target is not None:
        msgs.append({"role": "assistant", "content": target})
    return msgs


def example_messages(ex: Example, system_prompt: str | None = None) -> list[dict[str, str]]:
    return conversation_messages(ex.context, system_prompt)


def with_system(messages: Sequence[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    """``messages`` with ``system_prompt`` first unless they already carry a system message."""
    msgs = list(messages)
    if system_prompt and not any(m["role"] == "system" for m in msgs):
        msgs = [{"role": "system", "content": system_prompt}] + msgs
    return msgs


def render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        except Exception:  # noqa: BLE001 — templates without a system role (Gemma): fold it into the first user turn
            if messages and messages[0]["role"] == "system" and len(messages) > 1:
                folded = [{"role": messages[1]["role"], "content": messages[0]["content"] + "\n\n" +
                           messages[1]["content"]}]
                return tokenizer.apply_chat_template(folded + list(messages[2:]), tokenize=False,
                                                     add_generation_prompt=add_generation_prompt)
            raise
    # models without a chat template: a plain, documented fallback format
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
    return text + ("Assistant:" if add_generation_prompt else "")


def _n_tokens(tokenizer, messages: list[dict[str, str]]) -> int:
    return len(tokenizer(render(tokenizer, messages))["input_ids"])


def clip_text_tokens(tokenizer, text: str, keep: int) -> str:
    """The last ``keep`` tokens of ``text`` (decoded back to text): how an over-long last user turn is clipped."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= keep:
        return text
    return tokenizer.decode(ids[len(ids) - max(keep, 0):], skip_special_tokens=True).strip() if keep > 0 else ""


def fit_messages(tokenizer, messages: list[dict[str, str]], max_prompt_tokens: int | None) -> list[dict[str, str]]:
    """Drop the oldest non-system turns until the rendered prompt has at most ``max_prompt_tokens`` tokens; when the
    system prompt and the last user turn alone are still too long, that turn is clipped to its last tokens (so no
    prompt ever exceeds the budget: an over-long message cannot stall the model)."""
    if not max_prompt_tokens:
        return messages
    msgs = list(messages)
    system = [m for m in msgs if m["role"] == "system"][:1]
    rest = [m for m in msgs if m["role"] != "system"]
    while len(rest) > 1 and _n_tokens(tokenizer, system + rest) > max_prompt_tokens:
        rest = rest[1:]
        while len(rest) > 1 and rest[0]["role"] != "user":
            rest = rest[1:]
    if rest and (over := _n_tokens(tokenizer, system + rest) - max_prompt_tokens) > 0:
        last = rest[-1]["content"]
        n = len(tokenizer(last, add_special_tokens=False)["input_ids"])
        for _ in range(4):  # re-tokenising the decoded text can merge differently: re-check, clip a little more
            n -= over
            clipped = clip_text_tokens(tokenizer, last, n)
            rest = rest[:-1] + [{**rest[-1], "content": clipped}]
            over = _n_tokens(tokenizer, system + rest) - max_prompt_tokens
            if over <= 0 or n <= 0:
                break
    return system + rest


def context_window(model, tokenizer) -> int | None:
    """The model's context length in tokens (``max_position_embeddings`` / ``n_positions``, else the tokenizer's
    ``model_max_length`` when it is a real limit), or None when neither says."""
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    v = getattr(tokenizer, "model_max_length", None)
    return v if isinstance(v, int) and 0 < v < 1_000_000 else None
