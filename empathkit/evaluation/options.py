"""Check metric options against what each metric function accepts, before anything runs.

A metric is ``fn(batch, resources=None, **options)``; its keyword parameters are its options. An option is checked
for its name (unknown → a did-you-mean), its type (from the annotation or the default value: ``str``, ``int``,
``float``, ``bool``, a list, a mapping, ``None``; other annotations are not checked) and, for string options with a
closed set of values, its value (``Literal[...]`` annotations, or :data:`CHOICES` for the metrics whose signature
says plain ``str``). Every failure is one :class:`~empathkit.errors.ConfigError` line naming the metric and the option.
"""

from __future__ import annotations

import ast
import difflib
import inspect
from typing import Any, Callable, Mapping, Sequence

from empathkit.errors import ConfigError

# closed sets of string option values that the metric functions take as plain ``str`` (from their docstrings) and
# would otherwise accept silently; a metric whose annotation is ``Literal[...]`` needs no entry here
CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "meteor": {"synonyms": ("auto", "never", "always")},
    "nlpcc2025": {"gscore_norm": ("divide5", "minmax")},
    "perplexity": {"target": ("references", "hypotheses"), "condition": ("none", "context")},
    "bartscore": {"direction": ("ref->hyp", "hyp->ref", "f")},
    "word-choice": {"vad_version": ("v1", "v2.1", "v2"), "stat": ("max", "mean"), "missing": ("zero", "skip")},
    "ec": {"vad_version": ("v1", "v2.1")},
    "emp-f1": {"seeker": ("last-turn", "speaker-turns", "context")},
    "diff-epitome": {"seeker": ("last-turn", "speaker-turns", "context")},
}

_KIND_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "list": "a list", "dict": "a mapping", "null": "null"}
_ANNOTATION_KINDS = {"str": "str", "int": "int", "float": "float", "bool": "bool", "dict": "dict", "Mapping": "dict",
                     "list": "list", "tuple": "list", "Sequence": "list", "None": "null"}


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if not close and len(name) >= 3:  # a prefix: "ecg" → "ecg-lora"
        close = [k for k in known if k.startswith(name)][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def option_parameters(fn: Callable) -> tuple[dict[str, inspect.Parameter], bool]:
    """The options of a metric function (parameters after ``batch`` and ``resources``); True if it takes ``**kw``."""
    params = list(inspect.signature(fn).parameters.values())
    any_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    opts = {p.name: p for p in params[2:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return opts, any_kw


def _literal(annotation: str) -> tuple | None:
    a = annotation.strip()
    for prefix in ("Literal[", "typing.Literal["):
        if a.startswith(prefix) and a.endswith("]"):
            try:
                v = ast.literal_eval(a[len(prefix):-1])
            except (ValueError, SyntaxError):
                return None
            return v if isinstance(v, tuple) else (v,)
    return None


def _kinds(p: inspect.Parameter) -> set[str] | None:
    """Allowed value kinds of one option, or None when its annotation is not one we read."""
    ann = p.annotation
    if isinstance(ann, str) and ann.strip():
        kinds = set()
        for part in ann.split("|"):
            base = part.strip().split("[")[0].replace("typing.", "")
            if base not in _ANNOTATION_KINDS:
                return None
            kinds.add(_ANNOTATION_KINDS[base])
        return kinds
    if ann is not inspect.Parameter.empty:
        return None
    d = p.default
    for typ, kind in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), ((list, tuple), "list"),
                      (dict, "dict")):
        if isinstance(d, typ):
            return {kind}
    return None


def _is(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind in ("int", "float") and isinstance(value, bool):
        return False
    return isinstance(value, {"str": str, "int": int, "float": (int, float), "bool": bool, "list": (list, tuple),
                              "dict": dict}[kind])


def check_options(metric: str, fn: Callable, options: Mapping[str, Any]) -> None:
    """Raise a one-line ConfigError for an option ``fn`` does not take or a value of the wrong type / not allowed."""
    if not isinstance(options, Mapping):
        raise ConfigError(f"metric {metric!r}: options must be a mapping of option → value, got {options!r}")
    params, any_kw = option_parameters(fn)
    for name, value in options.items():
        p = params.get(name)
        if p is None:
            if any_kw:
                continue
            known = ", ".join(params) or "(none)"
            raise ConfigError(f"metric {metric!r} has no option {name!r}{did_you_mean(name, list(params))}; "
                              f"its options: {known}")
        choices = _literal(p.annotation) if isinstance(p.annotation, str) else None
        choices = choices or CHOICES.get(metric, {}).get(name)
        if choices is not None:
            if value not in choices and not (value is None and p.default is None):
                raise ConfigError(f"metric {metric!r}: option {name!r} must be one of {', '.join(map(str, choices))}, "
                                  f"got {value!r}{did_you_mean(str(value), [str(c) for c in choices])}")
            continue
        kinds = _kinds(p)
        if kinds and not any(_is(value, k) for k in kinds):
            want = " or ".join(_KIND_NAMES[k] for k in sorted(kinds, key=list(_KIND_NAMES).index))
            raise ConfigError(f"metric {metric!r}: option {name!r} expects {want}, got {value!r}")
