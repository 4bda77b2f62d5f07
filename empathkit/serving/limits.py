"""Request bounds of the chat API, checked before a request reaches the model: visible content, token budgets.

- **Content**: user and system messages must have a visible character; no message may contain a control character
  other than tab / newline / carriage return (a NUL-only message is a 400, never a reply). Nothing is stripped
  silently: a request is either accepted as sent or rejected with the message index and the reason.
- **Tokens, not characters**: every message is counted with the generator's own tokenisation, in a thread of its
  own (:class:`TokenCounter`) with a time limit; the input size is already capped by the server's character and
  body limits, so tokenising is bounded in size and time. The prompt estimate is the message tokens plus a fixed
  per-message template overhead plus the method's system prompt.
- **Budget** (:func:`prompt_budget`): prompt tokens ≤ the model's context − ``max_tokens``, lowered by
  ``ServerSettings.max_prompt_tokens`` or the generator's own ``max_prompt_tokens``. The job's
  ``GenerationSettings.max_prompt_tokens`` is set to the same budget, so the prompt builder
  (:func:`empathkit.models.chat.fit_messages`) enforces it exactly on the rendered prompt as well.
- **Overflow** (:func:`fit_request`): history beyond the budget is dropped from the oldest turns (reported in the
  reply's ``empathkit.truncation``); a last user message that cannot fit even alone is a 400
  ``context_length_exceeded`` (``overflow="error"``, the default) or clipped to its last tokens and reported
  (``overflow="truncate"``).

Hand-written: the budget arithmetic and the per-message plan are specific to this server.
"""

from __future__ import annotations

import asyncio
import copy
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from empathkit.models.chat import clip_text_tokens, context_window

TURN_OVERHEAD = 8  # template tokens around one message (role markers, end of turn), rounded up for ChatML / Llama
PROMPT_OVERHEAD = 8  # the generation prompt ("<|im_start|>assistant\n") and BOS
ALLOWED_CONTROLS = frozenset("\t\n\r")


