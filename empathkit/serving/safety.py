"""Crisis safety layer: detect messages expressing suicidal intent, self-harm, intent to harm others or abuse, and
answer them with a calm, supportive reply that points to local emergency services / a crisis line.

Detector (hand-written: no maintained library ships an English crisis-intent rule set)
--------------------------------------------------------------------------------------
:class:`RuleDetector` works on the lower-cased text in four steps:

1. **normalise**: curly quotes → straight, collapse whitespace.
2. **mask idioms and topic mentions** (``IDIOMS``): spans like "this homework is killing me", "dying to see",
   "to die for", "I could kill him!", "killing time", "an essay about suicide prevention" are replaced by a neutral
   token so no crisis pattern can match inside them.
3. **match** the category patterns (``PATTERNS``): explicit first-person intent ("kill myself", "end my life",
   "want to die", "better off without me"), self-harm acts ("cut myself", "self-harm"), intent to harm a named target
   ("going to kill him", "bring a gun to school") and abuse by another person ("my husband hits me", "was raped",
   "threatened to kill me").
4. **context checks** on every match: a *negation* cue ("not", "never", "don't", …) among the 4 words before the
   match in the same clause cancels it ("I would never hurt myself", "I'm not suicidal", "I don't want to die";
   patterns that contain their own negation, like "don't want to live", are matched as a whole; for "someone does
   X to me" and "I'm going to X him" a negation inside the match counts too: "my dad never hits me"); a *past* cue
   ("used to") cancels it unless the text also has a *current* cue ("again", "now", "relapsed", "tonight", …);
   per-pattern *exclusions* after the match drop accidents and benign phrasings ("cut myself shaving",
   "hit me with a pillow", "pushed me to apply").

Only the latest user message is checked (see ``docs/serving.md``). Rules favour recall: a false alarm costs one
gentle message, a miss costs much more. Measured recall / false-positive rate on the written set
``tests/serving/crisis_set.jsonl`` are in ``benchmarks/results/serving.md`` — an optimistic estimate, since the rules
and the set were written by the same people.

Classifier hook
---------------
``SafetyLayer(classifier=...)`` takes any callable ``texts -> list[float]`` (probability that each text is a crisis)
or an object with ``predict(texts) -> list[(label, prob)]`` (label ``"none"``/``"safe"``/``"ok"`` = not a crisis,
otherwise the label is used as the category). ``mode`` = ``rules`` (default) | ``classifier`` | ``either`` (flag if
rules OR classifier ≥ ``threshold``).

Replies and resources
---------------------
Reply texts and the list of resources come from :class:`SafetyConfig` (a YAML or JSON file read by
:func:`load_safety_config`).
The defaults name no phone numbers: they tell the person to contact local emergency services or a local crisis line.
Add real, verified resources for your region in the file; this module never invents contact details.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import yaml
from pydantic import BaseModel, Field

from empathkit.config import validate
from empathkit.errors import ConfigError
from empathkit.serving.crisis import EXTRA_PATTERNS, LANGUAGE_PATTERNS, SEMANTIC_THRESHOLD, SemanticMatcher, fold

CATEGORIES = ("suicide", "self_harm", "harm_others", "abuse")

# ---------------------------------------------------------------------------------------------------------------
# patterns
# ---------------------------------------------------------------------------------------------------------------

_MASK = " ~ "

# Idioms, hyperbole and topic mentions that must never trigger a crisis pattern (step 2).
IDIOMS: tuple[str, ...] = (
    r"\b(is|are|was|were|'s|'re|keeps?|been) (\w+ )?killing me\b",
    r"\bkill(s|ed|ing)? (it|time)\b",
    r"\bkill(s|ed|ing)? myself (laughing|with laughter)\b",
    r"\bdying (to|for)\b",
    r"\bto die for\b",
    r"\b(almost |nearly )?(die|died|dying|dead) (of|from|with) (embarrassment|shame|laughter|laughing|boredom|cringe)\b",
    r"\bdead (tired|serious|set|on|wrong|end)\b",
    r"\bi'?m (literally |so |totally )?dead\b(?! (inside|set))",
    r"\b(battery|phone|laptop|car|engine|plant|plants|conversation|party) (just |has |had )?died\b",
    r"\b(could|would|gonna|going to) (just )?(kill|murder) (a|an|for) \w+",
    r"\b(just |please )?shoot me now\b|\bjust shoot me\b|\bkill me now\b",
    r"\bi could (just |literally |honestly )?(kill|murder|strangle) (him|her|them|you|my \w+)\b(?! (and|if|when|with|because))",
    r"\b(is|are|'s|'re|will|'ll|would|'d) (going to |gonna )?(kill|murder) me (when|if|for)\b",
    r"\b(essay|article|paper|book|novel|documentary|movie|film|show|podcast|class|course|lecture|report|research|"
    r"talk|presentation|training) (about|on) (\w+ )?(suicide|self[- ]harm|abuse|murder|violence)\b",
    r"\b(suicide|crisis|abuse) (prevention|awareness|hotline|helpline|line|squad|statistics|rates?)\b",
)

_NEG = (r"\b(not|never|no|don'?t|do not|doesn'?t|does not|didn'?t|won'?t|wouldn'?t|isn'?t|aren'?t|wasn'?t|nor|"
        r"nobody said|stop me from|nao|nunca|jamais|nicht|nie|niemals|kein|non|mai)\b")
_CLAUSE_BREAK = r"[.,;:!?]|\b(but|and|so|because|though|although|yet|except)\b"
_PAST = r"\bused to\b"
_CURRENT = r"\b(again|tonight|today|right now|at the moment|started|relapsed?|relapsing|lately|these days|keep|still)\b"

_SUBJ = (r"\b(he|she|they|my (\w+ )?(husband|wife|partner|boyfriend|girlfriend|bf|gf|dad|father|mom|mum|mother|"
         r"stepdad|stepfather|step-dad|stepmom|stepmother|step-mom|parents?|brother|sister|uncle|aunt|coach|teacher|"
         r"boss|ex|fianc[eé]e?|grandpa|grandfather|grandma|grandmother|cousin|roommate|guardian|carer|caretaker|"
         r"babysitter|neighbou?r|pastor|priest))\b")
_TARGET = r"(him|her|them|you|people|everyone|everybody|someone|somebody|my \w+|his \w+|her \w+|the \w+|that \w+|this \w+)"
_INTENT = (r"\b(going to|gonna|want to|wanna|wanted to|plan(ning)? to|plan on|thinking (about|of)|i will|i'll|i'm about to|"
           r"intend to|decided to|ready to|might|could)\s+(\w+\s+){0,2}?")


@dataclass(frozen=True)
class Pattern:
    category: str
    regex: str
    exclude_after: str | None = None  # if this matches right after the pattern, the match is dropped
    negatable: bool = True  # False for patterns that already contain their own negation ("don't want to live")
    inner_negation: bool = False  # also look for negation inside the match ("my dad never hits me")
    name: str = ""
    language: str = "en"


PATTERNS: tuple[Pattern, ...] = (
    # -- suicide -------------------------------------------------------------------------------------------------
    Pattern("suicide", r"\b(kill|killing|killed|hang|hanging|hanged|shoot|shooting|drown|drowning|off|offing)\s+"
                       r"(my|him|her|them|your)sel(f|ves)\b", name="kill-self"),
    Pattern("suicide", r"\bsuicid(e|al)\b", name="suicide-word"),
    Pattern("suicide", r"\b(end|ending|ended|take|taking|took)\s+(my|his|her|their|your)\s+(own\s+)?li(fe|ves)\b",
            name="end-life"),
    Pattern("suicide", r"\b(want|wanna|wish|going|gonna|ready|plan|planning|decided|deserve|trying|tried|need)\s+"
                       r"(\w+\s+){0,2}?to\s+(die|be dead|not exist)\b", name="want-die"),
    Pattern("suicide", r"\b(want|wanna|going|gonna|ready|plan|planning|decided|thinking about|think about|need)\s+"
                       r"(to\s+)?end(ing)? it( all)?\b(?! (with|between|off|early|here|there|for the day|now with))",
            name="end-it"),
    Pattern("suicide", r"\b(don'?t|do not|no longer|not)\s+want\s+to\s+(live|be alive|be here|exist|wake up|go on)\b"
                       r"(?! (in|at|with|for|near|like that))", negatable=False, name="not-want-live"),
    Pattern("suicide", r"\b(never|not)\s+(to\s+)?wake\s+up(\s+again)?\b", name="never-wake"),
    Pattern("suicide", r"\b(better off|be better|happier)\s+without\s+me\b", negatable=False, name="better-without-me"),
    Pattern("suicide", r"\b(no|any|what'?s the|what is the)\s+(reason|point)\s+(for me\s+)?(to|in|of)\s+(keep\s+)?"
                       r"(living|live|go on|going on|being alive|be alive|life)\b", negatable=False, name="no-reason-live"),
    Pattern("suicide", r"\bcan'?t\s+(go on|keep going|keep living)\b(?! (with (the|this) (project|job|work|trip)))",
            negatable=False, name="cant-go-on"),
    Pattern("suicide", r"\b(done|finished)\s+with\s+(life|living|being alive)\b", name="done-with-life"),
    Pattern("suicide", r"\b(goodbye|suicide)\s+(letter|note)s?\b", name="goodbye-note"),
    Pattern("suicide", r"\b(overdos(e|ed|ing)|o\.?d\.? on)\b", name="overdose"),
    Pattern("suicide", r"\b(pills|tablets|meds|medication|painkillers)\b.{0,60}\b(take|swallow|taking|swallowing)\s+"
                       r"(them\s+|it\s+)?all\b", name="take-all-pills"),
    Pattern("suicide", r"\bhow many\s+(\w+\s+)?(pills|tablets|painkillers)\b.{0,40}\b(take|die|kill|wake)", name="how-many-pills"),
    Pattern("suicide", r"\b(jump|jumping|throw myself)\s+(off|from|in front of)\s+(a|the|my|this|that)\s+(\w+\s+){0,2}?"
                       r"(bridge|building|roof|cliff|balcony|window|train|tower|car|bus)\b", name="jump-off"),
    Pattern("suicide", r"\b(want|wish|need)\s+(it|everything|this)\s+(all\s+)?to\s+(end|be over|stop)\b(?!\s+(soon|already)\b\s+(so|and))",
            name="want-it-to-end"),
    Pattern("suicide", r"\b(kms|kys)\b|\bfeel like (dying|ending it)\b|\b(want|wish) to disappear (forever|for good)\b",
            name="slang-die"),
    Pattern("suicide", r"\bwish i (was|were|had never been)\s+(dead|born|gone|never born)\b", name="wish-dead"),
    # -- self-harm -----------------------------------------------------------------------------------------------
    Pattern("self_harm", r"\b(cut|cuts|cutting|burn|burns|burned|burnt|burning|hurt|hurts|hurting|harm|harming|hit|hits|"
                         r"hitting|scratch|scratches|scratching|punish|punishing|starve|starving|starved|bite|biting|"
                         r"bruise|bruising|punch|punching)\s+myself\b",
            exclude_after=r"^\W*(\w+\s+){0,3}?(shaving|cooking|chopping|playing|lifting|while|during|at the gym|"
                          r"skiing|running|by accident|accidentally|on (a|the) \w+|when i (fell|tripped|slipped)|"
                          r"falling|in the kitchen|working out|with (a|the) (knife|paper|stapler|oven|iron))",
            name="harm-self"),
    Pattern("self_harm", r"\bself[- ]?(harm|harming|injury|injuring|injure|mutilat\w*)\b", name="self-harm-word"),
    Pattern("self_harm", r"\b(cut|cutting|slit|slitting|burn|burning|carve|carving)\s+(my|on my)\s+(arms?|wrists?|legs?|"
                         r"thighs?|skin|stomach)\b", name="cut-body"),
    Pattern("self_harm", r"\b(blade|razor)s?\s+in\s+my\s+hand\b|\b(hold|holding|have)\s+(a|the)\s+(blade|razor)\b",
            name="blade"),
    # -- harm to others ------------------------------------------------------------------------------------------
    Pattern("harm_others", _INTENT + r"(kill(ing)?|murder(ing)?|stab(bing)?|shoot(ing)?|strangl(e|ing)|poison(ing)?|"
                                     r"hurt(ing)?|beat(ing)? up|attack(ing)?|shak(e|ing)|smother(ing)?|chok(e|ing))\s+"
                                     + _TARGET + r"\b", inner_negation=True, name="intent-harm"),
    Pattern("harm_others", r"\b(bring|take|bringing|taking|brought|took)\s+(a|my|his|her|the)\s+(\w+'s\s+)?(\w+\s+)?"
                           r"(gun|knife|weapon|rifle|pistol|bomb|explosives?)\s+to\s+(school|work|class|the office|campus|"
                           r"church|the party)\b", name="weapon-to-place"),
    Pattern("harm_others", r"\b(make|making)\s+(him|her|them|my \w+|everyone)\s+(pay|suffer|bleed)\b.{0,40}\b(hurt|kill|"
                           r"gun|knife|where (he|she|they) lives?)\b", name="make-pay"),
    # -- abuse ---------------------------------------------------------------------------------------------------
    Pattern("abuse", _SUBJ + r"(\s+\w+){0,2}?\s+(hits?|hitting|beats?|beating|beat|chokes?|choked|choking|strangles?|"
                             r"strangled|kicks?|kicked|slaps?|slapped|punch(es|ed)?|pushed|shoved|burns?|burned|"
                             r"touch(es|ed)?|rapes?|raped|molest(s|ed)?|locks?|locked|abuses?|abused|starves?|starved)"
                             r"\s+me\b",
            exclude_after=r"^\s*(with\s+(a|his|her|their)\s+(pillow|snowball|ball|joke|question|cushion|water balloon)|"
                          r"(deeply|so much|a lot)|(to|into)\s+(do|try|apply|work|finish|study|be|go)\b|on the (shoulder|arm)\b|"
                          r"at (chess|cards|tennis|a game|games|poker|checkers)\b|out of the house\b)",
            inner_negation=True, name="abuser-does"),
    Pattern("abuse", r"\b(am|was|were|been|being|get|got|getting)\s+(\w+\s+)?(abused|raped|molested|assaulted|trafficked|"
                     r"beaten up|beaten)\b", name="passive-abuse"),
    Pattern("abuse", r"\bsexually\s+(assaulted|abused|harassed)\b", name="sexual-assault"),
    Pattern("abuse", r"\bthreaten(s|ed|ing)?\s+to\s+(kill|hurt|beat|shoot|stab|rape)\s+me\b", name="threatened-me"),
    Pattern("abuse", r"\b(scared|afraid|terrified)\s+to\s+go\s+home\b", name="scared-home"),
    Pattern("abuse", r"\babusive\s+(relationship|partner|husband|wife|boyfriend|girlfriend|parents?|father|mother|dad|"
                     r"mom|home|family)\b", name="abusive-relationship"),
    Pattern("abuse", r"\bforced\s+(me\s+to\s+have\s+sex|himself\s+on\s+me|herself\s+on\s+me)\b", name="forced-sex"),
)


# slang, veiled farewells, means, method requests (en) and es / fr / de / pt / it (empathkit/serving/crisis.py)
_OWN_NEGATION = {"es-no-vivir", "fr-plus-vivre", "de-leben", "pt-viver", "it-vivere"}
PATTERNS = PATTERNS + tuple(
    Pattern(cat, rx, name=name, language=lang, negatable=name not in _OWN_NEGATION,
            inner_negation=lang == "de" and name not in _OWN_NEGATION)
    for cat, lang, name, rx in EXTRA_PATTERNS + LANGUAGE_PATTERNS)


@dataclass
class SafetyResult:
    """The outcome of a check; ``to_json()`` goes into the response metadata (``empathkit.safety``)."""

    flagged: bool
    category: str | None = None
    source: str | None = None  # "rules" | "semantic" | "classifier"
    rule: str | None = None  # name of the pattern that fired
    score: float | None = None  # classifier probability / semantic similarity when they ran
    turn: int | None = None  # check_messages: 0 = the last user turn, 1 = the one before, …

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def normalise(text: str) -> str:
    """The text the patterns see: :func:`empathkit.serving.crisis.fold` (NFKC, zero-width, homoglyphs, accents,
    leetspeak, spaced letters, repeated letters, misspelt crisis words)."""
    return fold(text)


class RuleDetector:
    """Patterns + idiom masking + negation / past-tense context (see the module docstring)."""

    def __init__(self, patterns: Sequence[Pattern] = PATTERNS, idioms: Sequence[str] = IDIOMS, window: int = 4):
        self.patterns = [(p, re.compile(p.regex), re.compile(p.exclude_after) if p.exclude_after else None)
                         for p in patterns]
        self.idioms = [re.compile(i) for i in idioms]
        self.window = window
        self._neg, self._brk = re.compile(_NEG), re.compile(_CLAUSE_BREAK)
        self._past, self._current = re.compile(_PAST), re.compile(_CURRENT)

    def mask(self, text: str) -> str:
        t = normalise(text)
        for rx in self.idioms:
            t = rx.sub(_MASK, t)
        return t

    def _clause_prefix(self, t: str, start: int) -> str:
        prefix = t[:start]
        cut = 0
        for m in self._brk.finditer(prefix):
            cut = m.end()
        return " ".join(prefix[cut:].split()[-self.window:])

    def _negated(self, t: str, start: int) -> bool:
        return bool(self._neg.search(self._clause_prefix(t, start)))

    def _past_only(self, t: str, start: int) -> bool:
        return bool(self._past.search(self._clause_prefix(t, start))) and not self._current.search(t)

    def check(self, text: str) -> SafetyResult:
        t = self.mask(text)
        for pat, rx, excl in self.patterns:
            for m in rx.finditer(t):
                if excl is not None and excl.search(t[m.end():]):
                    continue
                if pat.negatable and self._negated(t, m.start()):
                    continue
                if pat.inner_negation and self._neg.search(m.group(0)):
                    continue
                if self._past_only(t, m.start()):
                    continue
                return SafetyResult(True, pat.category, "rules", pat.name or pat.regex[:40])
        return SafetyResult(False)


# ---------------------------------------------------------------------------------------------------------------
# configuration: reply texts and resources (never invented phone numbers)
# ---------------------------------------------------------------------------------------------------------------

DEFAULT_RESOURCES_TEXT = (
    "If you are in immediate danger, please contact your local emergency services right now. "
    "You can also reach out to a local crisis line or suicide prevention service in your country, "
    "or to someone you trust who can be with you."
)

DEFAULT_MESSAGES: dict[str, str] = {
    "suicide": ("I'm really sorry you're feeling this way, and I'm glad you told me. What you're going through "
                "sounds very painful, and you deserve support from a real person right now. {resources} "
                "You don't have to face this alone."),
    "self_harm": ("Thank you for telling me; that took courage. It sounds like you're in a lot of pain, and you "
                  "deserve care, not more hurt. {resources} If you can, put anything you could hurt yourself with "
                  "out of reach and stay near someone you trust."),
    "harm_others": ("It sounds like you're carrying a lot of anger or pain right now. If you feel you might hurt "
                    "someone, please step away from the situation and get help straight away. {resources}"),
    "abuse": ("I'm so sorry this is happening to you. It is not your fault, and you deserve to be safe. "
              "{resources} If it is safe for you, consider talking to someone you trust or a local support "
              "service for people affected by abuse."),
}


class Resource(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(..., min_length=1, description="e.g. 'Emergency services' or the name of a verified crisis line")
    contact: str | None = Field(None, description="a phone number / text code / address you have verified")
    url: str | None = None
    region: str | None = Field(None, description="where it applies, e.g. 'UK' or 'worldwide'")


class SafetyConfig(BaseModel):
    """What the safety layer says; load your own from YAML/JSON with :func:`load_safety_config`."""

    model_config = {"extra": "forbid"}

    enabled: bool = True
    mode: Literal["rules", "classifier", "either"] = "rules"
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="classifier probability that counts as a crisis")
    recent_turns: int = Field(3, ge=1, description="user turns checked, newest first (back to the last safety reply)")
    semantic: bool = Field(False, description="also compare user turns with written crisis intents (MiniLM)")
    semantic_threshold: float = Field(SEMANTIC_THRESHOLD, ge=0.0, le=1.0,
                                      description="cosine similarity that counts (chosen in benchmarks/safety.py)")
    resources_text: str = Field(DEFAULT_RESOURCES_TEXT, description="general advice, inserted as {resources}")
    resources: list[Resource] = Field(default_factory=list,
                                      description="extra verified resources, listed after the text")
    messages: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_MESSAGES))

    def model_post_init(self, _ctx: Any) -> None:
        unknown = set(self.messages) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"messages: unknown categories {sorted(unknown)}; known: {', '.join(CATEGORIES)}")
        self.messages = {**DEFAULT_MESSAGES, **self.messages}


def load_safety_config(path: str | Path | None = None, data: dict | None = None) -> SafetyConfig:
    """Read a YAML or JSON file (JSON is YAML) into a :class:`SafetyConfig`; errors name the file and key."""
    if path is None:
        return validate(SafetyConfig, data or {}, "safety")  # type: ignore[return-value]
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"safety resources file {p} not found")
    try:
        text = p.read_text(encoding="utf-8")
        raw = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{p}: invalid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    try:
        return validate(SafetyConfig, raw or {}, "safety")  # type: ignore[return-value]
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


# ---------------------------------------------------------------------------------------------------------------
# the layer used by chat, the API and the web page
# ---------------------------------------------------------------------------------------------------------------

ClassifierHook = Callable[[list[str]], list[float]]
_SAFE_LABELS = {"none", "safe", "ok", "neutral", "no", "0", "false"}


def _run_classifier(classifier: Any, texts: list[str]) -> list[tuple[str | None, float]]:
    if hasattr(classifier, "predict"):
        out = []
        for label, prob in classifier.predict(texts):
            crisis = str(label).lower() not in _SAFE_LABELS
            out.append((str(label) if crisis else None, float(prob) if crisis else 1.0 - float(prob)))
        return out
    return [(None, float(p)) for p in classifier(texts)]


class SafetyLayer:
    def __init__(self, config: SafetyConfig | None = None, detector: RuleDetector | None = None,
                 classifier: ClassifierHook | Any | None = None, semantic: SemanticMatcher | None = None):
        self.config = config or SafetyConfig()
        self.detector = detector or RuleDetector()
        self.classifier = classifier
        self.semantic = semantic or (SemanticMatcher(self.config.semantic_threshold) if self.config.semantic else None)
        if self.config.mode != "rules" and classifier is None:
            raise ConfigError(f"safety.mode={self.config.mode!r} needs a classifier (pass classifier=...)")

    def check_texts(self, texts: Iterable[str]) -> list[SafetyResult]:
        texts = list(texts)
        if not self.config.enabled:
            return [SafetyResult(False) for _ in texts]
        rules = [self.detector.check(t) for t in texts] if self.config.mode != "classifier" else \
            [SafetyResult(False) for _ in texts]
        if self.semantic is not None:
            todo = [i for i, r in enumerate(rules) if not r.flagged]
            for i, (sim, cat) in zip(todo, self.semantic.scores([texts[i] for i in todo])):
                if sim >= self.semantic.threshold:
                    rules[i] = SafetyResult(True, cat, "semantic", "intent", round(sim, 4))
        if self.classifier is None or self.config.mode == "rules":
            return rules
        out = []
        for r, (label, p) in zip(rules, _run_classifier(self.classifier, texts)):
            if r.flagged:
                out.append(SafetyResult(True, r.category, r.source, r.rule, p))
            elif p >= self.config.threshold:
                cat = label if label in CATEGORIES else "suicide" if label is None else label
                out.append(SafetyResult(True, cat, "classifier", None, p))
            else:
                out.append(SafetyResult(False, score=p))
        return out

    def check(self, text: str) -> SafetyResult:
        return self.check_texts([text])[0]

    def check_messages(self, messages: Sequence[dict[str, str]]) -> SafetyResult:
        """Check the recent user turns of an OpenAI-style conversation (``recent_turns``, newest first), back to the
        last safety reply: a crisis message followed by a short "no" is still a crisis, one already answered with
        the crisis reply does not repeat it."""
        replies = {self.reply(SafetyResult(True, c))[:80] for c in CATEGORIES}
        turns: list[str] = []
        for m in reversed(messages):
            if m.get("role") == "assistant" and (m.get("content") or "")[:80] in replies:
                break
            if m.get("role") == "user":
                turns.append(m.get("content") or "")
                if len(turns) >= self.config.recent_turns:
                    break
        for i, r in enumerate(self.check_texts(turns)):
            if r.flagged:
                r.turn = i
                return r
        return SafetyResult(False)

    def resources_text(self) -> str:
        parts = [self.config.resources_text.strip()]
        for r in self.config.resources:
            line = r.name + (f": {r.contact}" if r.contact else "") + (f" ({r.url})" if r.url else "") + \
                (f" [{r.region}]" if r.region else "")
            parts.append(line)
        return " ".join(p for p in parts if p)

    def metadata(self, result: SafetyResult) -> dict[str, Any]:
        """``result.to_json()`` plus, when it is flagged, the configured resources as data (``resources``: name /
        contact / url / region of each), so an API client can show them its own way, not only inside the reply."""
        out = result.to_json()
        if result.flagged:
            out["resources"] = [r.model_dump(exclude_none=True) for r in self.config.resources]
        return out

    def reply(self, result: SafetyResult) -> str:
        tpl = self.config.messages.get(result.category or "suicide", DEFAULT_MESSAGES["suicide"])
        return tpl.replace("{resources}", self.resources_text()).strip()
