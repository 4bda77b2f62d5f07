"""The G1-decode cache of REG's stage 2: decoded responses for (query, exemplar) pairs on disk, once, resumable."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from empathkit.errors import ConfigError, DataError
from empathkit.methods.reg.distill import distillation_target
from empathkit.methods.reg.utility import Utility
from empathkit.types import Example, Exemplar

# ======================================================================================== G1-decode cache
CACHE_VERSION = 1
Pair = tuple[str, str]  # (query id, exemplar id); "" = no exemplar

# GenerationSettings fields that change the decoded text; sampling-only ones count when do_sample is on
_TEXT_FIELDS = ("max_new_tokens", "do_sample", "repetition_penalty", "no_repeat_ngram_size", "num_beams",
                "max_prompt_tokens", "precision", "backend")
_SAMPLING_FIELDS = ("temperature", "top_p", "seed", "batch_size")


def decode_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a :class:`GenerationSettings` dump that changes the decoded text — what the cache keys on.

    Left out: ``prefix_cache`` (identical outputs by design, models/generation.py), ``gguf`` unless the backend is
    llama-cpp, and under greedy / beam decoding (``do_sample`` off) ``temperature``, ``top_p``, ``seed`` (unused)
    and ``batch_size``: rows are left-padded under an attention mask with mask-following positions, so a row's
    tokens do not depend on its batch-mates except through float rounding (which could in principle flip a
    near-tie) — and one cache already mixes batch compositions anyway (a resumed fill, or the joint stage decoding
    only the missing pairs, batches other pairs together). When sampling, the batch decides the random draws of each
    row, so ``batch_size`` and ``seed`` count. ``precision`` counts (bfloat16 changes the logits). Fields the dump
    lacks take their defaults first (caches written before a field existed keep their key); a mapping that is not
    a GenerationSettings dump is kept whole minus ``prefix_cache``."""
    from pydantic import ValidationError

    from empathkit.models.generation import GenerationSettings

    try:
        full = GenerationSettings.model_validate(dict(settings)).model_dump(mode="json")
    except ValidationError:
        return {k: v for k, v in settings.items() if k != "prefix_cache"}
    keep = _TEXT_FIELDS + (_SAMPLING_FIELDS if full["do_sample"] else ()) + \
        (("gguf",) if full["backend"] == "llama-cpp" else ())
    return {k: full[k] for k in keep}


