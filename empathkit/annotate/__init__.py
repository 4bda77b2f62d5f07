"""ReflectDiffu's multi-task data: emotion-reason tags (<em>/<noem>) on speaker turns and intents on listener turns.

Modules (each imports only those before it): ``store`` (the annotated JSONL in the cache, resume, counts) ·
``tokens`` (the word tokenisation every annotator shares) · ``lexicon`` (offline reason tags: NRC EmoLex + Emotion
Intensity, negation-aware) · ``intents`` (the EmpatheticIntents classifier, the emotion → intent map, Table 1) ·
``llm`` (any OpenAI-compatible endpoint) · ``era/`` (the trained tagger) · ``pipeline`` (annotators → the dataset) ·
``agreement`` (lexicon vs ERA vs LLM). Nothing is imported here, so ``import empathkit.annotate.store`` stays cheap.
"""
