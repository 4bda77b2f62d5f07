"""Tokenise ``Example``s for causal-LM training and scoring through the backbone's chat template, with loss masks.

What the loss covers ("listener turns only"): every token is masked (label -100) except the **target listener
turn** (its text and the template's end-of-turn token). This holds in both example protocols: under
``every-listener`` each listener turn of a dialogue is the target of one example (with its own history as
context), under ``last-listener`` only the last one is. Speaker turns, the system prompt and template markup never
carry loss. ``train_on="all-listener"`` additionally unmasks the earlier listener turns inside the context.

The conversation is split into segments (masked template/speaker text, trainable listener text) by rendering the
chat template on growing message prefixes; each segment is tokenised on its own and the ids are concatenated, so the
prompt part tokenises exactly as it does at generation time.
"""

from __future__ import annotations

from typing import Callable, Sequence

from empathkit.errors import DataError
from empathkit.models.chat import conversation_messages, render
from empathkit.types import Example

IGNORE = -100


def segments(tokenizer, msgs: list[dict[str, str]], train_on: str = "target") -> list[tuple[str, bool]]:
    """Split the rendered conversation into ``(text, trainable)`` pieces. The final assistant turn is trainable;
    with ``train_on='all-listener'`` every assistant turn is."""
    full = render(tokenizer, msgs, add_generation_prompt=False)
    if not getattr(tokenizer, "chat_template", None) and tokenizer.eos_token:
        full = full.rstrip("\n") + tokenizer.eos_token  # the fallback format has no end-of-turn token: teach EOS
    out: list[tuple[str, bool]] = []
    pos = 0
    last = len(msgs) - 1
    for i, m in enumerate(msgs):
        if m["role"] != "assistant" or (i != last and train_on != "all-listener") or i == 0:
            continue
        head = render(tokenizer, msgs[:i], add_generation_prompt=True)
        end = len(full) if i == last else len(render(tokenizer, msgs[:i + 1], add_generation_prompt=False))
        if not full.startswith(head) or head and len(head) < pos:
            raise DataError(f"the chat template of {type(tokenizer).__name__} does not render message prefixes as "
                            "prefixes of the whole conversation; use train_on=target or a different template",
                            field="train.train_on")
        body = full[len(head):end]
        stripped = body.rstrip()  # keep the end-of-turn token as the last label, not the trailing newline
        out.append((full[pos:len(head)], False))
        out.append((stripped, True))
        pos = len(head) + len(stripped)
    out.append((full[pos:], False))
    return [(t, tr) for t, tr in out if t]


def encode_example(tokenizer, example: Example, system_prompt: str | None = None, max_length: int = 128,
                   train_on: str = "target") -> dict[str, list[int]]:
    """``input_ids``, ``attention_mask`` and ``labels`` (-100 outside the trainable listener turn(s)).

    Too long: the oldest context turns are dropped first; if the prompt is still too long, its oldest tokens are cut
    (keeping at least half of ``max_length`` for the target, whose end is cut only when it alone is too long)."""
    turns = list(example.context)
    while True:
        msgs = conversation_messages(turns, system_prompt, target=example.target)
        ids: list[int] = []
        labels: list[int] = []
        for text, trainable in segments(tokenizer, msgs, train_on):
            piece = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += piece
            labels += piece if trainable else [IGNORE] * len(piece)
        if len(ids) <= max_length or len(turns) <= 1:
            break
        turns = turns[1:]
    if len(ids) > max_length:
        first_target = next((i for i, lab in enumerate(labels) if lab != IGNORE), len(labels))
        n_target = len(ids) - first_target
        keep_prompt = max(max_length - n_target, min(first_target, max_length // 2))
        keep_target = max_length - keep_prompt
        ids = ids[first_target - keep_prompt:first_target] + ids[first_target:first_target + keep_target]
        labels = labels[first_target - keep_prompt:first_target] + labels[first_target:first_target + keep_target]
    if all(lab == IGNORE for lab in labels):
        raise DataError(f"example {example.id}: nothing left to train on after truncation to {max_length} tokens",
                        field="train.max_length")
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def encode_examples(tokenizer, examples: Sequence[Example], system_prompt_for: Callable[[Example], str | None],
                    max_length: int, train_on: str = "target", progress: bool = False) -> list[dict]:
    """Encode a list of examples; each row also carries ``emotion_id`` (used by ECG-LoRA and gradient logging)."""
    from tqdm.auto import tqdm

    from empathkit.data.emotions import EMOTION_TO_ID

    rows = []
    for ex in tqdm(examples, desc="tokenising", disable=not progress, unit="ex"):
        row = encode_example(tokenizer, ex, system_prompt_for(ex), max_length, train_on)
        row["emotion_id"] = EMOTION_TO_ID.get(ex.emotion, -1)
        rows.append(row)
    return rows