class Rejected(Exception):
    """A request the server answers with a 4xx error before it reaches the model."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def check_contents(messages: Sequence[dict[str, str]]) -> None:
    """Reject control characters anywhere and empty (or invisible-only) user / system messages."""
    for i, m in enumerate(messages):
        text = m["content"]
        bad = next((c for c in text if unicodedata.category(c) == "Cc" and c not in ALLOWED_CONTROLS), None)
        if bad is not None:
            raise Rejected(400, f"messages[{i}].content contains the control character U+{ord(bad):04X}",
                           f"messages[{i}].content", "invalid_content")
        visible = any(not c.isspace() and unicodedata.category(c) not in ("Cc", "Cf") for c in text)
        if not visible and m["role"] in ("user", "system"):
            raise Rejected(400, f"messages[{i}].content is empty (no visible characters)", f"messages[{i}].content",
                           "empty_content")


class TokenCounter:
    """Counts and clips tokens with the generator's tokenisation, off the event loop and the model thread.

    A generator with a Hugging Face ``tokenizer`` gets a private copy of it (the model thread sets padding on the
    shared one; the Rust tokenizer refuses concurrent use); any other generator is asked through
    ``Generator.count_tokens``."""

    def __init__(self, generator, timeout: float = 2.0):
        tok = getattr(generator, "tokenizer", None)
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="empathkit-tokens")
        if tok is not None:
            tok = copy.deepcopy(tok)
            self._count: Callable[[str], int] = lambda t: len(tok(t, add_special_tokens=False)["input_ids"])
            self._clip: Callable[[str, int], str] = lambda t, k: clip_text_tokens(tok, t, k)
        else:
            self._count, self._clip = generator.count_tokens, self._clip_by_chars
        self.context = context_window(getattr(generator, "model", None), tok)

    def _clip_by_chars(self, text: str, keep: int) -> str:
        """The longest end of ``text`` with at most ``keep`` tokens (binary search over characters)."""
        lo, hi = 0, len(text)  # keep text[len - lo:] fits; find the largest
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._count(text[len(text) - mid:]) <= keep:
                lo = mid
            else:
                hi = mid - 1
        return text[len(text) - lo:].strip()

    async def _run(self, fn, *args):
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._executor, fn, *args), self.timeout)
        except asyncio.TimeoutError:
            raise Rejected(400, f"the input could not be tokenised within {self.timeout:g} s; send less text",
                           "messages", "tokenization_timeout") from None

    async def count(self, texts: Sequence[str]) -> list[int]:
        return await self._run(lambda: [self._count(t) for t in texts])

    async def clip(self, text: str, keep: int) -> str:
        return await self._run(self._clip, text, keep)

    def count_now(self, text: str) -> int:
        return self._count(text)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def system_prompt_tokens(generator, counter: TokenCounter) -> int:
    """The largest system prompt the method adds (a few representative controls), in tokens; 0 without one."""
    from empathkit.types import Controls

    fn = getattr(generator, "system_prompt", None)
    if not callable(fn):
        return 0
    most = 0
    for c in (Controls(), Controls(emotion="devastated", emotion_source="request"),
              Controls(emotion="apprehensive", emotion_source="request")):
        try:
            sp = fn(c)
        except Exception:  # noqa: BLE001 - a method whose system prompt needs more controls: fit_messages still bounds it
            continue
        if sp:
            most = max(most, counter.count_now(sp) + TURN_OVERHEAD)
    return most


def prompt_budget(context: int | None, max_new: int, *limits: int | None) -> int | None:
    """Prompt tokens allowed: context − max_new, lowered by any of ``limits`` (None = no limit)."""
    caps = [x for x in limits if x]
    if context:
        caps.append(context - max_new)
    return min(caps) if caps else None


@dataclass
class Plan:
    messages: list[dict[str, str]]
    prompt_tokens: int  # the estimate after fitting
    truncation: dict[str, Any] | None  # None: sent as is


async def fit_request(messages: list[dict[str, str]], counter: TokenCounter, budget: int | None, system_tokens: int,
                      overflow: str = "error") -> Plan:
    """Fit ``messages`` into ``budget`` tokens: drop the oldest turns, then (``overflow="truncate"``) clip the last
    user message, or raise :class:`Rejected` (``overflow="error"``)."""
    counts = await counter.count([m["content"] for m in messages])
    has_system = any(m["role"] == "system" for m in messages)
    fixed = PROMPT_OVERHEAD + (0 if has_system else system_tokens)
    sizes = [n + TURN_OVERHEAD for n in counts]
    total = fixed + sum(sizes)
    if budget is None or total <= budget:
        return Plan(list(messages), total, None)
    keep = [i for i, m in enumerate(messages) if m["role"] == "system"][:1]
    rest = [i for i, m in enumerate(messages) if m["role"] != "system"]
    used = fixed + sum(sizes[i] for i in keep)
    dropped = 0
    while len(rest) > 1 and used + sum(sizes[i] for i in rest) > budget:  # oldest first, as the prompt builder does
        rest, dropped = rest[1:], dropped + 1
        while len(rest) > 1 and messages[rest[0]]["role"] != "user":
            rest, dropped = rest[1:], dropped + 1
    out = [dict(messages[i]) for i in keep + rest]
    est = used + sum(sizes[i] for i in rest)
    info: dict[str, Any] = {"dropped_messages": dropped, "clipped_tokens": 0, "budget": budget}
    if est > budget:
        last, room = rest[-1], budget - used - TURN_OVERHEAD
        if overflow != "truncate" or room < 1:
            raise Rejected(400, f"the last message is {counts[last]} tokens; with the system prompt and template this "
                           f"server accepts at most {max(room, 0)} tokens for it (prompt budget {budget} = context − "
                           "max_tokens, or the configured max_prompt_tokens)", "messages", "context_length_exceeded")
        out[-1]["content"] = await counter.clip(messages[last]["content"], room)
        (n,) = await counter.count([out[-1]["content"]])
        info["clipped_tokens"] = counts[last] - n
        est = used + n + TURN_OVERHEAD
    info["prompt_tokens_estimate"] = est
    return Plan(out, est, info)
