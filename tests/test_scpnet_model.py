"""Text embeddings from the real MiniLM, CoOp prompts, the SCPNet model, the data generator, and training."""
import numpy as np
import pytest
import torch

from leanops import scpnet
from leanops.scpnet.data import SCENES, generate, scene_labels, sprites
from leanops.scpnet.train import VARIANTS, mean_average_precision, predict, strong_view, train_variant, weak_view

NAMES = ("fork", "knife", "spoon", "giraffe", "zebra", "elephant")


def test_text_embeddings_are_semantic_and_cached():
    e = scpnet.text_embeddings(NAMES)
    assert e.shape == (6, 384) and torch.allclose(e.norm(dim=1), torch.ones(6), atol=1e-5)
    cos = e @ e.T
    assert cos[0, 1] > cos[0, 3] and cos[3, 4] > cos[3, 0]  # fork~knife more than fork~giraffe
    again = scpnet.text_embeddings(NAMES)
    assert torch.equal(e, again)
    again[0] = 0  # the cache hands out copies
    assert torch.equal(scpnet.text_embeddings(NAMES), e)


def test_prior_of_real_names_links_co_occurring_labels():
    names = scene_labels(("kitchen", "animals"))
    g, _ = scpnet.label_prior(scpnet.text_embeddings(names), top_k=4)
    kitchen = torch.tensor([n in SCENES["kitchen"] for n in names])
    off = g.clone().fill_diagonal_(0)
    within = (off[kitchen][:, kitchen].sum() + off[~kitchen][:, ~kitchen].sum()) / off.sum()
    assert within > 0.8


@pytest.mark.parametrize("bad,match", [("fork", "sequence of strings"), (["fork"], "at least 2"),
                                       (["fork", ""], "non-empty"), (["fork", "fork"], "distinct"),
                                       (["fork", 3], "non-empty strings")])
def test_text_embeddings_bad_names(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        scpnet.text_embeddings(bad)


def test_text_embeddings_bad_encoder_and_template():
    with pytest.raises(TypeError, match="encoder must be a"):
        scpnet.text_embeddings(NAMES, encoder="minilm")
    with pytest.raises(ValueError, match="template"):
        scpnet.text_embeddings(NAMES, template="a photo")


def test_learnable_context_starts_at_the_template_and_trains():
    prompts = scpnet.LabelPrompts(NAMES, learn_context=True)
    assert prompts.context.shape == (4, 384)  # "a photo of a"
    out = prompts()
    assert torch.allclose(out, scpnet.text_embeddings(NAMES), atol=1e-5)
    out.sum().backward()
    assert prompts.context.grad is not None and prompts.context.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in prompts._encoder[0].parameters())
    assert [n for n, _ in prompts.named_parameters()] == ["context"]


