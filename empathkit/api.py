"""The Python API behind the CLI — the top layer: ``api → methods → training → runconfig / models / data``.

- :func:`train` — validate a run config against its method, pick the run directory, train (also under
  ``accelerate launch``);
- :func:`load_generator` — a method's :class:`~empathkit.methods.base.Generator` from a run directory or a config;
- :func:`generation_settings` — the one rule for decoding settings (generator defaults < config < overrides);
- :func:`run_generate` — predictions for a data split into a new run directory.

``RunConfig``, ``DataConfig``, ``resolve`` and ``examples_for`` live in :mod:`empathkit.runconfig` (below the
methods, which read run configs too) and are re-exported here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel

from empathkit.config import validate
from empathkit.errors import ConfigError
from empathkit.models.generation import GenerationSettings
from empathkit.runconfig import DataConfig, RunConfig, examples_for, resolve

log = logging.getLogger(__name__)

__all__ = ["DataConfig", "RunConfig", "resolve", "examples_for", "method_spec", "method_config", "load_generator",
           "latest_unfinished_run", "train", "generation_settings", "run_generate"]


def method_spec(name: str):
    from empathkit.methods import METHODS

    return METHODS.get(name)


def method_config(cfg: dict | RunConfig) -> BaseModel:
    """The method's sections of a run config validated against its ``MethodSpec.config_cls`` (a wrong key or type
    fails here, naming it, before anything is loaded): ``model`` + ``train`` together for a config class with both
    fields (the trainable methods: ``SFTConfig``, ``ECGConfig``, ``EmpoConfig``), else the ``model`` section alone
    (training-free methods, whose config class *is* the ``model`` section: ``PromptConfig``, ``Seq2SeqConfig``)."""
    rc = resolve(cfg)
    cls = method_spec(rc.method).config_cls
    fields = getattr(cls, "model_fields", {})
    if "model" in fields and "train" in fields:
        return validate(cls, {"model": rc.model, "train": rc.train})
    return validate(cls, rc.model, "model")


def load_generator(method: str | None = None, run_dir: str | Path | None = None, model_config: dict | None = None,
                   precision: str | None = None, backend: str | None = None, gguf: str | None = None):
    """Load a generator either from a trained run directory or from a method name + its ``model`` config;
    ``precision`` (``generation.precision``: float32 / bfloat16 / auto) converts its weights once, at load."""
    from empathkit.models.precision import apply_precision
    from empathkit.runs import load_run_config

    if run_dir is not None:
        rd = Path(run_dir)
        if not (rd / "config.yaml").is_file():
            raise ConfigError(f"{rd} is not a run directory (no config.yaml)")
        rc = resolve(load_run_config(rd))
        # inference-time keys given on top of the run's config (e.g. ECG-LoRA model.gate=0.5) reach the method
        gen = method_spec(rc.method).load({**rc.model, **(model_config or {})}, run_dir=rd)
    else:
        gen = method_spec(method or "prompt").load(model_config or {}, run_dir=None)
    if backend == "llama-cpp":  # the GGUF's own precision; precision does not apply
        from empathkit.methods.llamacpp import with_backend

        return with_backend(gen, backend, gguf)
    if precision is not None:
        apply_precision(gen, precision)
    return gen


# ----------------------------------------------------------------------------------------------------------------
# training
def latest_unfinished_run(output_dir: str | Path, method: str) -> Path | None:
    """The most recent run dir under ``output_dir`` for ``method`` that has checkpoints but did not finish."""
    from empathkit.runs import load_run_config

    base = Path(output_dir)
    if not base.is_dir():
        return None
    cands = []
    for d in base.iterdir():
        if (d / "config.yaml").is_file() and (d / "checkpoints").is_dir() and not (d / "done").exists():
            try:
                if load_run_config(d).get("method") == method:
                    cands.append(d)
            except Exception:  # noqa: BLE001 — an unreadable run dir is simply not a candidate
                continue
    return max(cands, key=lambda d: (d / "checkpoints").stat().st_mtime) if cands else None


def _pick_run_dir(rc: RunConfig) -> str:
    from empathkit.runs import new_run_dir

    resume = rc.train.get("resume", False)
    if resume is True or resume == "true":
        found = latest_unfinished_run(rc.output_dir, rc.method)
        if found is not None:
            return str(found)
        log.info("no unfinished %s run under %s/: starting a new one", rc.method, rc.output_dir)
    return str(new_run_dir(rc.output_dir, rc.run_name or rc.method))


def train(cfg: dict, run_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Train ``cfg``'s method into ``run_dir`` (default: the last unfinished run when ``train.resume=true``, else a
    new ``<output_dir>/<time>-<method>``); returns the run directory.

    The whole ``model`` + ``train`` sections are validated first. Under ``accelerate launch`` every process calls
    this: rank 0 picks the run directory and the others receive it (one run directory, written by rank 0)."""
    from empathkit.training import distributed

    rc = resolve(cfg)
    spec = method_spec(rc.method)
    if spec.train is None:
        raise ConfigError(f"method '{rc.method}' has nothing to train (use `empathkit generate --method {rc.method}`)")
    method_config(rc)
    distributed.check_launch()
    rd = Path(run_dir) if run_dir is not None else Path(distributed.main_then_broadcast(lambda: _pick_run_dir(rc)))
    return spec.train(cfg, rd, progress=progress)


