"""``method: reg`` configuration (docs/methods/reg.md): the ``model`` section (:class:`REGModelConfig`: the shared
causal-LM fields + K, retrieval mode, the index's :class:`~empathkit.methods.reg.index.RetrievalConfig`, the
exemplar-prompt options of :class:`~empathkit.methods.reg.generator.REGPromptConfig`) and the ``train`` section
(:class:`REGTrainConfig`: the shared causal-LM fields for G1 + ``stages`` + ``index_from`` + the nested
``retriever`` section, whose schema is ``empathkit.methods.reg.retriever.RetrieverTrainConfig``, imported lazily).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from empathkit.methods.reg.index import RetrievalConfig, normalise_mode
from empathkit.training.config import LMModelConfig, LMTrainConfig

STAGES = ("g1", "retriever", "g2", "joint")  # g2 = G2 on L_G2 alone; joint = Eq. 7 (G2 + retriever); one of them


class REGModelConfig(LMModelConfig):
    """``model:`` — the causal backbone / LoRA fields of :class:`LMModelConfig` plus REG's retrieval and prompt."""

    k: int = Field(4, ge=1, description="exemplars retrieved per request and written into the prompt (K)")
    mode: Literal["reg", "semantic"] = Field(
        "reg", description="reg: cosine + attribute agreement; semantic: cosine only (no-emotion-attributes / LEMPEx "
                           "baseline, never needs the EPITOME classifiers)")
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig,
                                       description="the exemplar index: encoder, attribute source, score weights; "
                                                   "its data section defaults to the run's data section")
    attribute_tags: bool = Field(True, description="write the query's attribute tags into the prompt (Eq. 2)")
    exemplar_template: str = Field("reg-exemplars-v1", description="exemplar block version (generator.EXEMPLAR_PROMPTS)")
    exemplar_tags: bool = Field(True, description="tag each exemplar with its own attributes")
    exemplar_context: bool = Field(False, description="also write each exemplar's context (its end)")
    exemplar_tokens: int = Field(64, ge=1, description="tokens kept of each exemplar response")
    context_tokens: int = Field(48, ge=1, description="tokens kept of an exemplar's context (its end)")

    @field_validator("mode", mode="before")
    @classmethod
    def _alias(cls, v):
        return normalise_mode(v) if isinstance(v, str) else v

    @field_validator("exemplar_template")
    @classmethod
    def _template(cls, v):
        from empathkit.methods.reg.generator import EXEMPLAR_PROMPTS

        if v not in EXEMPLAR_PROMPTS.names():
            raise ValueError(f"unknown exemplar template {v!r}; expected one of {sorted(EXEMPLAR_PROMPTS.names())}")
        return v

    @model_validator(mode="after")
    def _attributes_available(self):
        if self.retrieval.attributes.source == "none":
            if self.mode == "reg":
                raise ValueError("mode 'reg' needs emotion attributes: with retrieval.attributes.source=none use "
                                 "mode=semantic")
            if self.attribute_tags:
                raise ValueError("attribute_tags needs emotion attributes: with retrieval.attributes.source=none set "
                                 "attribute_tags=false")
        return self

    @property
    def needs_query_attributes(self) -> bool:
        """Whether requests need the query's attributes (for the tags or the ``reg`` score)."""
        return self.attribute_tags or self.mode == "reg"

    def prompt_config(self):
        """The :class:`~empathkit.methods.reg.generator.REGPromptConfig` of these fields."""
        from empathkit.methods.reg.generator import REGPromptConfig

        return REGPromptConfig(attribute_tags=self.attribute_tags, exemplar_tags=self.exemplar_tags,
                               exemplar_context=self.exemplar_context, context_tokens=self.context_tokens,
                               prompt=self.exemplar_template, max_exemplars=self.k,
                               exemplar_tokens=self.exemplar_tokens)


def retriever_config_cls():
    """``RetrieverTrainConfig`` (reg/retriever.py), or ``None`` when that module is not in this install."""
    try:
        from empathkit.methods.reg.retriever import RetrieverTrainConfig
    except ImportError:
        return None
    return RetrieverTrainConfig


class REGTrainConfig(LMTrainConfig):
    """``train:`` — the shared causal-LM fields (they train G1) plus the REG stages."""

    stages: list[str] = Field(default_factory=lambda: ["g1", "retriever", "joint"],
                              description="stages to run, in order: g1 (Eq. 2), retriever (Sec. 3.2.3), then g2 "
                                          "(G2 on L_G2 alone) or joint (Eq. 7: G2 + retriever)")
    index_from: str | None = Field(None, description="a prebuilt index folder copied into run_dir/index (rebuilt "
                                                     "there only where its build config differs)")
    retriever: dict[str, Any] = Field(default_factory=dict,
                                      description="stage 2 options (reg.retriever.RetrieverTrainConfig)")
    g2: dict[str, Any] = Field(default_factory=dict, description="stage 3 options (reg.joint.G2TrainConfig)")
    ablations: list[str] = Field(default_factory=list,
                                 description="Table 2 switches (reg.ablations.ABLATIONS), applied to the whole "
                                             "config before training")

    @field_validator("stages")
    @classmethod
    def _stages(cls, v):
        for s in v:
            if s not in STAGES:
                raise ValueError(f"unknown REG stage {s!r}; expected some of {list(STAGES)}")
        if len(set(v)) != len(v) or [s for s in STAGES if s in v] != list(v):
            raise ValueError(f"stages must be distinct and in the order {list(STAGES)}")
        if not v:
            raise ValueError("no stage to run")
        if "g2" in v and "joint" in v:
            raise ValueError("stages g2 and joint both train G2: give one of them")
        return v

    @field_validator("ablations")
    @classmethod
    def _ablations(cls, v):
        from empathkit.methods.reg.ablations import ABLATIONS, normalise

        out = [normalise(a) for a in v]
        bad = [a for a in out if a not in ABLATIONS]
        if bad:
            raise ValueError(f"unknown REG ablation {bad[0]!r}; expected some of {sorted(ABLATIONS)}")
        return out

    @field_validator("g2")
    @classmethod
    def _g2(cls, v):
        from pydantic import ValidationError

        from empathkit.methods.reg.joint import G2TrainConfig

        try:
            G2TrainConfig(**v)
        except ValidationError as e:
            raise ValueError("g2: " + "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
                                                for err in e.errors())) from None
        return v

    def g2_config(self):
        from empathkit.config import validate
        from empathkit.methods.reg.joint import G2TrainConfig

        return validate(G2TrainConfig, self.g2, "train.g2")

    @model_validator(mode="after")
    def _retriever(self):
        """Validated against ``RetrieverTrainConfig`` when reg/retriever.py is installed (when it is not, a run
        with the ``retriever`` stage fails at its start, in ``train_reg``, before any work)."""
        cls = retriever_config_cls()
        if cls is not None:
            from pydantic import ValidationError

            try:
                cls(**self.retriever)
            except ValidationError as e:
                raise ValueError("retriever: " + "; ".join(
                    f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())) from None
        return self

    def retriever_config(self):
        from empathkit.config import validate

        cls = retriever_config_cls()
        if cls is None:
            from empathkit.errors import ConfigError

            raise ConfigError("stage 'retriever' needs empathkit.methods.reg.retriever, which is not in this install")
        return validate(cls, self.retriever, "train.retriever")


class REGConfig(BaseModel):
    """Both sections (``MethodSpec.config_cls``)."""

    model_config = {"extra": "forbid"}

    model: REGModelConfig = Field(default_factory=REGModelConfig)
    train: REGTrainConfig = Field(default_factory=REGTrainConfig)
