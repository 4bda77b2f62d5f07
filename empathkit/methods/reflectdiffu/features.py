"""Examples / chat conversations → per-example features (computed once) → padded batches.

One :class:`Item` per context: the context words with their ``<em>/<noem>`` tags (a turn's own annotation when it
has tokens + tags, else the reason source's tags; the listener's words always ``<noem>``), the reasoning states h~
of every word (ERA, cached per turn), the VADER vote of the user's words, p_intent of the last user turn, the gold
emotion / response intent when known, and the response words. The oldest words are dropped to fit
``max_context_tokens``. :func:`collate` pads a list of items and builds the extended-vocabulary ids of the
pointer-generator (each row's OOV context words get ids V, V+1, …; a response word that is such a word gets it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from empathkit.data.emotions import EMOTION_TO_ID, POSITIVE_EMOTIONS, normalise_emotion
from empathkit.methods.reflectdiffu.encoder import (
    REASON_CTX,
    REASON_EM,
    REASON_NOEM,
    REASON_PAD,
)
from empathkit.methods.reflectdiffu.experts import vote
from empathkit.methods.reflectdiffu.sources import (
    EM,
    INTENTS,
    IntentPrior,
    ReasonSource,
    vader_compounds,
)
from empathkit.methods.reflectdiffu.vocab import (
    CTX_ID,
    EOS_ID,
    PAD_ID,
    SOS_ID,
    UNK_ID,
    Vocab,
)
from empathkit.types import Example, Turn

INTENT_ID = {x: i for i, x in enumerate(INTENTS)}


@dataclass
class Item:
    key: str  # stable text key: seeds this row's diffusion / sampling noise
    tokens: list[str]
    tags: list[int]
    h: torch.Tensor | None  # (W, era_dim) float16, the h~ of the kept words
    hm: torch.Tensor | None  # (W,) bool: words the ERA encoded
    vote: str
    p_intent: np.ndarray
    emotion: int = -1
    intent: int = -1
    target: list[str] | None = None


def conversation_turns(messages: Sequence[dict[str, str]]) -> list[Turn]:
    """OpenAI-style messages → turns (user = speaker, assistant = listener; system messages are not context)."""
    return [Turn("speaker" if m["role"] == "user" else "listener", m["content"])
            for m in messages if m["role"] in ("user", "assistant")]


def stable_seed(text: str, seed: int) -> int:
    return (int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") + seed) % 2 ** 63


class Featurizer:
    def __init__(self, vocab: Vocab, reasons: ReasonSource | None, prior: IntentPrior | None, max_tokens: int,
                 max_target: int, vader_threshold: float = 0.05):
        self.vocab, self.reasons, self.prior = vocab, reasons, prior
        self.max_tokens, self.max_target, self.vader_threshold = max_tokens, max_target, vader_threshold
        self._turn_cache: dict[tuple[str, str], tuple[list[str], list[int], torch.Tensor | None]] = {}

    def _turns(self, turns: Sequence[Turn]) -> list[tuple[list[str], list[int], torch.Tensor | None]]:
        todo = list({(t.role, t.text): t for t in turns if (t.role, t.text) not in self._turn_cache}.values())
        words = [[w.lower() for w in t.annotation.tokens] if t.annotation is not None and t.annotation.tokens
                 else self.vocab.words(t.text) for t in todo]
        need_tags = [i for i, t in enumerate(todo) if t.role == "speaker"
                     and not (t.annotation is not None and t.annotation.tokens and t.annotation.reason_tags)]
        tagged = dict(zip(need_tags, self.reasons.tag([words[i] for i in need_tags]))) \
            if self.reasons is not None and need_tags else {}
        states: list = [None] * len(todo)
        if self.reasons is not None and todo:
            with torch.no_grad():
                h, m = self.reasons.reason_states([ws or ["."] for ws in words])
            states = [(h[i, :len(ws)].to(torch.float16).cpu(), m[i, :len(ws)].cpu()) for i, ws in enumerate(words)]
        for i, (t, ws) in enumerate(zip(todo, words)):
            a = t.annotation
            if t.role == "listener":
                tags = [REASON_NOEM] * len(ws)
            elif a is not None and a.tokens and a.reason_tags:
                tags = [REASON_EM if x == EM else REASON_NOEM for x in a.reason_tags]
            elif i in tagged:
                tags = [REASON_EM if x == EM else REASON_NOEM for x in tagged[i]]
            else:
                tags = [REASON_NOEM] * len(ws)
            self._turn_cache[(t.role, t.text)] = (ws, tags, states[i])
        return [self._turn_cache[(t.role, t.text)] for t in turns]

    def items(self, contexts: Sequence[Sequence[Turn]], emotions: Sequence[str | None] | None = None,
              intents: Sequence[str | None] | None = None, targets: Sequence[str | None] | None = None,
              seed: int = 0) -> list[Item]:
        n = len(contexts)
        if len(self._turn_cache) > 200_000:  # a long-running server: do not grow without bound
            self._turn_cache.clear()
        flat = [t for c in contexts for t in c]
        for i in range(0, len(flat), 32):  # the reason source sees batches of turns
            self._turns(flat[i:i + 32])
        last_user = [next((t.text for t in reversed(c) if t.role == "speaker"), c[-1].text if c else "")
                     for c in contexts]
        user_text = [" ".join(t.text for t in c if t.role == "speaker") for c in contexts]
        votes = [vote(x, self.vader_threshold) for x in vader_compounds(user_text)]
        p_int = (self.prior.predict_proba(last_user) if self.prior is not None
                 else np.full((n, len(INTENTS)), 1.0 / len(INTENTS), dtype=np.float32))
        out = []
        for i, ctx in enumerate(contexts):
            toks, tags, hs, hms = [], [], [], []
            for ws, tg, h in self._turns(ctx):
                ps, owner = self.vocab.pieces(ws)
                toks += ps
                tags += [tg[j] for j in owner]
                if h is not None:
                    hs.append(h[0])
                    hms.append(h[1])
            keep = self.max_tokens - 1  # CTX takes one position
            toks, tags = (toks[-keep:], tags[-keep:]) if toks else (["<unk>"], [REASON_NOEM])
            h = torch.cat(hs)[-keep:] if hs else None
            hm = torch.cat(hms)[-keep:] if hms else None
            emo = normalise_emotion(emotions[i]) if emotions and emotions[i] else None
            it = intents[i] if intents else None
            tgt = targets[i] if targets else None
            key = "\n".join(f"{t.role}: {t.text}" for t in ctx)
            out.append(Item(key=str(stable_seed(key, seed)), tokens=toks, tags=tags, h=h, hm=hm, vote=votes[i],
                            p_intent=np.asarray(p_int[i], dtype=np.float32),
                            emotion=EMOTION_TO_ID.get(emo, -1) if emo else -1, intent=INTENT_ID.get(it, -1),
                            target=(self.vocab.pieces(self.vocab.words(tgt))[0][: self.max_target - 1]
                                    if tgt is not None else None)))
        return out

    def example_items(self, examples: Sequence[Example], with_target: bool = True, seed: int = 0) -> list[Item]:
        return self.items([ex.context for ex in examples], [ex.emotion for ex in examples],
                          [ex.annotations.target.intent if ex.annotations.target else None for ex in examples],
                          [ex.target for ex in examples] if with_target else None, seed)


def collate(items: Sequence[Item], vocab: Vocab, era_dim: int | None = None) -> dict:
    """Padded tensors of a batch (see the module docstring)."""
    B, V = len(items), len(vocab)
    L = 1 + max(len(it.tokens) for it in items)
    ids = torch.full((B, L), PAD_ID, dtype=torch.long)
    reason = torch.full((B, L), REASON_PAD, dtype=torch.long)
    ext = torch.full((B, L - 1), PAD_ID, dtype=torch.long)
    oovs: list[list[str]] = []
    for i, it in enumerate(items):
        base = vocab.ids(it.tokens)
        row_oov: list[str] = []
        for j, (t, b) in enumerate(zip(it.tokens, base)):
            if b == UNK_ID and t != "<unk>":
                if t not in row_oov:
                    row_oov.append(t)
                ext[i, j] = V + row_oov.index(t)
            else:
                ext[i, j] = b
        oovs.append(row_oov)
        ids[i, 0], reason[i, 0] = CTX_ID, REASON_CTX
        ids[i, 1:1 + len(base)] = torch.tensor(base)
        reason[i, 1:1 + len(base)] = torch.tensor(it.tags)
    out = {"ids": ids, "reason_ids": reason, "src_ext": ext, "src_pad": ids[:, 1:].eq(PAD_ID),
           "n_oov": max((len(o) for o in oovs), default=0), "oovs": oovs, "votes": [it.vote for it in items],
           "p_intent": torch.tensor(np.stack([it.p_intent for it in items])),
           "emotion": torch.tensor([it.emotion for it in items]), "intent": torch.tensor([it.intent for it in items]),
           "keys": [it.key for it in items]}
    out["positive"] = torch.tensor([0 <= it.emotion and _is_pos(it.emotion) for it in items])
    if era_dim is not None:
        W = max((len(it.h) for it in items if it.h is not None), default=1)
        h = torch.zeros(B, W, era_dim)
        hm = torch.zeros(B, W, dtype=torch.bool)
        for i, it in enumerate(items):
            if it.h is not None and len(it.h):
                h[i, :len(it.h)] = it.h.float()
                hm[i, :len(it.h)] = it.hm
        out["h"], out["h_mask"] = h, hm
    if all(it.target is not None for it in items):
        T = 1 + max(len(it.target) for it in items)
        dec_in = torch.full((B, T), PAD_ID, dtype=torch.long)
        dec_out = torch.full((B, T), PAD_ID, dtype=torch.long)
        for i, it in enumerate(items):
            tid = [vocab.index.get(t, V + oovs[i].index(t) if t in oovs[i] else UNK_ID) for t in it.target]
            dec_in[i, :1 + len(tid)] = torch.tensor([SOS_ID] + tid)
            dec_out[i, :1 + len(tid)] = torch.tensor(tid + [EOS_ID])
        out["dec_in"], out["dec_out"] = dec_in, dec_out
    return out


_POS_IDS = None


def _is_pos(emotion_id: int) -> bool:
    global _POS_IDS
    if _POS_IDS is None:
        _POS_IDS = {EMOTION_TO_ID[e] for e in POSITIVE_EMOTIONS}
    return emotion_id in _POS_IDS
