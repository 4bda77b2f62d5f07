"""Request / response shapes of the OpenAI-compatible API (pydantic, strict: unknown request fields are rejected and
no value is coerced — ``"max_tokens": "5"`` or ``true`` is a 400, an integer is accepted where a float is expected).

Accepted but ignored OpenAI fields (so stock clients work): ``presence_penalty``, ``frequency_penalty``, ``user``,
``logprobs`` (must be false/absent), ``parallel_tool_calls``, ``metadata``, ``store``. ``n`` must be 1; ``stop``
(≤ 4 strings) ends the reply before the first stop string, streamed or not: the batcher scans each row's text as it
is decoded and stops that row there. Extra fields: ``emotion`` (one of the 32 EmpatheticDialogues labels, or
``"none"``: skip detection) and ``gate`` (0–1, forces the ECG-LoRA gate).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from empathkit.data.emotions import EMOTIONS


# strict: a number must be a JSON number and a flag a JSON boolean ("5" or true for max_tokens is a 400, never coerced)
STRICT = {"extra": "forbid", "strict": True}


class TextPart(BaseModel):
    model_config = STRICT

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = STRICT

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = Field(None, max_length=64)

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def to_chat(self) -> dict[str, str]:
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}


class StreamOptions(BaseModel):
    model_config = STRICT

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = STRICT

    model: str = Field(..., min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logprobs: bool | None = None
    user: str | None = Field(None, max_length=256)
    metadata: dict[str, str] | None = None
    store: bool | None = None
    parallel_tool_calls: bool | None = None
    # empathkit extras
    emotion: str | None = Field(None, description="force the user's emotion (ED label) or 'none'")
    gate: float | None = Field(None, ge=0.0, le=1.0, description="force the ECG-LoRA gate")

    @field_validator("emotion")
    @classmethod
    def _known_emotion(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().lower()
        if v != "none" and v not in EMOTIONS:
            raise ValueError(f"unknown emotion {v!r}; use 'none' or one of: {', '.join(EMOTIONS)}")
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, v: bool | None) -> bool | None:
        if v:
            raise ValueError("logprobs are not supported")
        return v

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [s for s in ([self.stop] if isinstance(self.stop, str) else self.stop) if s]


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The OpenAI error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
