"""Readers of the released output layouts (MoEL, KEMP, EmpDG, CEM, MIME, EmPO, empathy_eval) on a few written
lines each (never copies of the released files), auto-detection, the char-set strip quirk, the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from empathkit.errors import DataError
from empathkit.evaluation.released import detect_format, expand_input, read_released

MOEL = """Emotion: sad
Context: ['my dog ran away .']
trs: oh no , that is sad .
MOE: i am sorry .
ref: did you find him ?

Context: ['i won a prize !', 'what prize ?', 'a trip .']
Emotion: joyful
ref: that is great !
MOE: wow , congrats .
trs: that is nice .
"""

KEMP = """Emotion:sad 
Context:['my dog ran away .'] 
Concept:[defaultdict(<class 'list'>, {'dog': ['pet']})] 
Pred:really sorry to hear .  
Ref:every day is hard . 
Emotion:nostalgic 
Context:['i miss school .'] 
Concept:[defaultdict(<class 'list'>, {})] 
Pred:do you miss it ?  
Ref:me too . 
"""

CEM = """EVAL\tLoss\tPPL\tAccuracy
3.5000\t33.1155\t0.2000\t0.4100
Emotion: sad
Context:['my dog ran away .']
Beam:i am sorry .
Greedy:yeah that is sad .
Ref:did you find him ?
---------------------------------------------------------------
Emotion: joyful
Context:['i won a prize !']
Beam:wow .
Greedy:great news !
Ref:congrats !
---------------------------------------------------------------
"""

MIME = """### COMMENT: written test file ###
EVAL\tLoss\tPPL\tAccuracy\tBleu_g\tBleu_b\tBleu_t
test\t3.6000\t36.6000\t0.3400\t2.70\t3.10\t1.70
emotion:sad\tvader-score: -0.5\tpredicted_emotion: lonely
Context:['my dog ran away .']
Topk:oh no . 
Beam: i am sorry . 
Greedy:that is sad . 
Ref:did you find him ?
----------------------------------------------------------------------
"""

EMPDG = """emotion:sad 
Context:['my dog ran away .'] 
Emotion_context:['dog'] 
Pred:really sad .  
Ref:did you find him ? 
"""


def _w(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_moel_blocks_keys_in_any_order(tmp_path):
    p = _w(tmp_path, "generation_result.txt", MOEL)
    assert detect_format(p) == "moel"
    systems = {s.decode: s for s in read_released(p)}
    assert set(systems) == {"trs", "MOE"}
    moe = systems["MOE"].records
    assert [r.hypothesis for r in moe] == ["i am sorry .", "wow , congrats ."]
    assert moe[1].reference == "that is great !" and moe[1].context == ["i won a prize !", "what prize ?", "a trip ."]
    assert moe[1].emotion == "joyful" and systems["trs"].records[1].hypothesis == "that is nice ."


def test_kemp_charset_strip_eats_leading_letters(tmp_path):
    p = _w(tmp_path, "KEMP.txt", KEMP)
    assert detect_format(p) == "kemp"
    plain = read_released(p)[0].records
    quirk = read_released(p, strip="charset")[0].records
    assert plain[0].hypothesis == "really sorry to hear ." and plain[0].reference == "every day is hard ."
    # 'Pred:'.strip set = {P, r, e, d, :}: "really" loses "re"; 'Ref:' set = {R, e, f, :}: "every" loses "e"
    assert quirk[0].hypothesis.strip() == "ally sorry to hear ." and quirk[0].reference.strip() == "very day is hard ."
    assert quirk[1].hypothesis.strip() == "o you miss it ?"  # "do": 'd' is in the set
    assert quirk[1].emotion == "nostalgic"  # emotion lines are never char-set stripped
    assert plain[0].extra["concept"].startswith("[defaultdict")


def test_cem_header_and_two_decodes(tmp_path):
    p = _w(tmp_path, "results.txt", CEM)
    assert detect_format(p) == "cem"
    systems = {s.decode: s for s in read_released(p)}
    assert set(systems) == {"beam", "greedy"}
    assert systems["greedy"].reported == {"loss": 3.5, "ppl": 33.1155, "bce": 0.2, "accuracy": 0.41}
    assert [r.hypothesis for r in systems["beam"].records] == ["i am sorry .", "wow ."]
    # CEM reads 'Greedy:' with str.strip: "yeah" loses "y", "e"… ("Greedy:" = {G, r, e, d, y, :})
    q = {s.decode: s for s in read_released(p, strip="charset")}
    assert q["greedy"].records[0].hypothesis == "ah that is sad ."


def test_mime_header_bleu_per_decode_and_emotion_line(tmp_path):
    p = _w(tmp_path, "output.txt", MIME)
    assert detect_format(p) == "mime"
    systems = {s.decode: s for s in read_released(p)}
    assert set(systems) == {"topk", "beam", "greedy"}
    assert systems["greedy"].reported == {"loss": 3.6, "ppl": 36.6, "accuracy": 0.34, "bleu_g": 2.7}
    assert systems["beam"].reported["bleu_b"] == 3.1 and "bleu_g" not in systems["beam"].reported
    rec = systems["beam"].records[0]
    assert rec.hypothesis == "i am sorry ." and rec.emotion == "sad" and rec.extra["predicted_emotion"] == "lonely"


def test_empdg_layout_and_errors(tmp_path):
    p = _w(tmp_path, "EmpDG.txt", EMPDG)
    assert detect_format(p) == "empdg"
    (s,) = read_released(p)
    assert s.decode == "pred" and s.records[0].extra["emotion_context"] == "['dog']"
    bad = _w(tmp_path, "bad.txt", EMPDG.replace("Emotion_context", "oops this is not a key line\nEmotion_context"))
    with pytest.raises(DataError, match=r"bad\.txt:3: expected"):
        read_released(bad, "empdg")
    cut = _w(tmp_path, "cut.txt", EMPDG.rsplit("Ref:", 1)[0])
    with pytest.raises(DataError, match="no Ref: line"):
        read_released(cut, "empdg")


def test_empo_tilde_csv_with_multiline_prompt_and_human(tmp_path):
    text = ('~Unnamed: 0~chat_templates~gen_targets~prevs~emotions~gens~diff_ER_scores\n'
            '0~0~"<|user|>\nMy dog ran away.</s>\n<|assistant|>\n"~Did you find him?~My dog ran away.~sad~'
            'Oh no, I am sorry.~2.0\n'
            '1~1~"<|user|>\nI won!</s>\n"~Congrats!~I won!~joyful~That is great!~0.0\n')
    p = _w(tmp_path, "preds_x_epi.txt", text)
    assert detect_format(p) == "empo"
    gens, hum = read_released(p, human=True)
    assert gens.records[0].hypothesis == "Oh no, I am sorry." and gens.records[0].context == ["My dog ran away."]
    assert gens.records[0].extra["diff_ER_scores"] == 2.0 and gens.records[1].emotion == "joyful"
    assert hum.decode == "human" and hum.records[1].hypothesis == "Congrats!"


def test_empathy_eval_json_every_decode(tmp_path):
    items = [{"query": ["my dog ran away ."], "decoder_greedy": "oh no .", "beam_search": "sorry .",
              "response": "oh no ."}, {"query": ["i won !"], "decoder_greedy": "nice .", "beam_search": "wow .",
                                       "response": "nice ."}]
    p = _w(tmp_path, "x_responses.json", json.dumps(items))
    assert detect_format(p) == "empathy-eval"
    systems = read_released(p)
    assert [s.decode for s in systems] == ["response", "beam_search", "decoder_greedy"]
    assert systems[1].records[1].hypothesis == "wow ." and systems[0].records[0].context == ["my dog ran away ."]
    named = expand_input("x", p)
    assert [n for n, _, _ in named] == ["x:response", "x:beam_search", "x:decoder_greedy"]
    assert expand_input("ours", tmp_path / "preds.jsonl") is None  # our own layouts go to the generic readers


def test_cli_released_file_every_decode_and_reported(tmp_path):
    from empathkit.cli.main import app

    p = _w(tmp_path, "output.txt", MIME)
    res = CliRunner().invoke(app, ["evaluate", f"mime={p}", "-m", "dist-ws", "-o", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    for name in ("mime:topk", "mime:beam", "mime:greedy"):
        assert name in res.output
    assert "reported by the file (mime:greedy): accuracy=0.34, bleu_g=2.7" in res.output
    report = (tmp_path / "o" / "report.md").read_text()
    assert "Reported by the file" in report
    runs = json.loads((tmp_path / "o" / "aggregates.json").read_text())["runs"]
    assert runs[2]["reported_by_file"]["ppl"] == 36.6
    k = _w(tmp_path, "KEMP.txt", KEMP)  # kemp-paper turns the char-set strip on; --strip prefix turns it off
    res = CliRunner().invoke(app, ["evaluate", str(k), "-p", "kemp-paper", "-o", str(tmp_path / "k")])
    assert res.exit_code == 0, res.output
    cfg = (tmp_path / "k" / "config.yaml").read_text()
    assert "strip: charset" in cfg
    res = CliRunner().invoke(app, ["evaluate", str(k), "--format", "moel", "-o", str(tmp_path / "m")])
    assert res.exit_code == 2 and "KEMP.txt" in res.output


def test_care_one_column_csv_with_references(tmp_path):
    p = _w(tmp_path, "generated_results.txt", 'i am sorry . \n"yeah , that is nice . "\n')
    refs = _w(tmp_path, "refs.txt", "did you find him ?\ncongrats !\n")
    (s,) = read_released(p, "care", references=refs)
    assert [r.hypothesis for r in s.records] == ["i am sorry . ", "yeah , that is nice . "]
    assert s.records[1].reference == "congrats !"
    assert detect_format(p) is None  # plain lines: only with --format care
    short = _w(tmp_path, "short.txt", "x\n")
    with pytest.raises(DataError, match="2 responses but 1 references"):
        read_released(p, "care", references=short)
