"""`empathkit serve` option wiring, and the real SmolLM2 prompt baseline behind the API (integration)."""

from __future__ import annotations

import openai
import pytest
from serving_helpers import tiny_gen  # noqa: F401 (fixture)

from empathkit.serving.server import BackgroundServer, create_app


def test_serve_cli_wires_options(tiny_gen, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import empathkit.cli.serve as serve_cli
    import empathkit.serving.server as server_mod
    from empathkit.cli.main import app

    seen = {}
    monkeypatch.setattr(serve_cli, "build_generator", lambda method, run, max_new_tokens, precision="auto", backend="transformers", gguf=None: tiny_gen)
    monkeypatch.setattr(server_mod, "run", lambda app, host, port: seen.update(app=app, host=host, port=port))
    monkeypatch.setenv("EMPATHKIT_API_KEY", "from-env")
    res_file = tmp_path / "safety.yaml"
    res_file.write_text("resources_text: 'Call your local emergency number.'\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["serve", "--port", "8123", "--max-batch", "4", "--queue-size", "7",
                                   "--emotion-classifier", "none", "--safety-resources", str(res_file)])
    assert res.exit_code == 0, res.output
    cfg = seen["app"].state.settings
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert cfg.api_key == "from-env" and cfg.max_batch == 4 and cfg.queue_size == 7
    bad = CliRunner().invoke(app, ["serve", "--stream-mode", "bogus", "--emotion-classifier", "none"])
    assert bad.exit_code == 2 and "stream_mode" in bad.output


@pytest.mark.integration
def test_real_smollm2_prompt_baseline_over_the_api(smollm2, one_torch_thread):
    from empathkit.methods.prompt import load

    model, tok = smollm2
    gen = load({}, model=model, tokenizer=tok)
    app = create_app(gen, {"model_id": "smollm2"})
    with BackgroundServer(app) as url, openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as c:
        msgs = [{"role": "user", "content": "I just adopted a kitten and she is adorable!"}]
        r = c.chat.completions.create(model="smollm2", messages=msgs, max_tokens=12)
        assert len(r.choices[0].message.content.split()) >= 2
        text = "".join(ch.choices[0].delta.content or "" for ch in
                       c.chat.completions.create(model="smollm2", messages=msgs, max_tokens=12, stream=True)
                       if ch.choices)
        assert text.strip() == r.choices[0].message.content.strip()  # greedy: streamed == batched reply
