"""Diversity metrics: Distinct-n in three conventions, the response-tries statistics of Lee et al. (2024), length.

- ``dist``      corpus-level Dist-1/2/3 over NLTK tokens (lower-cased), ×100 — CEM / CASE convention
                (unique n-grams of all responses / all n-grams of all responses).
- ``dist-ws``   corpus-level Dist-1/2/3 over whitespace tokens, ×100 — KEMP convention.
- ``dist-sent`` per-sentence Dist-1/2/3 averaged over responses, NLTK tokens, [0, 1] — EmpGPT-3 / ECG-LoRA
                convention (a response with fewer than n tokens scores 0.0).
- ``response-tries``  # templates, span nodes / total nodes, children of the root, compression ratio,
                # unique start words (EmPO Table 4) — hand-written, see :func:`response_tries`.
- ``length``    mean response length in NLTK tokens.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from typing import Literal, Sequence

from empathkit.metrics.base import Batch, MetricResult, register_metric
from empathkit.metrics.resources import tokenize

NS = (1, 2, 3)


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def concat_ngrams(tokens: Sequence[str], n: int) -> list[str]:
    """KEMP / EmpDG ``get_dist``: an n-gram is its tokens' strings concatenated, so "a"+"bc" == "ab"+"c"."""
    return ["".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_corpus(token_lists: Sequence[Sequence[str]], n: int, bigram: str = "tuple") -> float:
    """Unique n-grams / total n-grams over the whole corpus (0 when there are no n-grams).

    ``bigram='concat'``: n-grams (n ≥ 2) are the concatenated token strings (KEMP / EmpDG), else tuples."""
    seen: set = set()
    total = 0
    for toks in token_lists:
        g = concat_ngrams(toks, n) if bigram == "concat" and n > 1 else ngrams(toks, n)
        seen.update(g)
        total += len(g)
    return len(seen) / total if total else 0.0


def distinct_sentence(tokens: Sequence[str], n: int) -> float:
    g = ngrams(tokens, n)
    return len(set(g)) / len(g) if g else 0.0


@register_metric("dist", family="diversity", description="corpus Dist-1/2/3, NLTK tokens lower-cased, ×100 (CEM/CASE)")
def dist(batch: Batch, resources=None, ns=NS, lower: bool = True, scale: float = 100.0) -> MetricResult:
    toks = [tokenize(h, "nltk", lower) for h in batch.hypotheses]
    agg = {f"dist-{n}": scale * distinct_corpus(toks, n) for n in ns}
    return MetricResult("dist", agg, None, {"tokenize": "nltk", "lowercase": lower, "level": "corpus", "scale": scale})


@register_metric("dist-ws", family="diversity", description="corpus Dist-1/2/3, whitespace tokens, ×100 (KEMP)")
def dist_ws(batch: Batch, resources=None, ns=NS, lower: bool = False, scale: float = 100.0,
            bigram: Literal["tuple", "concat"] = "tuple") -> MetricResult:
    """``bigram``: ``tuple`` (default: n-grams are token tuples) or ``concat`` (KEMP / EmpDG ``get_dist``: the
    tokens' strings concatenated, so "a bc" and "ab c" are the same bigram)."""
    if bigram not in ("tuple", "concat"):
        raise ValueError(f"bigram must be tuple | concat, got {bigram!r}")
    toks = [tokenize(h, "whitespace", lower) for h in batch.hypotheses]
    agg = {f"dist-ws-{n}": scale * distinct_corpus(toks, n, bigram) for n in ns}
    return MetricResult("dist-ws", agg, None, {"tokenize": "whitespace", "lowercase": lower, "level": "corpus",
                                               "scale": scale, "bigram": bigram})


@register_metric("dist-sent", family="diversity", description="per-sentence Dist-1/2/3 averaged over responses, NLTK tokens, [0,1] (ECG-LoRA)")
def dist_sent(batch: Batch, resources=None, ns=NS, lower: bool = True) -> MetricResult:
    toks = [tokenize(h, "nltk", lower) for h in batch.hypotheses]
    per = {f"dist-sent-{n}": [distinct_sentence(t, n) for t in toks] for n in ns}
    agg = {k: (sum(v) / len(v) if v else 0.0) for k, v in per.items()}
    return MetricResult("dist-sent", agg, per, {"tokenize": "nltk", "lowercase": lower, "level": "sentence",
                                                "scale": "[0,1]"})


@register_metric("length", family="diversity", higher_is_better=True, description="mean response length in NLTK tokens")
def length(batch: Batch, resources=None) -> MetricResult:
    per = [float(len(tokenize(h, "nltk"))) for h in batch.hypotheses]
    return MetricResult("length", {"length": sum(per) / len(per) if per else 0.0}, {"length": per},
                        {"tokenize": "nltk", "unit": "tokens"})


# ------------------------------------------------------------------------------------------------ response tries
class _Trie:
    __slots__ = ("children",)

    def __init__(self):
        self.children: dict[str, "_Trie"] = {}

    def insert(self, seq: Sequence[str]) -> None:
        node = self
        for t in seq:
            node = node.children.setdefault(t, _Trie())

    def size(self) -> int:
        """Number of nodes including the root (as ``num_nodes`` of Lee et al.)."""
        count, stack = 0, [self]
        while stack:
            cur = stack.pop()
            count += 1
            stack.extend(cur.children.values())
        return count


def _all_ngrams(tokens: Sequence[str], max_n: int | None) -> list[tuple[str, ...]]:
    top = len(tokens) if max_n is None else min(len(tokens), max_n)
    out = []
    for n in range(2, top + 1):
        out.extend(ngrams(tokens, n))
    return out


def _replace(tokens: list[str], span: tuple[str, ...], sym: str) -> list[str]:
    """Left-to-right, non-overlapping replacement of ``span`` by ``sym`` (token level)."""
    out, i, n = [], 0, len(span)
    while i < len(tokens):
        if tuple(tokens[i:i + n]) == span:
            out.append(sym)
            i += n
        else:
            out.append(tokens[i])
            i += 1
    return out


def _span_name(span: tuple[str, ...]) -> str:
    """String folding: like the original's ``"span_%s" % str(hash("__".join(ngram)))[1:17]``, 16 digits, so a
    later substring replacement meets names of the same shape (Python's ``hash`` is not stable across versions;
    blake2b stands in for it)."""
    import hashlib

    digest = int.from_bytes(hashlib.blake2b("__".join(span).encode("utf-8"), digest_size=8).digest(), "big")
    return f"span_{digest % 10**16:016d}"


def _replace_string(tokens: list[str], span: tuple[str, ...], sym: str) -> list[str]:
    """The original's folding: ``" ".join(tokens).replace(" ".join(span), sym)`` re-tokenised with NLTK — a
    substring replacement, so "i am" also matches inside "hi am" (→ the token "hspan_0")."""
    return tokenize(" ".join(tokens).replace(" ".join(span), sym), "nltk")


def spanify(responses: Sequence[Sequence[str]], max_span: int | None = None,
            folding: str = "token") -> tuple[list[list[str]], dict[str, tuple[str, ...]]]:
    """Fold repeated token spans into span symbols until no n-gram (n ≥ 2) occurs twice (Lee et al. 2024).

    Hand-written (no library does this): a re-implementation of ``SpanProcessor.spanify`` from
    MichiganNLP/empathy_eval with incremental n-gram counts and a lazy max-heap instead of a full recount per
    iteration. Each iteration picks the n-gram with the highest weight ``len × count`` (count = occurrences over
    all responses, count ≥ 2), ties → the shortest, then the first occurrence (response index, position), and
    replaces its occurrences with a new symbol. Differences from the original: replacement is token-level (the
    original replaces in the space-joined string, which can also match inside longer tokens) and ``max_span``
    optionally caps the n-gram length (``None`` = no cap, as in the original). ``folding='string'`` replaces as
    the original does (in the space-joined string, then re-tokenised; see :func:`_replace_string`).
    Returns the templates (responses with span symbols) and the span table (symbol → its tokens).
    """
    data = [list(r) for r in responses]
    counts: Counter = Counter()
    where: dict[tuple, set[int]] = defaultdict(set)

    def pos(g: tuple) -> int:
        """Position of ``g``'s first occurrence in its first response (the last tie-break)."""
        toks, n = data[min(where[g])], len(g)
        return next((p for p in range(len(toks) - n + 1) if tuple(toks[p:p + n]) == g), 0)

    def key(g: tuple) -> tuple:
        # (−weight, length, first response). Kept lazily in the heap: a stale entry is never worse than the
        # truth (counts only fall, the first response only moves later, except where an n-gram gains
        # occurrences, and those are pushed again). The position inside the response is *not* in the heap key:
        # folding an earlier part of the response moves it left, which a lazy heap would not notice.
        c = counts[g]
        return (-(len(g) * c if c > 1 else 1), len(g), min(where[g]))

    def add(i: int) -> list[tuple]:
        gs = _all_ngrams(data[i], max_span)
        counts.update(gs)
        for g in gs:
            where[g].add(i)
        return gs

    def remove(i: int) -> None:
        gs = _all_ngrams(data[i], max_span)
        counts.subtract(gs)
        for g in set(gs):
            where[g].discard(i)
            if counts[g] <= 0:
                del counts[g]
                where.pop(g, None)

    def valid(entry: tuple) -> bool:
        """Is the entry current? A stale one is pushed again with its current key."""
        g = entry[-1]
        if counts.get(g, 0) < 2:
            return False
        cur = key(g)
        if cur != entry[:-1]:
            heapq.heappush(heap, cur + (g,))
            return False
        return True

    for i in range(len(data)):
        add(i)
    heap = [key(g) + (g,) for g, c in counts.items() if c >= 2]
    heapq.heapify(heap)
    spans: dict[str, tuple[str, ...]] = {}
    while heap:
        entry = heapq.heappop(heap)
        if not valid(entry):
            continue
        # the tie group: every current entry with the same (weight, length, first response) → first position
        group = {entry[-1]}
        while heap and heap[0][:-1] == entry[:-1]:
            e = heapq.heappop(heap)
            if valid(e):
                group.add(e[-1])
        g = min(group, key=pos)
        for x in group - {g}:
            heapq.heappush(heap, entry[:-1] + (x,))
        sym = f"span_{len(spans)}" if folding == "token" else _span_name(g)
        spans[sym] = g
        new: set = set()
        for i in sorted(where[g]):
            before = Counter(_all_ngrams(data[i], max_span)) if folding == "string" else None
            remove(i)
            if folding == "string":
                data[i] = _replace_string(data[i], g, sym)
                after = Counter(add(i))  # any n-gram may gain occurrences after re-tokenising
                new.update(x for x, c in after.items() if c > before.get(x, 0))
            else:
                data[i] = _replace(data[i], g, sym)
                new.update(x for x in add(i) if sym in x)
        for x in new:
            if counts.get(x, 0) >= 2:
                heapq.heappush(heap, key(x) + (x,))
    return data, spans


def response_tries(responses: Sequence[str], lower: bool = False, max_span: int | None = None,
                   folding: str = "token") -> dict[str, float]:
    """EmPO Table 4 / Lee et al. (2024) statistics of a set of responses (NLTK tokens, case kept as in the original).

    - ``templates``: number of unique templates (folded responses) — equals the number of unique responses;
    - ``span-nodes`` / ``total-nodes``: span symbols used (recursively) / nodes of the folded trie (root included);
    - ``root-children``: distinct first symbols of the folded trie;
    - ``compression``: nodes of the folded trie / nodes of the plain token trie (higher = less repetition);
    - ``unique-start-words``: distinct first tokens of the responses.
    """
    toks = [tokenize(r, "nltk", lower) for r in responses]
    templates, spans = spanify(toks, max_span, folding)
    folded, unfolded = _Trie(), _Trie()
    for t in templates:
        folded.insert(t)
    for t in toks:
        unfolded.insert(t)
    # span nodes: symbols reachable from the templates. With string folding, as the original's span_frequency,
    # every token *starting with* "span_" counts, also one a later substring replacement glued to other text
    is_span = (lambda x: x.startswith("span_")) if folding == "string" else (lambda x: x in spans)
    used: set = set()
    stack = [s for t in templates for s in t if is_span(s)]
    while stack:
        s = stack.pop()
        if s not in used:
            used.add(s)
            stack.extend(x for x in spans.get(s, ()) if is_span(x))
    total = folded.size()
    return {
        "templates": float(len({tuple(t) for t in templates})),
        "span-nodes": float(len(used)),
        "total-nodes": float(total),
        "span-node-ratio": len(used) / total if total else 0.0,
        "root-children": float(len(folded.children)),
        "compression": total / unfolded.size() if toks else 0.0,
        "unique-start-words": float(len(unfolded.children)),
    }


@register_metric("response-tries", family="diversity", description="response-tries diversity of Lee et al. 2024 (EmPO Table 4)")
def response_tries_metric(batch: Batch, resources=None, lower: bool = False, max_span: int | None = None,
                          folding: Literal["token", "string"] = "token") -> MetricResult:
    """``folding``: ``token`` (default: spans replaced token by token) or ``string`` (as Lee et al.'s
    ``SpanProcessor``: replaced in the space-joined string, then re-tokenised)."""
    if folding not in ("token", "string"):
        raise ValueError(f"folding must be token | string, got {folding!r}")
    stats = response_tries(batch.hypotheses, lower, max_span, folding)
    n = len(batch.hypotheses)
    agg = {f"tries-{k}": v for k, v in stats.items()}
    agg["tries-templates-pct"] = 100.0 * stats["templates"] / n if n else 0.0
    agg["tries-root-children-pct"] = 100.0 * stats["root-children"] / n if n else 0.0
    return MetricResult("response-tries", agg, None, {"tokenize": "nltk", "lowercase": lower, "max_span": max_span,
                                                      "folding": folding, "implementation": "hand-written port of Lee et al. 2024"})
