"""What makes the crisis layer (:mod:`empathkit.serving.safety`) hold up outside its own test set: text folding
against obfuscation, patterns beyond plain English, and semantic matching against written crisis intents.

- :func:`fold` — the text every pattern sees: Unicode NFKC (full-width and mathematical letters → plain), format
  characters removed (zero-width spaces / joiners, soft hyphens, BOM), Latin look-alikes from Cyrillic and Greek
  folded to Latin (hand-written table :data:`HOMOGLYPHS`: the installed libraries ship no confusables map), lower
  case, accents stripped (patterns are written without accents), leetspeak inside words (``k1ll mys3lf``), letters
  spaced out (``s u i c i d e``, ``k.i.l.l``), runs of 3+ repeated letters (``diiie``), and misspellings of the
  crisis vocabulary (:data:`VOCAB`, ``difflib`` similarity ≥ :data:`FUZZY_CUTOFF` for words of 5+ letters:
  ``sucide``, ``myslef``).
- :data:`EXTRA_PATTERNS` — English patterns for slang ("unalive"), veiled farewells ("won't be around much longer"),
  plans that name a means (a rope, stockpiled pills, a gun to the head) and requests for a method or a lethal dose;
  :data:`LANGUAGE_PATTERNS` — suicide / self-harm / abuse patterns in Spanish, French, German, Portuguese and
  Italian (first person, written unaccented because :func:`fold` strips accents).
- :class:`SemanticMatcher` — cosine similarity of a user turn (MiniLM, mean-pooled and normalised) to the written
  crisis intents :data:`INTENTS`; a turn at or above the threshold is flagged. The threshold is chosen on data by
  ``benchmarks/safety.py``: the smallest value that flags at most 0.2 % of the ED *valid* contexts (their recent user
  turns), so ordinary emotional messages of that split stay below it; the measured value is the default
  (:data:`SEMANTIC_THRESHOLD`). Semantic matching is off unless ``SafetyConfig.semantic`` is set (it loads MiniLM).
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from typing import Sequence

HOMOGLYPHS = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w",
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t", "Х": "x",
    "І": "i", "Ј": "j", "Ѕ": "s",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "Α": "a", "Β": "b", "Ε": "e", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o", "Ρ": "p",
    "Τ": "t", "Χ": "x", "Υ": "y", "Ζ": "z",
    # other look-alikes
    "ı": "i", "ɡ": "g", "ꜱ": "s", "ʟ": "l", "ᴋ": "k",
})
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s",
                      "!": "i", "|": "l", "+": "t"})
# only words no ordinary word is this close to ("cutting" ~ "putting", "abused" ~ "amused", "painless" ~ "pointless"
# would turn everyday sentences into crisis ones)
VOCAB = ("suicide", "suicidal", "myself", "overdose", "unalive", "lethal")
FUZZY_CUTOFF = 0.82
_WORD = re.compile(r"[a-z0-9@$!|+]*[a-z][a-z0-9@$!|+]*")
_SPACED = re.compile(r"\b(?:[a-z][ .\-_*]){2,}[a-z]\b")
_REPEAT = re.compile(r"([a-z])\1{2,}")
# common words the fuzzy step must leave alone (close to a vocabulary word but ordinary)
_KEEP = frozenset("himself herself itself yourself ourselves suicides alive".split())


def _strip_accents(t: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", t) if not unicodedata.combining(c))


@functools.lru_cache(maxsize=65536)
def _fuzzy(word: str) -> str:
    if len(word) < 5 or word in VOCAB or word in _KEEP:
        return word
    close = difflib.get_close_matches(word, VOCAB, n=1, cutoff=FUZZY_CUTOFF)
    return close[0] if close else word


def _deleet(m: re.Match) -> str:
    w = m.group(0)
    core = w.rstrip("!|+")  # "die!" keeps its punctuation
    if any(c.isdigit() or c in "@$!|+" for c in core):
        core = core.translate(LEET)
    return _fuzzy(core) + w[len(core):] if core else w


def _unspace(m: re.Match) -> str:
    """``s u i c i d e`` → ``suicide``; a leading pronoun stays a word (``I w a n t`` → ``i want``)."""
    joined = re.sub(r"[ .\-_*]", "", m.group(0))
    return "i " + joined[1:] if m.group(0).startswith("i ") and len(joined) > 4 else joined


def fold(text: str) -> str:
    """The normalised text the patterns match (see the module docstring)."""
    t = unicodedata.normalize("NFKC", text)
    t = "".join(c for c in t if unicodedata.category(c) != "Cf" and c != "\u00ad")
    t = t.translate(HOMOGLYPHS).lower()
    t = t.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    t = _strip_accents(t)
    t = _SPACED.sub(_unspace, t)
    t = _REPEAT.sub(r"\1", t)
    t = _WORD.sub(_deleet, t)
    return re.sub(r"\s+", " ", t).strip()


# (category, language, name, regex) — the matching goes through safety.RuleDetector (negation, past, idioms)
_ME = r"(myself|me)"
EXTRA_PATTERNS: tuple[tuple[str, str, str, str], ...] = (
    ("suicide", "en", "unalive", r"\bunaliv(e|ing|ed)\b"),
    ("suicide", "en", "wanna-die", r"\bwanna\s+die\b"),
    ("self_harm", "en", "harm-self-dropped-g", r"\b(cuttin|hurtin|burnin|harmin|scratchin)'?\s+myself\b"),
    ("suicide", "en", "not-around", r"\b(won'?t|will not|wont|not going to|might not)\s+be\s+(around|here)\s+"
                                    r"(much|for much|any|for)\s+(longer|more)\b"),
    ("suicide", "en", "last-goodbye", r"\b(this is|it'?s)\s+(my\s+)?(last|final)\s+(goodbye|message|night|day)\b|"
                                      r"\bby the time (you|anyone|someone) (read|reads|see|sees|find|finds) this\b"),
    ("suicide", "en", "means-rope", r"\b(bought|got|have|found|tied|tie|tying|made|make|making)\s+(a\s+|the\s+)?"
                                    r"(rope|noose)\b(?!\s+(for|to)\s+(climb\w*|camp\w*|sail\w*|the boat|a swing|tow|"
                                    r"hang (the|a|my) (laundry|washing|clothes|hammock)))"),
    ("suicide", "en", "means-pills", r"\b(saved|saving|stockpil\w*|hoard\w*|collect\w*|counted|count)\s+(up\s+)?"
                                     r"(\w+\s+){0,2}(pills|tablets|meds|painkillers|sleeping pills)\b"),
    ("suicide", "en", "means-gun", r"\b(gun|pistol|barrel)\s+(to|in|against)\s+my\s+(head|mouth|temple)\b|"
                                   r"\bload(ed)?\s+(my|the|a)\s+gun\b.{0,40}\b(myself|me|my head)\b"),
    ("suicide", "en", "means-edge", r"\b(standing|stand|sitting|sit)\s+(on|at)\s+(the\s+)?(edge|ledge|railing)\s+of\b"),
    ("suicide", "en", "method-request",
     r"\b(how|best way|easiest way|quickest way|fastest way|painless way|most painless way|surest way|way)\s+"
     r"(to|can i|do i|could i|should i|would i)\s+(\w+\s+){0,2}?(die|kill " + _ME + r"|end my life|end it all|"
     r"commit suicide|overdose|hang myself|not wake up)\b"),
    ("suicide", "en", "method-painless", r"\b(painless|quick|quickest|easiest|fastest|surest)\s+(way|method|means)\s+"
                                         r"(to\s+)?(die|go|end it|kill)\b"),
    ("suicide", "en", "lethal-dose", r"\b(lethal|fatal|deadly|overdose)\s+(dose|amount|quantity)\b|\bhow\s+(many|much)\b"
                                     r".{0,50}\b(lethal|fatal|deadly|to die|would kill (me|a person))\b"),
    ("suicide", "en", "nobody-miss", r"\b(no ?one|nobody)\s+(would|will)\s+(even\s+)?(miss|notice|care)\b.{0,20}"
                                     r"\bif i (was|were|am|died|disappeared|was gone|were gone)\b"),
    ("suicide", "en", "sleep-forever", r"\b(want|wish|need)\s+to\s+(go to\s+)?sleep\s+(forever|and not wake)\b"),
)

LANGUAGE_PATTERNS: tuple[tuple[str, str, str, str], ...] = (
    # Spanish
    ("suicide", "es", "es-morir", r"\b(quiero|quisiera|voy a|necesito|deseo)\s+(\w+\s+)?morir(me)?\b"),
    ("suicide", "es", "es-matarme", r"\b(matarme|suicidarme|quitarme la vida|me voy a matar|me quiero matar|"
                                    r"acabar con mi vida|terminar con mi vida)\b"),
    ("suicide", "es", "es-no-vivir", r"\bno\s+quiero\s+(seguir\s+)?(vivir|viviendo|estar viva|estar vivo)\b"),
    ("suicide", "es", "es-suicidio", r"\b(suicidio|suicida)\b"),
    ("self_harm", "es", "es-autolesion", r"\b(cortarme|hacerme dano|me corto|me lastimo|autolesion\w*)\b"),
    ("abuse", "es", "es-abuso", r"\b(me pega|me golpea|me viola|me violo|me maltrata|abusa de mi|abuso de mi)\b"),
    # French
    ("suicide", "fr", "fr-mourir", r"\b(je veux|j'ai envie de|je voudrais|je vais)\s+(\w+\s+)?mourir\b"),
    ("suicide", "fr", "fr-me-tuer", r"\b(me tuer|me suicider|en finir( avec (la|ma) vie)?|mettre fin a (ma vie|mes jours))\b"),
    ("suicide", "fr", "fr-plus-vivre", r"\bje ne (veux|peux) plus vivre\b|\bj'en peux plus de vivre\b"),
    ("suicide", "fr", "fr-suicide", r"\b(suicide|suicidaire)\b"),
    ("self_harm", "fr", "fr-mal", r"\b(me faire du mal|me scarifier|je me scarifie|je me coupe|automutilation)\b"),
    ("abuse", "fr", "fr-abus", r"\b(il|elle|mon \w+|ma \w+)\s+me\s+(frappe|bat|viole|a violee?)\b"),
    # German
    ("suicide", "de", "de-sterben", r"\bich\s+(will|mochte|moechte|werde)\s+(\w+\s+)?sterben\b"),
    ("suicide", "de", "de-leben", r"\bich\s+(will|mag|kann)\s+nicht\s+mehr\s+leben\b|\bmir das leben nehmen\b"),
    ("suicide", "de", "de-umbringen", r"\b(mich\s+(\w+\s+)?umbringen|mich\s+(\w+\s+)?toten|selbstmord|suizid\w*)\b"),
    ("self_harm", "de", "de-ritzen", r"\b(ich ritze mich|mich ritzen|mich (selbst )?verletzen|selbstverletz\w*)\b"),
    ("abuse", "de", "de-schlagt", r"\b(er|sie|mein \w+|meine \w+)\s+(schlagt|vergewaltigt|missbraucht)\s+mich\b"),
    # Portuguese
    ("suicide", "pt", "pt-morrer", r"\b(quero|vou|preciso|desejo)\s+(\w+\s+)?morrer\b"),
    ("suicide", "pt", "pt-me-matar", r"\b(me matar|matar-me|suicidar|tirar (a )?minha (propria )?vida|"
                                     r"acabar com (a )?minha vida)\b"),
    ("suicide", "pt", "pt-viver", r"\bnao\s+quero\s+mais\s+viver\b|\bnao\s+quero\s+viver\b"),
    ("suicide", "pt", "pt-suicidio", r"\b(suicidio|suicida)\b"),
    ("self_harm", "pt", "pt-cortar", r"\b(me cortar|me machucar|me corto|automutila\w*)\b"),
    ("abuse", "pt", "pt-abuso", r"\b(me bate|me espanca|me estuprou|me estupra|abusa de mim)\b"),
    # Italian
    ("suicide", "it", "it-morire", r"\b(voglio|vorrei|sto per)\s+(\w+\s+)?morire\b"),
    ("suicide", "it", "it-uccidermi", r"\b(uccidermi|ammazzarmi|suicidarmi|togliermi la vita|farla finita)\b"),
    ("suicide", "it", "it-vivere", r"\bnon\s+voglio\s+piu\s+vivere\b"),
    ("suicide", "it", "it-suicidio", r"\b(suicidio|suicida)\b"),
    ("self_harm", "it", "it-male", r"\b(farmi del male|tagliarmi|mi taglio|autolesion\w*)\b"),
    ("abuse", "it", "it-abuso", r"\b(mi picchia|mi violenta|mi ha violentata|abusa di me)\b"),
)

LANGUAGES = ("en", "es", "fr", "de", "pt", "it")

# Written crisis intents (first person, present): what a user turn is compared with. Written for this project.
INTENTS: dict[str, tuple[str, ...]] = {
    "suicide": (
        "I want to kill myself.", "I am going to end my life tonight.", "I don't want to be alive anymore.",
        "I wish I were dead.", "I have a plan to take my own life.", "Everyone would be better off if I were gone.",
        "I am thinking about suicide.", "I want to die.", "I can't go on living like this, I want it to be over.",
        "What is the most painless way to die?", "How many pills would it take to not wake up?",
        "I wrote a goodbye note to my family.", "I am saying goodbye, I won't be here tomorrow.",
    ),
    "self_harm": (
        "I cut myself again last night.", "I want to hurt myself.", "I keep burning my skin to feel something.",
        "I need to cut to cope with the pain.",
    ),
    "harm_others": (
        "I am going to kill him.", "I want to hurt the people who did this to me.",
        "I am bringing a weapon to school tomorrow.",
    ),
    "abuse": (
        "My partner hits me and I am scared to go home.", "My father beats me.", "I was raped.",
        "He threatened to kill me if I tell anyone.",
    ),
}
SEMANTIC_THRESHOLD = 0.58  # benchmarks/safety.py: flags at most 0.2 % of the 2,769 ED valid contexts (results/safety.md)


class SemanticMatcher:
    """Cosine similarity of turns to :data:`INTENTS` with a sentence encoder (MiniLM by default)."""

    def __init__(self, threshold: float = SEMANTIC_THRESHOLD, encoder: str = "minilm-l6", model=None):
        self.threshold = threshold
        self._encoder, self._model = encoder, model
        self._labels = [c for c, xs in INTENTS.items() for _ in xs]
        self._intents = None

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            from empathkit.models.backbones import encoder_path

            self._model = SentenceTransformer(encoder_path(self._encoder), device="cpu")
        if self._intents is None:
            self._intents = self._model.encode([x for xs in INTENTS.values() for x in xs], normalize_embeddings=True,
                                               convert_to_numpy=True)
        return self._model

    def scores(self, texts: Sequence[str], batch_size: int = 64) -> list[tuple[float, str]]:
        """For each text: the highest similarity to a written intent and that intent's category."""
        if not texts:
            return []
        model = self._load()
        emb = model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=batch_size)
        sims = emb @ self._intents.T
        best = sims.argmax(axis=1)
        return [(float(sims[i, j]), self._labels[j]) for i, j in enumerate(best)]
