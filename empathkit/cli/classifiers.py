"""``empathkit classifiers train|list|predict`` — build, inspect and try the auxiliary classifiers."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from empathkit.cli.common import friendly_errors

app = typer.Typer(help="Auxiliary classifiers (emotion, GoEmotions, EPITOME, intent) trained on the embedded MiniLM.",
                  no_args_is_help=True)

# how each kind is trained by default: frozen MiniLM + logistic regression (fits the CPU budget), except the emotion
# classifier, which frozen features leave at 0.41 ED-test accuracy: one epoch of fine-tuning on the whole context
# (~24 min per member on 2 idle cores) reaches 0.496-0.502 per seed, and the mean of two seeds is the default;
# see docs/classifiers.md for the measurements
DEFAULT_METHOD: dict[str, str] = {"emotion": "finetune"}
FINETUNE_DEFAULTS = {"emotion": {"epochs": 1.0, "max_seq_length": 128, "batch_size": 32, "lr": 1e-4,
                                 "head_lr": 1e-3, "eval_every": 200}}
DEFAULT_MEMBERS: dict[str, int] = {"emotion": 2}
QUICK_FINETUNE = {"epochs": 1.0, "max_seq_length": 32, "batch_size": 16, "lr": 1e-4, "train_limit": 200}


def _extra_eval(kind: str, quick: bool):
    if kind == "intent" and not quick:
        from empathkit.classifiers.intent_align import agreement_on_ed

        return lambda clf: {"agreement with EmpatheticIntents labels on ED test listener turns": agreement_on_ed(clf, limit=1000)}
    return None


@app.command("train")
@friendly_errors
def train(kinds: List[str] = typer.Argument(None, help="kinds to train (default: all)"),
          quick: bool = typer.Option(False, "--quick", help="small seeded subsets (a smoke run of a minute or two)"),
          demo: bool = typer.Option(False, "--demo", help="emotion only: the quick demo classifier `make demo` "
                                                          "trains (frozen MiniLM + LR on a seeded ED subset, ~1 min)"),
          seed: int = typer.Option(0, help="random seed"),
          method: Optional[str] = typer.Option(None, help="linear (frozen MiniLM + logistic regression), mlp (frozen + 1 hidden layer) or finetune; "
                                                          "default: finetune for emotion, linear otherwise (see docs/classifiers.md)"),
          skip_trained: bool = typer.Option(False, "--skip-trained", help="leave already trained kinds alone"),
          time_budget: Optional[float] = typer.Option(None, help="finetune: wall-clock minutes for the training loop "
                                                                 "(the schedule is shortened to fit)"),
          train_limit: Optional[int] = typer.Option(None, help="finetune: at most this many training examples"),
          epochs: Optional[float] = typer.Option(None, help="finetune: passes over the training set"),
          lr: Optional[float] = typer.Option(None, help="finetune: encoder learning rate"),
          init_from: Optional[str] = typer.Option(None, help="finetune: continue from this fine-tuned classifier folder"),
          members: Optional[int] = typer.Option(None, min=1, help="finetune: a seed ensemble of this many members "
                                                                 "(mean probability; default: see docs/classifiers.md)"),
          input_turns: Optional[int] = typer.Option(None, min=1, help="emotion: train on the last N context turns "
                                                                      "(default: the whole context)"),
          out: Optional[str] = typer.Option(None, help="write to this folder instead of the cache (one kind only)")):
    """Train classifiers into the cache (cache_dir()/classifiers/<kind>/) and print their held-out scores."""
    import time

    from empathkit.classifiers import KINDS, classifier_dir, is_trained
    from empathkit.classifiers.train import train_kind

    todo = list(kinds) if kinds else KINDS.names()
    for k in todo:
        KINDS.get(k)
    t0 = time.time()
    if demo:
        if todo != ["emotion"]:
            raise typer.BadParameter("--demo trains the emotion classifier only: `classifiers train emotion --demo`")
        from empathkit.classifiers.quick import train_quick_emotion

        res = train_quick_emotion(seed=seed, out_dir=out)
        scores = ", ".join(f"{a} {b:.4f}" for a, b in res["test"].items())
        typer.echo(f"emotion (quick demo): {res['method']}: test subset {scores} ({res['train_seconds']:.0f}s)")
        return
    from empathkit.classifiers.quick import is_quick_folder

    for k in todo:
        # the quick demo classifier is a stand-in: --skip-trained replaces it with the full one
        if skip_trained and is_trained(k) and not is_quick_folder(classifier_dir(k)):
            typer.echo(f"{k}: already trained, skipped")
            continue
        m = method or DEFAULT_METHOD.get(k, "linear")
        opts = dict(QUICK_FINETUNE if quick else FINETUNE_DEFAULTS.get(k, {})) if m == "finetune" else {}
        if m == "finetune" and time_budget:
            opts["time_budget_s"] = time_budget * 60
        if m == "finetune" and train_limit:
            opts["train_limit"] = train_limit
        if m == "finetune" and epochs:
            opts["epochs"] = epochs
        if m == "finetune" and lr:
            opts["lr"] = lr
        if m == "finetune" and init_from:
            opts["init_from"] = init_from
        if out and len(todo) > 1:
            raise typer.BadParameter("--out needs exactly one kind")
        if input_turns is not None and k != "emotion":
            raise typer.BadParameter("--input-turns applies to the emotion classifier only")
        n_members = members or (1 if quick or m != "finetune" else DEFAULT_MEMBERS.get(k, 1))
        res = train_kind(k, quick=quick, seed=seed, method=m, extra_eval=_extra_eval(k, quick), out_dir=out,
                         input_turns=input_turns, members=n_members, **opts)
        scores = ", ".join(f"{a} {b:.4f}" for a, b in res["test"].items())
        typer.echo(f"{k}: {res['method']}: test {scores} ({res['train_seconds']:.0f}s)")
    typer.echo(f"total {time.time() - t0:.0f}s")


@app.command("list")
@friendly_errors
def list_():
    """Show each kind: trained or not, method, held-out scores, training time."""
    from rich.console import Console
    from rich.table import Table

    from empathkit.classifiers import KINDS, classifier_dir, is_trained, read_metrics

    t = Table("kind", "status", "method", "held-out test", "train s", "folder")
    for name, spec in KINDS.items():
        m = read_metrics(name) if is_trained(name) else None
        if m is None:
            t.add_row(name, "not trained", "", "", "", "")
            continue
        scores = ", ".join(f"{a} {b:.3f}" for a, b in m.get("test", {}).items())
        status = "trained" + (" (quick demo)" if m.get("variant") == "demo-quick" else " (quick)" if m.get("quick")
                              else "")
        t.add_row(name, status, m.get("method", ""), scores,
                  f"{m.get('train_seconds', 0):.0f}", str(classifier_dir(name)))
    Console().print(t)


@app.command("predict")
@friendly_errors
def predict(kind: str = typer.Argument(..., help="classifier kind"),
            text: str = typer.Argument(..., help="text (for epitome-*: the response)"),
            seeker: str = typer.Option("", help="epitome-*: the seeker post the response answers"),
            top: int = typer.Option(3, help="show the top-N labels"),
            source: Optional[str] = typer.Option(None, help="a Hub id / folder instead of the trained classifier")):
    """Print the top labels with probabilities as JSON."""
    from empathkit.classifiers import KINDS, load_classifier

    spec = KINDS.get(kind)
    clf = load_classifier(kind, source)
    inp = [(seeker, text)] if spec.input == "pair" else [text]
    p = clf.predict_proba(inp)[0]
    order = p.argsort()[::-1][:top]
    typer.echo(json.dumps({"kind": kind, "labels": [{"label": clf.labels[i], "prob": round(float(p[i]), 4)}
                                                    for i in order]}, indent=2))