def cache_key(g1: str | Path, settings: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """What identifies a set of G1 decodes: the G1 run (its path or name), the decoding settings that change the
    text (:func:`decode_settings`) and anything else that changes the decodes (e.g. the passage format version,
    the attribute options)."""
    return {"version": CACHE_VERSION, "g1": str(g1), "settings": decode_settings(settings), **extra}


def _normal(key: Mapping[str, Any]) -> dict[str, Any]:
    """A stored key as :func:`cache_key` builds it now (older files hold every settings field)."""
    out = json.loads(json.dumps(dict(key), sort_keys=True, default=str))
    if isinstance(out.get("settings"), dict):
        out["settings"] = decode_settings(out["settings"])
    return out


def _digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _header(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as f:
            row = json.loads(f.readline())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return row.get("cache_key") if isinstance(row, dict) else None


class DecodeCache:
    """Decoded G1 responses for (query id, exemplar id) pairs, one JSONL file per G1 run + decoding settings, so
    the expensive decodes of Eq. 3 run once and an interrupted fill resumes where it stopped.

    File: ``<root>/g1-decodes-<sha256(key)[:16]>.jsonl``; line 1 ``{"cache_key": {...}}`` (checked on open: a file
    holding another key raises :class:`ConfigError`; a file of the older every-settings-field key that matches on
    the text-changing fields is found and reused), then ``{"query": …, "exemplar": …, "text": …}`` rows, appended
    and flushed after every decoded batch. A torn last line (a crash mid-write) is dropped on open. The first row
    for a pair wins. One writer at a time (rank 0 in distributed training)."""

    def __init__(self, path: str | Path, key: Mapping[str, Any]):
        self.path, self.key = Path(path), dict(key)
        self._rows: dict[Pair, str] = {}
        self._load()

    @classmethod
    def open(cls, root: str | Path, g1: str | Path, settings: Mapping[str, Any], **extra: Any) -> "DecodeCache":
        key = cache_key(g1, settings, **extra)
        path = Path(root) / f"g1-decodes-{_digest(key)}.jsonl"
        if not path.is_file():  # a file written under the older, every-field key holds the same decodes
            want = _normal(key)
            path = next((p for p in sorted(Path(root).glob("g1-decodes-*.jsonl"))
                         if isinstance(h := _header(p), dict) and _normal(h) == want), path)
        return cls(path, key)

    def _load(self) -> None:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as f:
                f.write(json.dumps({"cache_key": self.key}, sort_keys=True, default=str) + "\n")
            return
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):  # a torn last line: keep it only if it is a whole JSON row
            cut = data.rfind(b"\n") + 1
            try:
                json.loads(data[cut:].decode("utf-8"))
                with self.path.open("ab") as f:
                    f.write(b"\n")
            except (UnicodeDecodeError, json.JSONDecodeError):
                with self.path.open("r+b") as f:
                    f.truncate(cut)
        from empathkit.runs import iter_jsonl

        want = _normal(self.key)
        for lineno, row in iter_jsonl(self.path):
            if lineno == 1:
                if not isinstance(row.get("cache_key"), dict) or _normal(row["cache_key"]) != want:
                    raise ConfigError(f"{self.path}: holds decodes of another G1 run / settings "
                                      f"({row.get('cache_key')!r}); expected {want!r}")
                continue
            try:
                pair = (str(row["query"]), str(row["exemplar"]))
                text = str(row["text"])
            except KeyError as e:
                raise DataError(f"missing {e.args[0]!r}", file=str(self.path), line=lineno) from None
            self._rows.setdefault(pair, text)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, pair: Pair) -> bool:
        return tuple(pair) in self._rows

    def get(self, query: str, exemplar: str) -> str | None:
        return self._rows.get((query, exemplar))

    def missing(self, pairs: Iterable[Pair]) -> list[Pair]:
        """The pairs not decoded yet, first occurrence order, without duplicates."""
        seen: set[Pair] = set()
        out = []
        for p in pairs:
            p = (str(p[0]), str(p[1]))
            if p not in self._rows and p not in seen:
                seen.add(p)
                out.append(p)
        return out

    def add(self, rows: Iterable[tuple[str, str, str]]) -> int:
        """Append ``(query, exemplar, text)`` rows (pairs already cached are skipped); returns how many were new."""
        new = [(str(q), str(e), str(t)) for q, e, t in rows if (str(q), str(e)) not in self._rows]
        if not new:
            return 0
        with self.path.open("a", encoding="utf-8") as f:
            for q, e, t in new:
                f.write(json.dumps({"query": q, "exemplar": e, "text": t}, ensure_ascii=False) + "\n")
            f.flush()
        for q, e, t in new:
            self._rows.setdefault((q, e), t)
        return len(new)

    def fill(self, pairs: Sequence[Pair], decode: Callable[[list[Pair]], Sequence[str]],
             batch_size: int = 64) -> dict[Pair, str]:
        """Decode the missing pairs in batches of ``batch_size`` (``decode(pairs) -> texts``), appending each batch
        as soon as it is done, then return the text of every requested pair."""
        todo = self.missing(pairs)
        for b in range(0, len(todo), batch_size):
            chunk = todo[b:b + batch_size]
            texts = list(decode(chunk))
            if len(texts) != len(chunk):
                raise ValueError(f"decode returned {len(texts)} texts for {len(chunk)} pairs")
            self.add((q, e, t) for (q, e), t in zip(chunk, texts))
        return {(str(q), str(e)): self._rows[(str(q), str(e))] for q, e in pairs}


def pair_decoder(generator, queries: Mapping[str, Example], exemplars: Mapping[str, Exemplar], settings=None,
                 progress: bool = False) -> Callable[[list[Pair]], list[str]]:
    """``decode(pairs)`` for :meth:`DecodeCache.fill`: ``Dec(G1, (t_i, A_ti, X, A_x))`` — ``generator`` (any
    :class:`~empathkit.methods.base.Generator`, G1) on each query example with exactly that one exemplar (exemplar
    id ``""``: none; the example's own annotated exemplars are never used). The query's attributes come from the
    example as the generator reads them (``reg.generator`` takes ``Example.annotations.attributes``)."""
    import dataclasses

    from empathkit.types import Controls

    def decode(pairs: list[Pair]) -> list[str]:
        exs = [queries[q] for q, _ in pairs]
        exs = [dataclasses.replace(ex, annotations=dataclasses.replace(ex.annotations, exemplars=())) for ex in exs]
        ctrls = [Controls(exemplars=(exemplars[e],) if e else ()) for _, e in pairs]
        return [p.prediction for p in generator.generate(exs, settings, ctrls, progress=progress)]

    return decode


def targets_from_cache(cache: DecodeCache, query_ids: Sequence[str], candidate_ids: Sequence[Sequence[str]],
                       references: Sequence[str], utility: Utility, tau: float) -> torch.Tensor:
    """Eq. 3 for a batch whose decodes are all cached: ``(B, K)`` target probabilities."""
    decodes = []
    for q, cands in zip(query_ids, candidate_ids, strict=True):
        row = []
        for e in cands:
            t = cache.get(q, e)
            if t is None:
                raise KeyError(f"no cached G1 decode for query {q!r} with exemplar {e!r}: fill the cache first")
            row.append(t)
        decodes.append(row)
    return distillation_target(utility.matrix(decodes, references), tau)