# ----------------------------------------------------------------------------------------------------------------
# generation
def _given_generation(rc_or_cfg: RunConfig | Mapping | None) -> dict[str, Any]:
    """The ``generation`` keys a config sets explicitly (a validated RunConfig remembers which ones were given)."""
    if rc_or_cfg is None:
        return {}
    if isinstance(rc_or_cfg, RunConfig):
        if "generation" not in rc_or_cfg.model_fields_set:
            return {}
        g = rc_or_cfg.generation
        return g.model_dump(include=set(g.model_fields_set))
    given = dict(rc_or_cfg.get("generation") or {})
    validate(GenerationSettings, given, "generation")
    return given


def generation_settings(rc_or_cfg: RunConfig | Mapping | None = None, generator=None,
                        overrides: Mapping[str, Any] | GenerationSettings | None = None) -> GenerationSettings:
    """The decoding settings of every command, layered: the generator's defaults (e.g. a template's token cap) <
    the keys the config's ``generation`` section sets < ``overrides`` (command-line options, request fields)."""
    base = getattr(generator, "default_settings", None) or GenerationSettings()
    if isinstance(overrides, GenerationSettings):
        overrides = overrides.model_dump(include=set(overrides.model_fields_set))
    merged = {**base.model_dump(), **_given_generation(rc_or_cfg), **dict(overrides or {})}
    return validate(GenerationSettings, merged, "generation")  # type: ignore[return-value]


PARTIAL, STATE = "predictions.partial.jsonl", "generate-state.json"


def read_run_dir_config(run_dir: str | Path) -> dict:
    """A run directory's ``config.yaml`` as a dict, or a one-line :class:`ConfigError` naming what is wrong (missing
    directory, no config.yaml, YAML that does not parse, an empty file or one that is not a mapping)."""
    import yaml

    rd = Path(run_dir)
    if not rd.is_dir():
        raise ConfigError(f"{rd}: no such run directory")
    p = rd / "config.yaml"
    if not p.is_file():
        raise ConfigError(f"{rd} is not a run directory (no config.yaml)")
    try:
        cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not valid UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: not valid YAML ({getattr(e, 'problem', None) or type(e).__name__})") from None
    if cfg is None:
        raise ConfigError(f"{p}: empty config")
    if not isinstance(cfg, dict):
        raise ConfigError(f"{p}: must be a mapping of config keys, got a {type(cfg).__name__}")
    return cfg


