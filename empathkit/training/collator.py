"""The training collator for causal-LM fine-tuning (examples are encoded by :mod:`empathkit.models.encoding`,
the one prompt builder shared with generation)."""

from __future__ import annotations

from empathkit.models.encoding import IGNORE


class Collator:
    """Right-pads a batch (labels with -100) via transformers' ``DataCollatorForSeq2Seq``; ``emotion_id`` is stacked
    separately into ``emotion_ids``."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None):
        from transformers import DataCollatorForSeq2Seq

        self.tokenizer = tokenizer
        self.inner = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE,
                                            pad_to_multiple_of=pad_to_multiple_of, return_tensors="pt")

    def __call__(self, features: list[dict]) -> dict:
        import torch

        emo = [f.get("emotion_id", -1) for f in features]
        feats = [{k: v for k, v in f.items() if k in ("input_ids", "attention_mask", "labels")} for f in features]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "right"  # training: right padding keeps position ids of real tokens at 0..n
        try:
            batch = self.inner(feats)
        finally:
            self.tokenizer.padding_side = side
        batch["emotion_ids"] = torch.tensor(emo, dtype=torch.long)
        return batch
