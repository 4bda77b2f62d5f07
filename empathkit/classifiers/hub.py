"""Online alternative: a Hugging Face sequence-classification checkpoint with the same predict API.

Used when a kind is pointed at a Hub id or a local transformers folder (``load_classifier(kind, source=...)`` or
``$EMPATHKIT_CLASSIFIER_<KIND>``), e.g. ``SamLowe/roberta-base-go-emotions`` for ``goemotions`` as in ECG-LoRA.
Always loaded with ``trust_remote_code=False``. Labels come from the checkpoint's ``id2label``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from empathkit.classifiers.core import ClassifierConfig, LabelPredictions, _check_inputs
from empathkit.errors import ResourceMissing


class HubClassifier(LabelPredictions):
    def __init__(self, source: str, kind: str, input: str = "text", max_length: int = 128):
        try:
            import torch  # noqa: F401
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
            self.model = AutoModelForSequenceClassification.from_pretrained(source, trust_remote_code=False)
        except OSError as e:
            raise ResourceMissing(f"could not load classifier {source!r} for kind {kind!r}: {str(e).splitlines()[0]} "
                                  f"(offline? train the local one: empathkit classifiers train {kind})") from None
        self.model.eval()
        id2label = self.model.config.id2label
        labels = [str(id2label[i]).lower() for i in range(len(id2label))]
        multi = getattr(self.model.config, "problem_type", None) == "multi_label_classification"
        self.config = ClassifierConfig(kind=kind, labels=labels, multi_label=multi, input=input, encoder=source,
                                       max_seq_length=max_length, threshold=0.5)
        self.path = None

    labels = property(lambda self: self.config.labels)
    kind = property(lambda self: self.config.kind)

    def predict_proba(self, inputs: Sequence, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        import torch

        pair = self.config.input == "pair"
        _check_inputs(inputs, pair)
        out = []
        order = sorted(range(len(inputs)), key=lambda i: len(str(inputs[i])))  # length-sorted → per-batch padding
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            batch = [inputs[i] for i in idx]
            if pair:
                enc = self.tokenizer([a for a, _ in batch], [b for _, b in batch], truncation=True,
                                     max_length=self.config.max_seq_length, padding=True, return_tensors="pt")
            else:
                enc = self.tokenizer(list(batch), truncation=True, max_length=self.config.max_seq_length,
                                     padding=True, return_tensors="pt")
            with torch.no_grad():
                logits = self.model(**enc).logits.float()
            p = torch.sigmoid(logits) if self.config.multi_label else torch.softmax(logits, dim=-1)
            out.extend(zip(idx, p.numpy()))
        res = np.zeros((len(inputs), len(self.labels)), dtype=np.float32)
        for i, row in out:
            res[i] = row
        return res