def test_scpnet_forward_identity_prior_and_batch_independence():
    torch.manual_seed(0)
    model = scpnet.SCPNet(scpnet.SmallCNN(), NAMES, learn_context=False).eval()
    x = torch.rand(5, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (5, 6)
    assert torch.allclose(model(x[2:3]), logits[2:3], atol=1e-5)  # the label side does not depend on the batch
    assert (logits.abs() <= model.log_scale.exp() + 1e-5).all()  # s * cosine
    plain = scpnet.SCPNet(scpnet.SmallCNN(), NAMES, learn_context=False, use_prior=False)
    assert torch.equal(plain.G, torch.eye(6)) and torch.equal(plain.S, torch.eye(6))
    assert not torch.equal(model.G, torch.eye(6))
    # residual: with zero GCN weights the label embeddings are the prompts' embeddings (centred with center=True)
    for w in model.gcn.weights:
        torch.nn.init.zeros_(w.weight)
    e = scpnet.text_embeddings(NAMES)
    assert torch.allclose(model.label_embeddings(), e, atol=1e-6)
    model.center = True
    assert torch.allclose(model.label_embeddings(), e - e.mean(0), atol=1e-6)


def test_scpnet_with_hf_vit_backbone():
    model = scpnet.SCPNet(scpnet.small_vit(image_size=32, patch_size=8, hidden_size=32, layers=1, heads=2), NAMES,
                          learn_context=False)
    logits = model(torch.rand(2, 3, 32, 32))
    logits.sum().backward()
    assert logits.shape == (2, 6) and model.proj.weight.grad is not None


def test_feature_dim_required_without_out_dim():
    with pytest.raises(ValueError, match="feature_dim"):
        scpnet.SCPNet(torch.nn.Flatten(), NAMES, learn_context=False)


def test_generator_ground_truth_and_settings():
    single = generate(60, ("kitchen", "animals"), seed=1)
    names = scene_labels(("kitchen", "animals"))
    assert single.label_names == names and single.images.shape == (60, 3, 32, 32)
    assert ((single.observed == 1).sum(1) == 1).all() and not (single.observed == 0).any()
    assert (single.labels[single.observed == 1] == 1).all()  # the observed positive is a true one
    assert (single.labels.sum(1) >= 1).all() and single.images.min() >= 0 and single.images.max() <= 1
    part = generate(60, ("kitchen", "animals"), setting="partial", known_fraction=0.3, seed=1)
    known = part.observed >= 0
    assert torch.equal(part.observed[known], part.labels[known]) and (known.sum(1) >= 1).all()
    assert 0.2 < known.float().mean() < 0.4
    full = generate(10, setting="full", seed=2)
    assert torch.equal(full.observed, full.labels) and full.labels.shape[1] == 80
    # scene templates: most objects of an image come from its scene
    kitchen = torch.tensor([n in SCENES["kitchen"] for n in names])
    in_kitchen = single.labels[single.scene == 0][:, kitchen].sum() / single.labels[single.scene == 0].sum()
    assert in_kitchen > 0.8
    assert len({(rgb.tobytes(), m.tobytes()) for rgb, m in sprites().values()}) == 80  # distinct sprites


@pytest.mark.parametrize("kwargs,match", [(dict(scenes=("moon",)), "unknown scene"), (dict(setting="half"), "setting"),
                                          (dict(known_fraction=0.0), "known_fraction"), (dict(n=0), "n >= 1")])
def test_generator_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(**{"n": 4, **kwargs})


def test_views_keep_shape_and_strong_differs():
    x = torch.rand(4, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    assert weak_view(x, g).shape == x.shape and strong_view(x, g).shape == x.shape
    assert not torch.allclose(strong_view(x, torch.Generator().manual_seed(1)), weak_view(x, torch.Generator().manual_seed(1)))


def test_mean_average_precision_skips_classes_without_positives():
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1], [0.7, 0.3, 0.9]])
    assert mean_average_precision(scores, labels) == pytest.approx(1.0)
    worse = np.array([[0.1, 0.1, 0.5], [0.9, 0.8, 0.1], [0.2, 0.3, 0.9]])
    # class 0: positives ranked 2nd and 3rd -> AP (1/2 + 2/3) / 2; class 1: AP 1; class 2 has no positive
    assert mean_average_precision(worse, labels) == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1) / 2)


def test_every_variant_trains_a_step():
    data = generate(24, ("kitchen", "food"), seed=3)
    test = generate(16, ("kitchen", "food"), setting="full", seed=4)
    for v in VARIANTS:
        model = train_variant(v, data, seed=0, epochs=2, batch=12)
        scores = predict(model, test.images)
        assert scores.shape == (16, len(data.label_names)) and np.isfinite(scores).all()
    with pytest.raises(ValueError, match="variant"):
        train_variant("nope", data, seed=0)


@pytest.mark.parametrize("variant", ["SPLC", "SPLC w/o correction", "SCPNet", "SCPNet w/o correction",
                                     "SCPNet w/o PESSL"])
def test_variants_apply_their_correction_and_pessl(monkeypatch, variant):
    """The ablation rows differ from their parents in exactly one switch: SPLC's correction, or PESSL."""
    import leanops.scpnet.train as train_mod

    seen = {"correct": [], "pessl": 0}
    real_splc, real_pessl = train_mod.splc_loss, train_mod.pessl_loss
    monkeypatch.setattr(train_mod, "splc_loss", lambda *a, **k: seen["correct"].append(k["correct"]) or real_splc(*a, **k))

    def counting_pessl(*a, **k):
        seen["pessl"] += 1
        return real_pessl(*a, **k)

    monkeypatch.setattr(train_mod, "pessl_loss", counting_pessl)
    data = generate(24, ("kitchen", "food"), seed=3)
    train_variant(variant, data, seed=0, epochs=2, batch=12)
    first, later = seen["correct"][:2], seen["correct"][2:]
    assert first == [False, False]  # the warm-up epoch never corrects
    assert later == [("w/o correction" not in variant)] * 2
    assert seen["pessl"] == (2 if variant in ("SCPNet", "SCPNet w/o correction") else 0)


def test_any_hf_text_encoder_can_be_passed():
    from transformers import CLIPTextConfig, CLIPTextModel

    from leanops.scpnet.text import default_encoder

    tok = default_encoder()[0]
    torch.manual_seed(0)
    clip_text = CLIPTextModel(CLIPTextConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32))
    e = scpnet.text_embeddings(NAMES, encoder=(tok, clip_text))
    assert e.shape == (6, 32) and torch.isfinite(e).all()
    with pytest.raises(ValueError, match="inputs_embeds"):
        scpnet.LabelPrompts(NAMES, encoder=(tok, clip_text), learn_context=True)
    model = scpnet.SCPNet(scpnet.SmallCNN(), NAMES, encoder=(tok, clip_text), learn_context=False, top_k=2)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 6)
