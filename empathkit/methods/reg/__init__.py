"""REG (Wang et al., "Retrieval via Emotion Similarity for Guiding Empathetic Dialogue Generation") — so far its
retrieval half (docs/methods/reg.md): emotion attributes (``attributes``), the train-split exemplar corpus
(``corpus``), the dense FAISS index with attribute re-ranking (``index``) and the Table 5 alignment analysis
(``analysis``), and ``method: reg`` for causal LMs (``config``, ``train``: index + G1 + stage 2, ``method``: load with
per-request retrieval, ``SPEC``). Stage 3 (G2 + joint training) and seq2seq training are not built.

``retrieve`` / ``build_from_overrides`` are what ``empathkit retrieve`` calls.
"""

from __future__ import annotations

from empathkit.methods.base import MethodSpec
from empathkit.methods.reg.config import REGConfig, REGModelConfig, REGTrainConfig
from empathkit.methods.reg.index import (ExemplarIndex, RandomRetriever, RetrievalConfig, build_from_overrides,
                                         build_index, retrieve)
from empathkit.methods.reg.method import REGRunGenerator, load


def _train(cfg: dict, run_dir, progress: bool = True):
    from empathkit.methods.reg.train import train_reg

    return train_reg(cfg, run_dir, progress=progress)


SPEC = MethodSpec("reg", REGConfig, load=load, train=_train,
                  description="REG: emotion-attribute retrieval of train-split exemplars + G1 trained on attribute "
                              "tags (causal LMs; stage 2 retriever; stage 3 G2 not built)")

__all__ = ["ExemplarIndex", "RandomRetriever", "RetrievalConfig", "build_index", "build_from_overrides", "retrieve",
           "SPEC", "REGConfig", "REGModelConfig", "REGTrainConfig", "REGRunGenerator", "load"]
