"""EmPO DPO stage on a tiny random Llama: adapter-disabled reference, loss decreases, draws change between epochs
inside one training run, and the merged-SFT policy's reference equals the SFT model."""

from __future__ import annotations

import copy

import pytest
import torch

from empathkit.data.preference import PreferenceBuilder
from empathkit.methods.empo.config import DPOSection
from empathkit.methods.empo.dpo import EpochRedrawDataset, build_dpo_trainer
from empathkit.testing import make_dialogues

BETA = 0.1


def _completion_logps(model, batch) -> torch.Tensor:
    """Summed log-probs of the completion tokens (manual: full logits, no TRL code)."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    return (lp * batch["completion_mask"][:, 1:]).sum(-1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from empathkit.models.backbones import tiny_random_llama

    from empathkit.data.protocols import to_examples

    model, tok = tiny_random_llama(seed=1)
    pool = to_examples(make_dialogues(), "last-listener")
    prompts = [ex for ex in pool if ex.emotion == "joyful"]  # 4 prompts, rejected drawn from the 4 'sad' ones
    builder = PreferenceBuilder(prompts, candidates=pool, seed=5, system_prompt="Be kind.")
    epoch_pairs, _ = builder.build_epochs(2)
    dcfg = DPOSection(beta=BETA, learning_rate=5e-3, epochs=2, batch_size=4, gradient_accumulation_steps=1,
                      lr_scheduler_type="constant", logging_steps=1, save_steps=10_000)
    trainer, redraw = build_dpo_trainer(model, tok, epoch_pairs, dcfg, tmp_path_factory.mktemp("dpo"), seed=0,
                                        max_prompt_length=48, max_completion_length=24, progress=False,
                                        record_draws=True)
    fixed = trainer.data_collator([redraw.base[i] for i in redraw.index[0]])
    redraw.served.clear()
    trainer.model.eval()
    with torch.no_grad():
        loss_before = float(trainer.compute_loss(trainer.model, fixed))
    trainer.train()
    trainer.model.eval()
    with torch.no_grad():
        loss_after = float(trainer.compute_loss(trainer.model, fixed))
    return dict(trainer=trainer, redraw=redraw, builder=builder, epoch_pairs=epoch_pairs, fixed=fixed,
                loss_before=loss_before, loss_after=loss_after)


def test_dpo_steps_decrease_the_dpo_loss(trained):
    assert trained["loss_before"] == pytest.approx(0.6931, abs=1e-3)  # fresh LoRA: policy == reference
    assert trained["loss_after"] < trained["loss_before"] - 0.01


def test_rejected_draws_change_between_epochs_inside_one_run(trained):
    served, pairs = trained["redraw"].served, trained["epoch_pairs"]
    assert {e for e, _ in served} == {0, 1}
    for e in (0, 1):
        got = sorted(s for ep, s in served if ep == e)
        assert got == sorted(p.rejected_source_id for p in pairs[e])  # each epoch serves exactly its own draw
    assert [p.rejected_source_id for p in pairs[0]] != [p.rejected_source_id for p in pairs[1]]
    assert trained["trainer"].state.global_step == 2  # 4 pairs / batch 4 × 2 epochs, one optimiser state


def test_reference_logps_are_the_adapter_disabled_policy(trained):
    trainer = trained["trainer"]
    model = trainer.model
    assert "ref" not in model.peft_config and trainer.ref_model is None
    one = {k: v[[0, 4]] for k, v in trained["fixed"].items()}  # pair 0: chosen row 0, rejected row 4
    with model.disable_adapter():
        disabled = _completion_logps(model, one)
    enabled = _completion_logps(model, one)
    assert not torch.allclose(enabled, disabled, atol=1e-3)  # the trained adapter changes the log-probs
    # the log-probs TRL's loss uses as reference, recovered from its logged rewards: r = β (logπ − logπ_ref)
    model.eval()  # TRL files metrics under "eval" when the model is in eval mode
    trainer._metrics["eval"].clear()
    with torch.no_grad():
        trainer.compute_loss(model, one)
    m = trainer._metrics["eval"]
    ref_chosen = m["logps/chosen"][-1] - m["rewards/chosen"][-1] / BETA
    ref_rejected = m["logps/rejected"][-1] - m["rewards/rejected"][-1] / BETA
    assert ref_chosen == pytest.approx(float(disabled[0]), rel=1e-4, abs=1e-3)
    assert ref_rejected == pytest.approx(float(disabled[1]), rel=1e-4, abs=1e-3)
    assert m["logps/chosen"][-1] == pytest.approx(float(enabled[0]), rel=1e-4, abs=1e-3)


def test_merged_sft_policy_reference_equals_the_sft_model():
    """new-on-merged-sft: with the SFT LoRA folded into the weights, 'adapter disabled' is exactly the SFT model."""
    from peft import LoraConfig, get_peft_model

    from empathkit.models.backbones import tiny_random_llama

    base, tok = tiny_random_llama(seed=2)
    sft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for n, p in sft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)  # a "trained" SFT adapter
    batch = tok(["Hello there, how are you?"], return_tensors="pt")
    batch["completion_mask"] = torch.ones_like(batch["input_ids"])
    sft_logps = _completion_logps(sft, batch)
    with sft.disable_adapter():
        base_logps = _completion_logps(sft, batch)
    merged = copy.deepcopy(sft).merge_and_unload()
    dpo = get_peft_model(merged, LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for n, p in dpo.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    with dpo.disable_adapter():
        ref = _completion_logps(dpo, batch)
    assert torch.allclose(ref, sft_logps, atol=1e-3) and not torch.allclose(ref, base_logps, atol=1e-2)


def test_redraw_dataset_checks_equal_epoch_sizes():
    import datasets

    from empathkit.errors import ConfigError

    ds = datasets.Dataset.from_list([{"draw_epoch": 0, "rejected_source_id": "a"},
                                     {"draw_epoch": 1, "rejected_source_id": "b"},
                                     {"draw_epoch": 1, "rejected_source_id": "c"}])
    with pytest.raises(ConfigError, match="same number of pairs"):
        EpochRedrawDataset(ds)
    ok = EpochRedrawDataset(ds.select([0, 1]))
    ok.set_epoch(1)
    assert ok[0]["rejected_source_id"] == "b"
    ok.set_epoch(2)  # more epochs than draws: cycles
    assert ok[0]["rejected_source_id"] == "a"
