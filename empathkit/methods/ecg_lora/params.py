"""Analytic parameter counts of the same adapter on the paper's 7–8B backbones (no download needed).

Shapes from the public model configs (hidden size, layers, attention heads × head dim, KV heads, MLP size) and the
published total parameter counts.
"""

from __future__ import annotations

# name: (hidden, layers, q_out, kv_out, intermediate, total_parameters)
PAPER_BACKBONES: dict[str, tuple[int, int, int, int, int, int]] = {
    "Qwen2-7B-Instruct": (3584, 28, 28 * 128, 4 * 128, 18944, 7_615_616_512),
    "Llama-3-8B-Instruct": (4096, 32, 32 * 128, 8 * 128, 14336, 8_030_261_248),
    "Gemma-7B-it": (3072, 28, 16 * 256, 16 * 256, 24576, 8_537_680_896),
}


def lora_shapes(hidden: int, q_out: int, kv_out: int, inter: int) -> dict[str, tuple[int, int]]:
    return {"q_proj": (hidden, q_out), "k_proj": (hidden, kv_out), "v_proj": (hidden, kv_out), "o_proj": (q_out, hidden),
            "gate_proj": (hidden, inter), "up_proj": (hidden, inter), "down_proj": (inter, hidden)}


def paper_backbone_report(r: int, target_modules, d_emo: int = 256, num_emotions: int = 32) -> dict[str, dict]:
    gate = num_emotions * d_emo + d_emo + 1
    out = {}
    for name, (h, layers, q, kv, inter, total) in PAPER_BACKBONES.items():
        shapes = lora_shapes(h, q, kv, inter)
        mods = list(shapes) if target_modules == "all-linear" else [m for m in target_modules if m in shapes]
        lora = layers * sum(r * (shapes[m][0] + shapes[m][1]) for m in mods)
        out[name] = {"base_parameters": total, "lora_parameters": lora, "gate_parameters": gate,
                     "lora_plus_gate_pct": round(100 * (lora + gate) / total, 4),
                     "gate_only_pct": round(100 * gate / total, 6), "target_modules": mods}
    return out
