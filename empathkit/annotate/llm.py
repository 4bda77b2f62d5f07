"""The paper's annotator: an LLM behind any OpenAI-compatible ``/chat/completions`` endpoint (httpx).

ReflectDiffu annotated ED with ChatGLM4 (reason words) and an LLM (intents); neither prompt is published. Ours are
versioned (:data:`REASON_PROMPT_VERSION`, :data:`INTENT_PROMPT_VERSION`) and every record names them
(``llm[<model>]@reason-v1``). One request per turn, ``max_workers`` in parallel, temperature 0.

Every reply is validated as JSON: ``{"tags": [...]}`` with exactly one ``<em>``/``<noem>`` per given token, or
``{"intent": one of the 9 labels}``. A reply that fails (``malformed-json``, ``wrong-tags``, ``wrong-intent``,
``timeout``, ``http-error``) is retried up to ``retries`` times; every failed reply is counted in ``rejected``
(reason → count) and a turn whose last attempt fails comes back as
:class:`~empathkit.annotate.base.Rejected` — the pipeline then skips its dialogue and reports it.

Config (``--llm key=value`` / a dict): ``base_url`` (or ``$EMPATHKIT_LLM_BASE_URL``), ``model``, ``api_key_env``
(the *name* of an environment variable holding the key; none is sent when unset), ``timeout`` (s), ``retries``,
``max_workers``, ``backoff`` (s, times the attempt number), ``json_mode`` (send ``response_format``), ``cache`` (a
JSONL file of the endpoint's replies keyed by the request body: a re-run replays them instead of asking again —
the same replies, so the same tags and rejections; timeouts and HTTP errors are not replies and are not cached).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from pydantic import BaseModel, Field

from empathkit.annotate.base import Rejected
from empathkit.annotate.intents import INTENTS
from empathkit.errors import ConfigError
from empathkit.types import REASON_TAGS

REASON_PROMPT_VERSION = "reason-v1"
INTENT_PROMPT_VERSION = "intent-v1"

REASON_SYSTEM = (
    "You annotate emotional reasoning in conversations. You get the tokens of one utterance of a person telling a "
    "listener about a situation. Mark with <em> every token that expresses the speaker's emotion or names what "
    "causes it (emotion words, negations of them, and the words of the event behind the emotion); mark every other "
    "token, punctuation included, with <noem>. Reply with JSON only, no prose: {\"tags\": [...]} with exactly one "
    "tag per token, in order.")
INTENT_SYSTEM = (
    "You label the empathetic intent of a listener's reply in a conversation. Intents: acknowledging (recognises "
    "what the speaker said or feels), agreeing, consoling (comforts), encouraging, neutral (none of these), "
    "questioning (asks for more), suggesting (gives advice), sympathizing (shares the sorrow), wishing (wishes "
    "well). Reply with JSON only: {\"intent\": \"<one of: " + ", ".join(INTENTS) + ">\"}.")


class LLMConfig(BaseModel):
    model_config = {"extra": "forbid"}

    base_url: str = Field("", description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    model: str = "default"
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the env variable holding the API key")
    timeout: float = Field(30.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    max_workers: int = Field(4, ge=1, le=64)
    backoff: float = Field(0.5, ge=0)
    json_mode: bool = False
    max_tokens: int = Field(512, ge=16)
    cache: str | None = Field(None, description="JSONL file of replies by request body, replayed by re-runs")


class LLMClient:
    """Chat-completion calls with bounded retries; ``rejected`` counts every failed reply by reason."""

    def __init__(self, config: LLMConfig):
        try:
            import httpx
        except ImportError:
            from empathkit.errors import ResourceMissing

            raise ResourceMissing("the llm annotator needs httpx: pip install httpx") from None

        if not config.base_url:
            raise ConfigError("the llm annotator needs base_url (--llm base_url=http://host:port/v1 or "
                              "$EMPATHKIT_LLM_BASE_URL)")
        self.config = config
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=config.base_url.rstrip("/"), headers=headers, timeout=config.timeout)
        self.rejected: Counter = Counter()
        self.requests = self.cached = 0
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}
        if config.cache and os.path.isfile(config.cache):
            with open(config.cache, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        self._cache[rec["key"]] = rec["content"]
                    except (ValueError, KeyError, TypeError):
                        continue  # a partial last line (a killed run): that request is asked again

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | LLMConfig) -> "LLMClient":
        from empathkit.config import validate

        if isinstance(cfg, dict):
            cfg = dict(cfg)
            cfg.setdefault("base_url", os.environ.get("EMPATHKIT_LLM_BASE_URL", ""))
            cfg = validate(LLMConfig, cfg, "llm")
        return cls(cfg)  # type: ignore[arg-type]

    def _complete(self, system: str, user: str, attempt: int = 0) -> str:
        import httpx

        body: dict[str, Any] = {"model": self.config.model, "temperature": 0, "max_tokens": self.config.max_tokens,
                                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
        if self.config.json_mode:
            body["response_format"] = {"type": "json_object"}
        # the attempt is part of the key: a retry asks again (a sampling endpoint may answer better), and a re-run
        # replays each attempt's own reply
        key = hashlib.sha256(json.dumps([body, attempt], sort_keys=True).encode()).hexdigest()
        with self._lock:
            if key in self._cache:
                self.cached += 1
                return self._cache[key]
            self.requests += 1
        try:
            r = self._http.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            raise _Bad("timeout") from None
        except httpx.HTTPError as e:
            raise _Bad("http-error", type(e).__name__) from None
        if r.status_code != 200:  # the endpoint's own error message says why (e.g. over its prompt budget)
            try:
                why = str(r.json()["error"]["message"])
            except (ValueError, KeyError, TypeError):
                why = r.text
            raise _Bad("http-error", f"HTTP {r.status_code}: {why[:200]}")
        try:
            content = str(r.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Bad("malformed-response", "not a chat-completion object") from None
        if self.config.cache:
            with self._lock:
                self._cache[key] = content
                with open(self.config.cache, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": key, "content": content}, ensure_ascii=False) + "\n")
        return content

    def ask(self, system: str, user: str, check: Callable[[Any], Any]) -> Any:
        """Send, parse the reply as JSON, ``check`` it (raises :class:`_Bad` or returns the value); retry."""
        last = _Bad("no-attempt")
        for attempt in range(self.config.retries + 1):
            if attempt and self.config.backoff:
                time.sleep(self.config.backoff * attempt)
            try:
                return check(parse_json(self._complete(system, user, attempt)))
            except _Bad as e:
                last = e
                with self._lock:
                    self.rejected[e.reason] += 1
        return Rejected(last.reason, last.detail)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1 or self.config.max_workers == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(self.config.max_workers) as pool:
            return list(pool.map(fn, items))


class _Bad(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def parse_json(text: str) -> Any:
    """The reply as JSON (a Markdown code fence around it is tolerated); :class:`_Bad` ``malformed-json`` else."""
    m = _FENCE.match(text)
    try:
        return json.loads(m.group(1) if m else text)
    except (json.JSONDecodeError, TypeError):
        raise _Bad("malformed-json", text[:80]) from None


class LLMTagger:
    def __init__(self, client: LLMClient):
        self.client = client
        self.annotator = f"llm[{client.config.model}]@{REASON_PROMPT_VERSION}"

    @property
    def rejected(self) -> Counter:
        return self.client.rejected

    def _one(self, tokens: Sequence[str]):
        n = len(tokens)

        def check(obj):
            tags = obj.get("tags") if isinstance(obj, dict) else None
            if not isinstance(tags, list) or len(tags) != n or not all(t in REASON_TAGS for t in tags):
                got = len(tags) if isinstance(tags, list) else type(tags).__name__
                raise _Bad("wrong-tags", f"expected {n} tags from {list(REASON_TAGS)}, got {got}")
            return list(tags)

        user = json.dumps({"tokens": list(tokens), "n_tokens": n}, ensure_ascii=False)
        return self.client.ask(REASON_SYSTEM, user, check)

    def tag(self, tokens: Sequence[Sequence[str]]) -> list:
        return self.client.map(self._one, list(tokens))


class LLMIntents:
    def __init__(self, client: LLMClient):
        self.client = client
        self.annotator = f"llm[{client.config.model}]@{INTENT_PROMPT_VERSION}"

    @property
    def rejected(self) -> Counter:
        return self.client.rejected

    def _one(self, text: str):
        def check(obj):
            lab = obj.get("intent") if isinstance(obj, dict) else None
            lab = lab.strip().lower() if isinstance(lab, str) else lab
            if lab not in INTENTS:
                raise _Bad("wrong-intent", f"{lab!r} is not one of {list(INTENTS)}")
            return lab

        return self.client.ask(INTENT_SYSTEM, json.dumps({"reply": text}, ensure_ascii=False), check)

    def label(self, texts: Sequence[str]) -> list:
        return self.client.map(self._one, list(texts))
