"""``train.target_logits`` (training/trainer.py): the LM head only at positions that predict a target token gives the
same loss and gradients as transformers' full computation, with and without ``num_items_in_batch``, through LoRA;
encoder–decoder models keep the full path."""

from __future__ import annotations

import pytest
import torch

from empathkit.models.backbones import tiny_random_llama, tiny_random_t5
from empathkit.training.config import LMTrainConfig
from empathkit.training.trainer import CausalLMTrainer


def _trainer(model, **cfg) -> CausalLMTrainer:
    t = CausalLMTrainer.__new__(CausalLMTrainer)  # only the loss path: no Trainer set-up needed
    t.model, t.tcfg = model, LMTrainConfig(**cfg)
    return t


def _batch(vocab: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[2, 9:] = 0  # a right-padded row
    labels = torch.full_like(ids, -100)
    labels[0, 8:] = ids[0, 8:]  # targets at different positions per row
    labels[1, 5:10] = ids[1, 5:10]
    labels[2, 6:9] = ids[2, 6:9]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("num_items", [None, 11])
def test_target_logits_loss_and_gradients_equal_the_full_computation(num_items):
    from peft import LoraConfig, get_peft_model

    model, _ = tiny_random_llama(seed=3)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    model.train()
    batch = _batch(model.config.vocab_size)
    emo = torch.full((3,), -1)
    t = _trainer(model)
    assert t._target_logits_ok(batch)

    full_kw = dict(batch, **({"num_items_in_batch": num_items} if num_items else {}))
    full = model(**full_kw).loss
    full.backward()
    g_full = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    out = t._target_logits_forward(model, batch, emo, num_items)
    out.loss.backward()
    g_kept = [p.grad.clone() for p in model.parameters() if p.requires_grad]

    assert out.logits.shape[1] < batch["input_ids"].shape[1]  # the head ran on fewer positions
    assert torch.allclose(out.loss, full, rtol=1e-5, atol=1e-6), (float(out.loss), float(full))
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(g_kept, g_full))
    assert any(float(g.abs().sum()) > 0 for g in g_kept)


def test_off_switch_and_encoder_decoders_keep_the_full_path():
    llama, _ = tiny_random_llama(seed=3)
    t5, _ = tiny_random_t5(seed=3)
    batch = _batch(64)
    assert not _trainer(llama, target_logits=False)._target_logits_ok(batch)
    assert not _trainer(t5)._target_logits_ok(batch)
    assert not _trainer(llama)._target_logits_ok({k: v for k, v in batch.items() if k != "labels"})
