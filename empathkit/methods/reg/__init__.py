"""REG (Wang et al., "Retrieval via Emotion Similarity for Guiding Empathetic Dialogue Generation"), docs/methods/reg.md:
emotion attributes (``attributes``), the train-split exemplar corpus (``corpus``), the dense FAISS index with attribute
re-ranking (``index``), the Table 5 alignment analysis (``analysis``) and ``method: reg`` (``config``; ``train``:
index + G1 + stage 2 (``retriever``) + stage 3 (``joint``: G2 alone or Eq. 7), causal LMs through the shared driver
and encoder–decoder backbones through Fusion-in-Decoder (``fid_train``); ``ablations``: Table 2's switches;
``method``: load with per-request retrieval; ``SPEC``).

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
                              "tags, a retriever distilled from G1, G2 trained jointly with it (causal LMs or FiD)")

__all__ = ["ExemplarIndex", "RandomRetriever", "RetrievalConfig", "build_index", "build_from_overrides", "retrieve",
           "SPEC", "REGConfig", "REGModelConfig", "REGTrainConfig", "REGRunGenerator", "load"]