def _kept_predictions(run_dir: Path, examples, chunk: int) -> list[dict]:
    """The complete chunks of an interrupted run's partial predictions (a chunk cut by the crash is redone whole,
    so the resumed outputs equal an uninterrupted run's); each row's id must be the example's at its position."""
    import json

    from empathkit.errors import DataError

    p = run_dir / PARTIAL
    rows: list[dict] = []
    if not p.is_file():
        return rows
    lines = p.read_bytes().split(b"\n")
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if lineno == len(lines) or all(not x.strip() for x in lines[lineno:]):
                break  # the line being written when the run stopped
            raise DataError("not a complete JSON row (the file was changed after the run stopped)", file=str(p),
                            line=lineno) from None
        i = len(rows)
        if i >= len(examples) or row.get("id") != examples[i].id:
            want = examples[i].id if i < len(examples) else "(no more examples)"
            raise DataError(f"expected the prediction of example {want!r}, found {row.get('id')!r}: the data or "
                            "the config changed since the run started", file=str(p), line=lineno, field="id")
        rows.append(row)
    return rows[: len(rows) // chunk * chunk]


def run_generate(cfg: dict | None = None, from_run: str | Path | None = None, progress: bool = True, *,
                 resume: str | Path | None = None, chunk_size: int | None = None) -> Path:
    """Generate for ``data.split`` and write a run directory with predictions.jsonl, config, seed and versions.

    Predictions are appended to ``predictions.partial.jsonl`` one chunk of ``chunk_size`` examples at a time (default
    4 × the batch size, at least 32) and renamed to ``predictions.jsonl`` when every example is done. Each chunk is
    an independent, seeded ``Generator.generate`` call, so ``resume=<run dir>`` (the run's own config, settings and
    chunking from ``generate-state.json``) redoes only the chunks that were not complete and gives exactly the
    outputs of an uninterrupted run."""
    import json

    from empathkit.runs import new_run_dir, save_run_meta, set_seed

    if resume is not None:
        run_dir = Path(resume)
        saved = read_run_dir_config(run_dir)
        if (run_dir / "predictions.jsonl").is_file():
            log.info("%s is complete: nothing to resume", run_dir)
            return run_dir
        if not (run_dir / STATE).is_file():
            raise ConfigError(f"{run_dir} is not a resumable generate run (no {STATE})")
        state = json.loads((run_dir / STATE).read_text(encoding="utf-8"))
        from_run, chunk = state.get("from_run"), int(state["chunk_size"])
        rc = resolve({k: v for k, v in saved.items() if k != "from_run"})
    else:
        rc = resolve(cfg or {})
    if from_run is not None:
        read_run_dir_config(from_run)
    set_seed(rc.seed)
    given = (state.get("settings") or {}) if resume is not None else _given_generation(rc)
    gen = load_generator(rc.method, from_run, rc.model, precision=given.get("precision"),
                         backend=given.get("backend"), gguf=given.get("gguf"))
    examples = examples_for(rc)
    if resume is not None:
        settings = validate(GenerationSettings, state["settings"], "generation")
        if state.get("n_examples") != len(examples):
            raise ConfigError(f"{run_dir}: the run had {state.get('n_examples')} examples, the data now gives "
                              f"{len(examples)}")
    else:
        settings = generation_settings(cfg, gen)
        chunk = chunk_size or max(32, 4 * settings.batch_size)
        run_dir = new_run_dir(rc.output_dir, rc.run_name or f"generate-{gen.name}")
        save_run_meta(run_dir, rc.model_dump() | ({"from_run": str(from_run)} if from_run else {}), rc.seed)
        (run_dir / STATE).write_text(json.dumps({"settings": settings.model_dump(), "chunk_size": chunk,
                                                 "from_run": str(from_run) if from_run else None,
                                                 "n_examples": len(examples)}, indent=2), encoding="utf-8")
    _generate_chunks(gen, examples, settings, run_dir, chunk, progress)
    return run_dir


def _generate_chunks(gen, examples, settings: GenerationSettings, run_dir: Path, chunk: int, progress: bool) -> None:
    import json
    import os

    kept = _kept_predictions(run_dir, examples, chunk)
    partial = run_dir / PARTIAL
    with partial.open("w", encoding="utf-8") as f:  # rewrite the complete chunks, then append
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
        if kept:
            log.info("resuming %s: %d of %d predictions kept", run_dir, len(kept), len(examples))
        for start in range(len(kept), len(examples), chunk):
            preds = gen.generate(examples[start:start + chunk], settings, progress=progress)
            f.writelines(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in preds)
            f.flush()
            os.fsync(f.fileno())
    partial.replace(run_dir / "predictions.jsonl")
    log.info("wrote %d predictions to %s", len(examples), run_dir / "predictions.jsonl")
