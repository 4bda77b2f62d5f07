"""REG (Wang et al., "Retrieval via Emotion Similarity for Guiding Empathetic Dialogue Generation") — so far its
retrieval half (docs/methods/reg.md): emotion attributes (``attributes``), the train-split exemplar corpus
(``corpus``), the dense FAISS index with attribute re-ranking (``index``) and the Table 5 alignment analysis
(``analysis``). The method itself (G1, retriever distillation, the FiD generator G2, ``SPEC``) is a later step.

``retrieve`` / ``build_from_overrides`` are what ``empathkit retrieve`` calls.
"""

from __future__ import annotations

from empathkit.methods.reg.index import (ExemplarIndex, RandomRetriever, RetrievalConfig, build_from_overrides,
                                         build_index, retrieve)

__all__ = ["ExemplarIndex", "RandomRetriever", "RetrievalConfig", "build_index", "build_from_overrides", "retrieve"]
