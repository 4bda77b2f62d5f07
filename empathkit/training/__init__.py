"""Causal-LM fine-tuning machinery shared by the methods (SFT, ECG-LoRA, EmPO's SFT stage), below
:mod:`empathkit.methods`: it imports only ``runconfig``, ``models``, ``data``, ``config``, ``runs`` and ``progress``.

- ``config.py``       the shared ``model:`` / ``train:`` sections (``LMModelConfig``, ``LMTrainConfig``)
- ``backbone.py``     ``load_base``, ``build_lora_model``, ``count_parameters``, ``load_trained``
- ``collator.py``     the right-padding training ``Collator`` (examples are encoded by ``models/encoding.py``)
- ``logs.py``         ``JsonlLog`` / ``JsonlCallback`` (``log.jsonl``)
- ``diagnostics.py``  per-emotion LoRA gradient norms
- ``trainer.py``      ``CausalLMTrainer``: the ``Trainer`` subclass with the hooks ECG-LoRA overrides
- ``driver.py``       ``run_training``, ``training_arguments``, ``resolve_resume``
- ``distributed.py``  multi-process helpers (rank 0 writes, one run dir, launch checks)

Nothing is imported here, so ``import empathkit.training.distributed`` stays cheap.
"""
