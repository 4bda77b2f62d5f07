"""``method: reflectdiffu`` configuration (docs/methods/reflectdiffu.md): the ``model`` section
(:class:`RDModelConfig`: vocabulary, sizes, the component switches, diffusion and intent options) and the ``train``
section (:class:`RDTrainConfig`: Eq. 12 weights, Noam schedule, early stopping, checkpoints).

Where the paper is vague every choice is a named option here, and the docs say which one is the default and why.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

ABLATIONS = ("era", "c_experts", "intent_twice", "emu")


class RDModelConfig(BaseModel):
    """``model:`` — the ReflectDiffu network."""

    model_config = {"extra": "forbid"}

    # vocabulary and embeddings (Sec. 4.3; MoEL-style word tokens)
    tokenizer: Literal["words", "minilm-wordpiece"] = Field(
        "words", description="words: lower-cased NLTK word tokens (MoEL); minilm-wordpiece: MiniLM's WordPiece vocab")
    vocab_size: int = Field(8000, ge=16, description="words: most frequent training words kept (others copy or UNK)")
    min_freq: int = Field(1, ge=1, description="words: minimum training frequency of a kept word")
    embedding_init: Literal["random", "minilm", "glove"] = Field(
        "random", description="random | minilm (MiniLM input embeddings, mean over word pieces, PCA to emb_dim) | "
                              "glove (300-d vectors from glove_path)")
    glove_path: str | None = Field(None, description="a GloVe .txt file (embedding_init: glove)")
    emb_dim: int = Field(128, ge=8, description="word embedding size = model size (paper: 300)")
    heads: int = Field(4, ge=1)
    enc_layers: int = Field(2, ge=1)
    dec_layers: int = Field(2, ge=1)
    ff_dim: int = Field(256, ge=8)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    max_context_tokens: int = Field(128, ge=8, description="context tokens kept (the end of the dialogue)")
    max_target_tokens: int = Field(32, ge=2, description="response tokens trained / scored (with EOS)")

    # the four ablation switches of Table 2 (all off = the plain multi-task transformer baseline)
    use_era: bool = Field(True, description="E^R reason embedding + Attention(H, h~) (off: Q = mean-pool(H))")
    use_c_experts: bool = Field(True, description="two experts + VADER selection + NT-Xent (off: one linear head, CE)")
    use_intent_twice: bool = Field(True, description="Exploring / policy Sampling / Correcting (off: no intent path)")
    use_emu: bool = Field(True, description="two DDPMs + cross-attention fusion (off: the decoder memory is H)")

    # ERA reason states (Sec. 3.2) and the intent prior p_intent (Sec. 3.3.1)
    reason_source: Literal["era", "hash"] = Field(
        "era", description="era: the trained ERA (empathkit.annotate.era); hash: a seeded fake (tests / no ERA)")
    era_path: str | None = Field(None, description="the ERA folder (default: empathkit.annotate.era.default_era_path)")
    intent_prior: Literal["classifier", "uniform"] = Field(
        "classifier", description="p_intent: empathkit's 'intent' classifier on the last user turn, or uniform")
    intent_classifier: str | None = Field(None, description="a classifier folder / hub id (default: the trained one)")
    intent_map: str = Field("paper-table1", description="Intent_refer map name (empathkit.annotate.intents)")
    intent_refer_n: int = Field(3, ge=1, description="intents per emotion group (Table 1: n=3)")
    alpha: float = Field(0.5, ge=0.0, description="Intent_first = p_semantic + alpha * p_intent (Eq. 5)")
    semantic_temperature: float = Field(0.1, gt=0.0, description="p_semantic = softmax(cos(Q, prototypes) / t)")

    # C-Experts (Eq. 4, App. C.2)
    vader_threshold: float = Field(0.05, ge=0.0, lt=1.0, description="|compound| below it counts as neutral")
    ntxent_temperature: float = Field(0.07, gt=0.0)
    inference_selection: Literal["example", "batch"] = Field(
        "example", description="expert choice at inference: each context's own VADER vote (outputs independent of "
                               "batching) or the batch majority as in training")

    # EMU diffusion (Eq. 6-7)
    diffusion_steps: int = Field(50, ge=2, description="T (paper: 1000)")
    beta_start: float = Field(1e-5, gt=0.0, lt=1.0)
    beta_end: float = Field(5e-2, gt=0.0, lt=1.0)
    denoiser_hidden: int = Field(256, ge=8, description="hidden size of the noise predictor M_theta")
    emu_split: Literal["gold-polarity", "all"] = Field(
        "gold-polarity", description="which examples train each DDPM: by the gold emotion's MIME polarity, or all")
    emu_train_state: Literal["x0-estimate", "walk"] = Field(
        "x0-estimate", description="Emo_pos/neg fed to the decoder in training: the differentiable one-step x0 "
                                   "estimate at the loss's t, or a no-grad reverse walk (slower)")

    # policy (Sampling) and reward (Eq. 9)
    policy_hidden: int = Field(128, ge=8)
    behaviour_epsilon: float = Field(0.2, ge=0.0, le=1.0,
                                     description="mu = (1-eps) * pi (detached) + eps * uniform over Intent_refer")
    ratio_clip: float | None = Field(5.0, gt=0.0, description="clip pi/mu at this value (None: no clipping)")
    reward_baseline: Literal["batch-mean", "none"] = Field("batch-mean")

    score_references: bool = Field(True, description="generate also stores each reference's own NLL (extra.ref_nll / "
                                                      "ref_tokens): the perplexity metric then reports the model's PPL")
    # decoding beyond the shared GenerationSettings (which carries no beam width / no-repeat n-gram size yet; their
    # fields, when GenerationSettings gains them, override these: decoding.beam_width / ngram_size)
    num_beams: int = Field(1, ge=1, description="beam width for greedy decoding (1: greedy)")
    no_repeat_ngram_size: int = Field(0, ge=0, description="forbid repeating any n-gram of this size (0: off)")
    length_penalty: float = Field(1.0, ge=0.0, description="beam: score / length**length_penalty")

    @model_validator(mode="after")
    def _check(self):
        if self.emb_dim % self.heads:
            raise ValueError(f"emb_dim {self.emb_dim} must be divisible by heads {self.heads}")
        if self.beta_end <= self.beta_start:
            raise ValueError("beta_end must be larger than beta_start")
        if self.embedding_init == "glove" and not self.glove_path:
            raise ValueError("embedding_init: glove needs glove_path (a GloVe .txt file)")
        return self

    @property
    def baseline(self) -> bool:
        """All four components off: the multi-task transformer (encoder, emotion head, decoder + copy)."""
        return not (self.use_era or self.use_c_experts or self.use_intent_twice or self.use_emu)


class RDTrainConfig(BaseModel):
    """``train:`` — joint training of Eq. 12."""

    model_config = {"extra": "forbid"}

    batch_size: int = Field(16, ge=1)
    max_steps: int | None = Field(2000, ge=1, description="optimizer steps (None: epochs)")
    epochs: float = Field(1.0, gt=0.0, description="used when max_steps is None")
    lr: float = Field(1e-3, gt=0.0, description="peak learning rate (noam: reached at the end of warmup)")
    schedule: Literal["noam", "constant"] = Field("noam", description="noam: lr * min(s/w, sqrt(w/s))")
    warmup_steps: int | None = Field(None, ge=0, description="paper: 6000 (None: warmup_ratio * total steps)")
    warmup_ratio: float = Field(0.1, ge=0.0, le=1.0)
    adam_betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = Field(1e-9, gt=0.0)
    max_grad_norm: float = Field(2.0, gt=0.0)
    max_length: int | None = Field(None, ge=8, description="overrides model.max_context_tokens when given")
    delta: float = Field(1.0, ge=0.0, description="weight of L_em (Eq. 12)")
    zeta: float = Field(1.0, ge=0.0, description="weight of L_twice")
    eta: float = Field(1.0, ge=0.0, description="weight of L_res")
    policy_weight: float = Field(1.0, ge=0.0, description="weight of the policy-gradient term inside L_twice")
    eval_every: int = Field(200, ge=1, description="validation loss every N steps")
    early_stopping_patience: int | None = Field(3, ge=1, description="evaluations without improvement (None: off)")
    eval_metric: Literal["loss", "L_res"] = Field(
        "loss", description="the validation number early stopping and the best-model choice use: the whole Eq. 12 "
                            "loss (paper) or the response NLL L_res (the RL / intent terms are noisy on small runs)")
    save_every: int = Field(200, ge=1, description="checkpoint every N steps (resume continues from the last one)")
    log_every: int = Field(20, ge=1)
    annotated: str | None = Field(
        None, description="merge turn annotations (reason tags, response intents) from an annotated file onto the "
                          "examples: 'lexicon' / 'llm' / … (empathkit.annotate.store.default_annotated_path) or a path")
    resume: bool = Field(False, description="continue from run_dir/checkpoints/last.pt when it exists")
    threads: int | None = Field(None, ge=1, description="torch threads while training (None: unchanged)")


class RDConfig(BaseModel):
    """Both sections (``MethodSpec.config_cls``)."""

    model_config = {"extra": "forbid"}

    model: RDModelConfig = Field(default_factory=RDModelConfig)
    train: RDTrainConfig = Field(default_factory=RDTrainConfig)
