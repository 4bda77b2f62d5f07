"""ReflectDiffu components (empathkit/methods/reflectdiffu): diffusion, pointer-generator, C-Experts, NT-Xent, the
importance-weighted policy gradient, vocabulary / batching, and that each ablation switch removes exactly its
component. Tiny tensors and written fixtures only."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from empathkit.methods.reflectdiffu.config import RDModelConfig
from empathkit.methods.reflectdiffu.diffusion import DDPM
from empathkit.methods.reflectdiffu.experts import (
    NEG,
    NEU,
    POS,
    CExperts,
    majority,
    nt_xent,
    vote,
)
from empathkit.methods.reflectdiffu.intent import (
    IntentTwice,
    behaviour_policy,
    importance_pg_loss,
    sample_actions,
)
from empathkit.methods.reflectdiffu.vocab import EOS_ID, SPECIALS, Vocab, build_vocab

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


# ---------------------------------------------------------------------------------------------------- diffusion
def test_forward_noising_matches_the_closed_form():
    ddpm = DDPM(4, 30, 1e-5, 5e-2, 8)
    betas = torch.linspace(1e-5, 5e-2, 30, dtype=torch.float64)
    x0 = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    t = 17
    abar = float(torch.prod(1 - betas[:t]))
    noise = torch.randn(1, 4)
    got = ddpm.q_sample(x0, torch.tensor([t]), noise)
    assert torch.allclose(got, math.sqrt(abar) * x0 + math.sqrt(1 - abar) * noise, atol=1e-6)
    # iterating Eq. 6 step by step has the closed form's mean and variance
    torch.manual_seed(0)
    x = x0.expand(20000, 4).clone()
    for s in range(t):
        x = (1 - betas[s]).sqrt().float() * x + betas[s].sqrt().float() * torch.randn_like(x)
    assert torch.allclose(x.mean(0), math.sqrt(abar) * x0[0], atol=0.03)
    assert torch.allclose(x.var(0), torch.full((4,), 1 - abar), atol=0.03)


def test_reverse_walk_goes_from_T_to_1_with_noise_except_the_last_step():
    ddpm = DDPM(4, 6, 1e-4, 5e-2, 8)
    trace: list = []
    ddpm.sample(torch.zeros(2, 4), trace=trace)
    assert [t for t, _ in trace] == [6, 5, 4, 3, 2, 1]
    assert [noisy for _, noisy in trace] == [True] * 5 + [False]
    # the noise really enters: per-row generators make a row's sample reproducible and batch-independent
    g = lambda s: torch.Generator().manual_seed(s)
    a = ddpm.sample(torch.ones(2, 4), generators=[g(1), g(2)])
    b = ddpm.sample(torch.ones(1, 4), generators=[g(2)])
    c = ddpm.sample(torch.ones(1, 4), generators=[g(3)])
    assert torch.allclose(a[1], b[0]) and not torch.allclose(b, c)


def test_reverse_step_is_the_ddpm_posterior_mean_plus_sigma_z():
    ddpm = DDPM(3, 4, 1e-3, 5e-2, 8)
    for p in ddpm.model.parameters():
        torch.nn.init.zeros_(p)  # eps_hat = 0: each step is x / sqrt(alpha_t) + sqrt(beta_t) z
    x0 = torch.tensor([[0.3, -0.1, 2.0]])
    gens = [torch.Generator().manual_seed(5)]
    out = ddpm.sample(x0, generators=gens)
    g = torch.Generator().manual_seed(5)
    x = ddpm.q_sample(x0, torch.tensor([4]), torch.randn(3, generator=g)[None])
    for t in (4, 3, 2, 1):
        x = x / ddpm.alphas[t - 1].sqrt()
        if t > 1:
            x = x + ddpm.betas[t - 1].sqrt() * torch.randn(3, generator=g)[None]
    assert torch.allclose(out, x, atol=1e-6)


def test_noise_prediction_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    ddpm = DDPM(8, 20, 1e-5, 5e-2, 32, cond_dim=8)
    x0, cond = torch.randn(16, 8), torch.randn(16, 8)
    t, noise = torch.randint(1, 21, (16,)), torch.randn(16, 8)
    opt = torch.optim.Adam(ddpm.parameters(), lr=3e-3)
    first = float(ddpm.loss(x0, cond, t=t, noise=noise)[0].detach())
    for _ in range(150):
        loss, _ = ddpm.loss(x0, cond, t=t, noise=noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.3 * first


# ---------------------------------------------------------------------------------------------------- pointer-generator
def _decoder(V=12, d=16):
    from empathkit.methods.reflectdiffu.decoder import PointerGeneratorDecoder
    from empathkit.methods.reflectdiffu.encoder import TokenEmbedding

    torch.manual_seed(0)
    emb = TokenEmbedding(V, d, 64, reasons=False, dropout=0.0)
    return PointerGeneratorDecoder(emb, V, d, 2, 1, 32, 0.0).eval()


def test_pointer_generator_mixture_is_a_distribution():
    dec = _decoder()
    B, S, n_oov = 2, 5, 2
    src_ext = torch.tensor([[5, 6, 12, 13, 5], [7, 12, 8, 0, 0]])
    src_pad = src_ext.eq(0)
    lp = dec(torch.tensor([[2, 5, 12], [2, 7, 0]]), torch.randn(B, 4, 16), None, torch.randn(B, S, 16), src_ext,
             src_pad, n_oov)
    assert lp.shape == (B, 3, 12 + n_oov)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(B, 3), atol=1e-5)
    assert (lp.exp()[1, :, 13] < 1e-9).all()  # row 1 has only one OOV word: id V+1 gets no mass


def test_pointer_generator_copies_an_out_of_vocabulary_context_word():
    from empathkit.methods.reflectdiffu.decoding import token_str

    dec = _decoder()
    with torch.no_grad():
        dec.gen.bias.fill_(-50.0)  # p_gen ≈ 0: copy only
    src_ext = torch.tensor([[12, 12, 12]])  # the context's only word is OOV (extended id V = 12)
    lp = dec(torch.tensor([[2]]), torch.randn(1, 2, 16), None, torch.randn(1, 3, 16), src_ext,
             torch.zeros(1, 3, dtype=torch.bool), 1)
    best = int(lp[0, -1].argmax())
    vocab = Vocab(list(SPECIALS) + [f"w{i}" for i in range(7)])
    assert best == 12 and token_str(vocab, ["zyzzyva"], best) == "zyzzyva"
    assert lp[0, -1].exp()[12] > 0.99


def test_copy_mixture_splits_mass_by_p_gen():
    from empathkit.methods.reflectdiffu.decoder import copy_mixture

    p_vocab = torch.tensor([[[0.5, 0.5, 0.0]]])
    attn = torch.tensor([[[0.25, 0.75]]])
    out = copy_mixture(p_vocab, attn, torch.tensor([[[0.4]]]), torch.tensor([[1, 3]]), 1)
    assert torch.allclose(out, torch.tensor([[[0.2, 0.2 + 0.15, 0.0, 0.45]]]))


# ---------------------------------------------------------------------------------------------------- C-Experts
def test_vader_votes_and_the_batch_majority():
    from empathkit.methods.reflectdiffu.sources import vader_compounds

    pos, neg, neu = vader_compounds(["I love this, it is wonderful!", "This is awful and I hate it.", "The bus."])
    assert (vote(pos), vote(neg), vote(neu)) == (POS, NEG, NEU)
    assert majority([POS, POS, NEG]) == POS
    assert majority([NEG, NEG, POS, NEU]) == NEG
    assert majority([NEU, NEU, POS]) == NEU
    assert majority([POS, NEG]) == NEU  # a tie has no majority: soft voting


def test_expert_selection_follows_the_vote():
    torch.manual_seed(0)
    ex = CExperts(8, 5)
    Q = torch.randn(3, 8)
    h = ex.e_emo(Q)
    p_pos, p_neg = torch.log_softmax(ex.w_pos(h), -1), torch.log_softmax(ex.w_neg(h), -1)
    assert torch.allclose(ex(Q, POS), p_pos) and torch.allclose(ex(Q, NEG), p_neg)
    soft = ex(Q, NEU)
    assert torch.allclose(soft.exp(), (p_pos.exp() + p_neg.exp()) / 2, atol=1e-6)
    assert torch.allclose(soft.exp().sum(-1), torch.ones(3), atol=1e-6)
    mixed = ex(Q, [POS, NEG, NEU])  # per-example choice (inference_selection: example)
    assert torch.allclose(mixed, torch.stack([p_pos[0], p_neg[1], soft[2]]))


def test_nt_xent_equals_a_hand_computation():
    z = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.2]])
    y = torch.tensor([0, 0, 1, 1])
    tau = 0.5
    zn = [v / v.norm() for v in z]
    s = [[float(zn[i] @ zn[j]) / tau for j in range(4)] for i in range(4)]
    terms = []
    for i in range(4):
        den = sum(math.exp(s[i][k]) for k in range(4) if k != i)
        for j in range(4):
            if j != i and y[i] == y[j]:
                terms.append(-math.log(math.exp(s[i][j]) / den))
    assert math.isclose(float(nt_xent(z, y, tau)), sum(terms) / len(terms), rel_tol=1e-5)
    assert float(nt_xent(z, torch.tensor([0, 1, 2, 3]), tau)) == 0.0  # no positive pair


# ---------------------------------------------------------------------------------------------------- policy
def test_importance_weighted_policy_gradient_raises_the_expected_reward():
    torch.manual_seed(0)
    reward = torch.tensor([0.1, 0.9, 0.3, 0.5])
    theta = torch.zeros(4, requires_grad=True)
    mask = torch.ones(64, 4, dtype=torch.bool)
    opt = torch.optim.SGD([theta], lr=0.5)
    expected = lambda: float(torch.softmax(theta, -1) @ reward)
    start = expected()
    rhos = []
    for _ in range(150):
        pi = torch.softmax(theta, -1).expand(64, 4)
        mu = behaviour_policy(pi, mask, 0.5)  # half the actions explore: the ratio pi/mu matters
        a = sample_actions(mu)
        loss, rho = importance_pg_loss(pi, mu, a, reward[a], clip=None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rhos.append(float(rho.mean()))
    assert start == pytest.approx(0.45) and expected() > 0.8
    assert abs(sum(rhos) / len(rhos) - 1.0) < 0.2  # E_mu[pi/mu] = 1


def test_behaviour_policy_respects_intent_refer():
    pi = torch.tensor([[0.0, 0.7, 0.3, 0.0]])
    mask = torch.tensor([[False, True, True, False]])
    mu = behaviour_policy(pi, mask, 0.2)
    assert torch.allclose(mu, torch.tensor([[0.0, 0.66, 0.34, 0.0]]))


# ---------------------------------------------------------------------------------------------------- vocabulary, batches
def test_vocab_detok_only_appends_and_round_trips(tmp_path):
    v = build_vocab([["i", "am", "sad", "."], ["i", "am", "happy", "!"]], size=8)
    assert v.tokens[:len(SPECIALS)] == list(SPECIALS) and len(v) == 8
    toks = ["oh", "no", ",", "i", "'m", "sorry", "!"]
    texts = [v.detok(toks[:k]) for k in range(1, len(toks) + 1)]
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts)) and texts[-1] == "oh no, i'm sorry!"
    v.save(tmp_path)
    assert Vocab.load(tmp_path).tokens == v.tokens


def test_collate_gives_oov_context_words_extended_ids():
    from empathkit.methods.reflectdiffu.features import Featurizer, collate
    from empathkit.types import Turn

    v = build_vocab([["my", "cat", "is", "gone", "sorry", "about", "your"]], size=20)
    f = Featurizer(v, None, None, 32, 16)
    items = f.items([[Turn("speaker", "My cat Zorbo is gone")]], ["sad"], ["consoling"], ["Sorry about Zorbo"])
    b = collate(items, v)
    V = len(v)
    assert b["oovs"] == [["zorbo"]] and b["n_oov"] == 1
    assert b["src_ext"][0].tolist() == [v.index["my"], v.index["cat"], V, v.index["is"], v.index["gone"]]
    assert b["dec_out"][0].tolist() == [v.index["sorry"], v.index["about"], V, EOS_ID]
    assert b["emotion"].tolist() == [31 - 31 + items[0].emotion] and items[0].emotion >= 0
    assert b["positive"].tolist() == [False] and items[0].intent >= 0


def test_noam_schedule():
    from empathkit.methods.reflectdiffu.train import noam_factor

    assert noam_factor(50, 100) == 0.5 and noam_factor(100, 100) == 1.0 and noam_factor(400, 100) == 0.5


# ---------------------------------------------------------------------------------------------------- ablations
TINY = {"emb_dim": 16, "heads": 2, "enc_layers": 1, "dec_layers": 1, "ff_dim": 32, "diffusion_steps": 5,
        "denoiser_hidden": 16, "policy_hidden": 8, "reason_source": "hash", "intent_prior": "uniform", "dropout": 0.0}
COMPONENT = {"use_era": ("emb.reason.", "encoder.h_proj.", "encoder.reason_attn.", "encoder.emb.reason.",
                         "decoder.emb.reason."),
             "use_c_experts": ("experts.e_emo.", "experts.w_pos.", "experts.w_neg."),
             "use_intent_twice": ("intent.",),
             "use_emu": ("ddpm_pos.", "ddpm_neg.", "fuse.", "fuse_norm.")}
LOSSES = {"use_era": set(), "use_c_experts": {"L_em_ntx"}, "use_intent_twice": {"L_intent", "L_pg", "reward", "rho"},
          "use_emu": {"L_kl_pos", "L_kl_neg"}}


def _model_and_batch(**switches):
    from empathkit.data.protocols import to_examples
    from empathkit.methods.reflectdiffu.features import Featurizer, collate
    from empathkit.methods.reflectdiffu.model import ReflectDiffu, refer_mask_from_map
    from empathkit.methods.reflectdiffu.sources import HashReasons, UniformPrior
    from empathkit.testing import make_dialogues

    cfg = RDModelConfig(**TINY, **switches)
    exs = to_examples(make_dialogues(), "every-listener")[:6]
    v = build_vocab([w.split() for w in ("i am so sorry", "that is wonderful news")], size=40)
    reasons = HashReasons(8)
    f = Featurizer(v, reasons if cfg.use_era else None, UniformPrior(), 32, 12)
    b = collate(f.example_items(exs), v, 8 if cfg.use_era else None)
    b["intent"] = torch.tensor([0, 3, -1, 2, 8, 1])
    torch.manual_seed(0)
    m = ReflectDiffu(cfg, len(v), 8 if cfg.use_era else None,
                     refer_mask_from_map({"sad": ["consoling", "encouraging", "neutral"]}))
    return m, b


@pytest.mark.parametrize("switch", sorted(COMPONENT))
def test_each_ablation_removes_exactly_its_component(switch):
    full, b_full = _model_and_batch()
    abl, b = _model_and_batch(**{switch: False})
    names_full = {n for n, _ in full.named_parameters()}
    names_abl = {n for n, _ in abl.named_parameters()}
    gone = names_full - names_abl
    assert gone and all(n.startswith(COMPONENT[switch]) for n in gone)
    extra = names_abl - names_full
    assert extra == ({"experts.head.weight", "experts.head.bias"} if switch == "use_c_experts" else set())
    if switch == "use_intent_twice":  # the DDPMs lose their intent condition: narrower first layers, same names
        assert all(p.shape == full.get_parameter(n).shape or n.endswith("net.0.weight")
                   for n, p in abl.named_parameters() if n in names_full)
    torch.manual_seed(1)
    out_full = full.losses(b_full)
    torch.manual_seed(1)
    out = abl.losses(b)
    assert set(out_full) - set(out) == LOSSES[switch]
    out["loss"].backward()
    assert all(p.grad is not None for n, p in abl.named_parameters() if not n.startswith("emb.word"))  # all used


def test_switched_off_inputs_do_not_reach_the_graph():
    """w/o ERA ignores tags and h~; w/o C-Experts ignores the VADER votes; w/o Intent twice ignores p_intent."""
    for switch, key, change in (("use_era", "reason_ids", lambda x: x.clamp(max=1) * 2),
                                ("use_c_experts", "votes", lambda v: ["pos"] * len(v)),
                                ("use_intent_twice", "p_intent", lambda p: torch.flip(p, [1]) * 0 + torch.eye(9)[
                                    :len(p)])):
        m, b = _model_and_batch(**{switch: False})
        m.eval()
        torch.manual_seed(2)
        a = m.losses(b)["loss"]
        b2 = dict(b, **{key: change(b[key])})
        if switch == "use_era":
            b2["h"] = torch.randn_like(b["h"]) if "h" in b else None
        torch.manual_seed(2)
        assert torch.allclose(m.losses(b2)["loss"], a)
    m, b = _model_and_batch()  # … and with the component on, the same change matters
    m.eval()
    torch.manual_seed(2)
    a = m.losses(b)["loss"]
    torch.manual_seed(2)
    assert not torch.allclose(m.losses(dict(b, votes=["pos"] * 6))["loss"], a)


def test_baseline_is_all_four_off():
    assert RDModelConfig(use_era=False, use_c_experts=False, use_intent_twice=False, use_emu=False).baseline
    assert not RDModelConfig().baseline
    with pytest.raises(ValueError):
        RDModelConfig(emb_dim=30, heads=4)


@pytest.mark.parametrize("d", [96, 128])
def test_correcting_layer_starts_near_uniform_not_at_the_sampled_action(d):
    """At initialisation L_intent is about ln(n_intents): the sampled action's own term E[a].E[a] (~d) must not put
    it ~sqrt(d) logits above the other intents (it did with a 1/sqrt(d) scale: CE ~ 9-10 vs ln 9 = 2.2)."""
    torch.manual_seed(0)
    it = IntentTwice(d, 9, 2 * d, 0.5, 0.1)
    state, actions, gold = torch.randn(512, d) * 0.5, torch.randint(0, 9, (512,)), torch.randint(0, 9, (512,))
    with torch.no_grad():
        ce = float(torch.nn.functional.cross_entropy(it.correct(state, actions), gold))
    assert abs(ce - math.log(9)) < 0.6, ce
