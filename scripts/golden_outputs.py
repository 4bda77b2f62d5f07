"""Golden outputs of every built-in method on the tiny random Llama (refactor equivalence check).

Trains sft / ecg-lora / empo for a couple of steps on the written test dialogues, loads each run back, and writes
greedy ``generate`` and ``chat`` outputs (plus the prompt baseline's) to a JSON file. Run it before and after a
refactor and diff the two files: ``python scripts/golden_outputs.py OUT.json [--compare OLD.json]``.
``benchmarks/results/golden-tiny-outputs.json`` holds the outputs from before the Generator-interface refactor
(torch 2.13.0 CPU; the refactor reproduced all 56 of them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--compare", type=Path, default=None)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from empathkit.api import load_generator
    from empathkit.data.jsonl import write_jsonl
    from empathkit.data.protocols import to_examples
    from empathkit.methods import METHODS
    from empathkit.models.generation import GenerationSettings
    from empathkit.testing import make_dialogues

    dialogues = make_dialogues()
    examples = to_examples(dialogues, "every-listener")[:12]
    convs = [[{"role": "user", "content": "I lost my keys and I feel awful."}],
             [{"role": "user", "content": "My sister is visiting!"}, {"role": "assistant", "content": "Nice!"},
              {"role": "user", "content": "We will go hiking."}]]
    # sampling (seeded): the random model's greedy choice is often an end-of-turn token, i.e. empty text
    s = GenerationSettings(max_new_tokens=8, batch_size=4, do_sample=True, temperature=1.0, top_p=1.0, seed=3)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_jsonl(dialogues, root / "d.jsonl")
        base = {"seed": 0, "data": {"source": str(root / "d.jsonl"), "protocol": "every-listener"},
                "train": {"max_steps": 3, "batch_size": 4, "lr": 5e-3, "max_length": 64, "warmup_ratio": 0.0,
                          "early_stopping_patience": None, "save_every": 100}}
        gens = {"prompt": load_generator("prompt", model_config={"backbone": "tiny-random-llama"})}
        model = {"sft": {"backbone": "tiny-random-llama", "lora_r": 4, "system_prompt": "Be kind."},
                 "ecg-lora": {"backbone": "tiny-random-llama", "lora_r": 4, "d_emo": 8},
                 "empo": {"backbone": "tiny-random-llama", "lora_r": 4, "system_prompt": "Be kind."}}
        for m in ("sft", "ecg-lora", "empo"):
            cfg = json.loads(json.dumps(base)) | {"method": m, "model": model[m]}
            if m == "empo":
                cfg["train"]["dpo"] = {"epochs": 1, "batch_size": 2, "gradient_accumulation_steps": 1,
                                       "train_limit": 2, "learning_rate": 1e-3, "save_steps": 100}
            METHODS.get(m).train(cfg, root / m, progress=False)
            gens[m] = load_generator(run_dir=root / m)
        for name, g in gens.items():
            preds = g.generate(examples, s, progress=False)
            replies = g.chat(convs, s)
            out[name] = {"generate": [p.prediction for p in preds], "new_tokens": [p.extra.get("new_tokens") for p in preds],
                         "chat": [r if isinstance(r, str) else r.text for r in replies]}
    a.out.write_text(json.dumps(out, indent=1))
    if a.compare:
        old = json.loads(a.compare.read_text())
        diffs = [(m, k, i) for m in old for k in old[m] for i, (x, y) in enumerate(zip(old[m][k], out[m][k])) if x != y]
        print(f"{len(diffs)} differing outputs" + (f": {diffs[:10]}" if diffs else ""))
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
