"""DADNN: batched per-scene heads, the model and its bad-input errors, the KT loss, the data generator."""
import math

import pytest
import torch
from torch.nn import functional as F

from leanops import dadnn
from leanops.dadnn.heads import SceneGroups, SceneHeads, auto_tile

S = 5


def _tiny(seed=0, **kw):
    data = dadnn.generate(300, n_scenes=S, n_groups=3, n_categories=4, items_per_category=3, seed=seed)
    torch.manual_seed(seed)
    model = dadnn.DADNN(S, data.item_category, (3,), embed_dim=4, bottom_hidden=(8,), expert_hidden=(8,),
                        head_hidden=(4,), **kw)
    return data, model


# ----------------------------------------------------------------------------- batched heads
@pytest.mark.parametrize("tile", [None, 1, 3, 64])
def test_batched_heads_equal_the_python_loop(tile):
    torch.manual_seed(0)
    heads = SceneHeads(7, 6, (5, 4), out_dim=2).double()
    x = torch.randn(50, 6, dtype=torch.double)
    scene = torch.tensor([6, 0, 0, 3] * 12 + [6, 1])  # scenes 2, 4, 5 absent; uneven counts
    got = heads(x, scene, tile=tile)
    want = heads.loop(x, scene)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # every head on every row: column s equals the row run through head s by hand
    every = heads.all_scenes(x)
    for s in range(7):
        h = torch.relu(x @ heads.layers[0].weight[s] + heads.layers[0].bias[s])
        h = torch.relu(h @ heads.layers[1].weight[s] + heads.layers[1].bias[s])
        torch.testing.assert_close(every[s], h @ heads.layers[2].weight[s] + heads.layers[2].bias[s])


def test_scene_groups_tiles_hold_one_scene_and_rows_round_trip():
    scene = torch.tensor([2, 0, 2, 2, 1, 2, 0])
    g = SceneGroups(scene, 3, tile=2)
    assert g.n_tiles == 1 + 1 + 2  # ceil(2/2) + ceil(1/2) + ceil(4/2)
    assert g.tile_scene.tolist() == [0, 1, 2, 2]
    x = torch.arange(7.0)[:, None]
    tiles = g.pad(x)
    for t in range(g.n_tiles):  # a tile holds rows of its scene only (or zero padding)
        rows = tiles[t, :, 0][tiles[t, :, 0] != 0].long().tolist()
        assert all(int(scene[r]) == int(g.tile_scene[t]) for r in rows)
    torch.testing.assert_close(g.unpad(tiles), x)
    assert auto_tile(4096, 200) == 8 and auto_tile(4096, 20) == 64 and auto_tile(3, 50) == 4


@pytest.mark.parametrize("tile", [1, 4, 16])
def test_upper_bound_tile_count_gives_the_same_rows(tile):
    """The GPU path (no host sync: tile count B // tile + S, spare tiles zero) equals the exact one."""
    torch.manual_seed(1)
    heads = SceneHeads(6, 5, (4,)).double()
    x = torch.randn(40, 5, dtype=torch.double, requires_grad=True)
    scene = torch.randint(0, 6, (40,))
    bound = SceneGroups(scene, 6, tile, exact=False)
    assert bound.n_tiles == 40 // tile + 6 >= SceneGroups(scene, 6, tile).n_tiles
    got = heads(x, bound)
    torch.testing.assert_close(got, heads.loop(x, scene), rtol=1e-12, atol=1e-12)
    (g_bound,) = torch.autograd.grad(got.sum(), x)
    (g_loop,) = torch.autograd.grad(heads.loop(x, scene).sum(), x)
    torch.testing.assert_close(g_bound, g_loop)


def test_empty_batch():
    heads = SceneHeads(3, 4)
    assert heads(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)).shape == (0, 1)


@pytest.mark.parametrize("bottom", ["mlp", "mmoe"])
def test_head_gets_no_main_loss_gradient_from_other_scenes(bottom):
    """Scene 2's head (and its MMoE gate) gets exactly zero main-loss gradient from rows of other scenes,
    and a non-zero one from its own rows."""
    data, model = _tiny(bottom=bottom)
    rows = data.scene != 2
    part = data.subset(rows)
    total, main, _ = dadnn.dadnn_loss(model(*part.model_inputs()), part.label, part.scene)
    main.backward()
    owned = [layer.weight for layer in model.heads.layers] + [layer.bias for layer in model.heads.layers]
    if bottom == "mmoe":
        owned += [model.bottom.gate.weight, model.bottom.gate.bias]
    for p in owned:
        assert p.grad is not None
        assert torch.count_nonzero(p.grad[2]) == 0
        assert torch.count_nonzero(p.grad[int(part.scene[0])]) > 0
    model.zero_grad()
    own = data.subset(data.scene == 2)
    dadnn.dadnn_loss(model(*own.model_inputs()), own.label, own.scene)[1].backward()
    for p in owned:
        assert torch.count_nonzero(p.grad[2]) > 0
        others = torch.cat([p.grad[:2].flatten(), p.grad[3:].flatten()])
        assert torch.count_nonzero(others) == 0


def test_kt_loss_reaches_other_heads_not_the_bottom():
    data, model = _tiny()
    part = data.subset(data.scene == 0)
    out = model(*part.model_inputs(), all_heads=True)
    assert out[1].shape == (len(part), S)
    torch.testing.assert_close(out[1][:, 0], out[0])  # column of the own scene = the routed prediction
    _, _, kt = dadnn.dadnn_loss(out, part.label, part.scene, kt_weight=1.0)
    kt.backward()
    assert torch.count_nonzero(model.heads.layers[0].weight.grad[1]) > 0  # other heads learn from scene 0
    assert torch.count_nonzero(model.heads.layers[0].weight.grad[0]) == 0  # the teacher is detached
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.bottom.parameters())


def test_kt_loss_formula_on_hand_values():
    all_logits = torch.tensor([[0.0, math.log(3.0), -1.0], [2.0, 0.5, 0.0]])
    logit = all_logits[[0, 1], [0, 2]]  # row 0 in scene 0, row 1 in scene 2
    scene = torch.tensor([0, 2])

    def bce(z, q):
        p = 1 / (1 + math.exp(-z))
        return -(q * math.log(p) + (1 - q) * math.log(1 - p))

    q0, q1 = 0.5, 0.5  # sigmoid(0) for both rows' own heads
    want = (bce(math.log(3.0), q0) + bce(-1.0, q0) + bce(2.0, q1) + bce(0.5, q1)) / 4
    assert dadnn.kt_loss(all_logits, logit, scene, "own").item() == pytest.approx(want, rel=1e-6)
    sig = torch.sigmoid(all_logits).mean(1).tolist()
    want = (bce(math.log(3.0), sig[0]) + bce(-1.0, sig[0]) + bce(2.0, sig[1]) + bce(0.5, sig[1])) / 4
    assert dadnn.kt_loss(all_logits, logit, scene, "ensemble").item() == pytest.approx(want, rel=1e-6)
    assert dadnn.kt_loss(all_logits[:, :1], logit, torch.zeros(2, dtype=torch.long)).item() == 0.0


@pytest.mark.parametrize("bottom", ["mlp", "mmoe"])
@pytest.mark.parametrize("pooling", ["kfatt", "din"])
def test_model_forward_and_training_lowers_the_loss(bottom, pooling):
    data, model = _tiny(bottom=bottom, pooling=pooling)
    logit = model(*data.model_inputs())
    assert logit.shape == (len(data),) and torch.isfinite(logit).all()
    before = F.binary_cross_entropy_with_logits(logit, data.label).item()
    dadnn.train(model, data, epochs=4, batch=64, lr=1e-2, kt_weight=0.1)
    after = F.binary_cross_entropy_with_logits(model(*data.model_inputs()), data.label).item()
    assert after < before


def test_shared_baseline_has_one_head():
    data, model = _tiny(scene_heads=False)
    assert model.heads.n_scenes == 1
    logit, every = model(*data.model_inputs(), all_heads=True)
    assert every.shape == (len(data), 1)


# ----------------------------------------------------------------------------- bad input
def test_bad_scene_ids_and_lengths():
    data, model = _tiny()
    scene, user, item, history, offsets = data.model_inputs()
    with pytest.raises(ValueError, match=r"scene ids must be in \[0, n_scenes=5\)"):
        model(scene + 5, user, item, history, offsets)
    with pytest.raises(ValueError, match="scene ids must be in"):
        model(scene - 1, user, item, history, offsets)
    with pytest.raises(TypeError, match="scene must hold integer scene ids"):
        model(scene.float(), user, item, history, offsets)
    with pytest.raises(TypeError, match="scene must be a torch.Tensor"):
        model(scene.tolist(), user, item, history, offsets)
    with pytest.raises(ValueError, match="scene has 299 rows but the features have 300"):
        model(scene[:-1], user, item, history, offsets)
    with pytest.raises(ValueError, match=r"user must be \[B=299"):
        model(scene[:-1], user, item[:-1], history, offsets[:-1])
    with pytest.raises(ValueError, match="offsets must rise from 0"):
        model(scene, user, item, history[:-1], offsets)
    with pytest.raises(ValueError, match="item ids must be in"):
        model(scene, user, item + 1000, history, offsets)
    with pytest.raises(ValueError, match="label must be a tensor of shape"):
        dadnn.dadnn_loss(model(scene, user, item, history, offsets), data.label[:-1], scene)
    heads = SceneHeads(3, 4)
    with pytest.raises(ValueError, match="scene ids must be in"):
        SceneGroups(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="scene ids must be in"):
        heads(torch.zeros(2, 4), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="scene must hold integer scene ids"):
        heads(torch.zeros(2, 4), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="scene has 3 rows but the features have 2"):
        heads(torch.zeros(2, 4), torch.tensor([0, 1, 2]))


def test_bad_constructor_arguments():
    cat = torch.arange(4)
    with pytest.raises(ValueError, match="n_scenes must be an int >= 1"):
        dadnn.DADNN(0, cat)
    with pytest.raises(ValueError, match="n_scenes must be an int >= 1"):
        dadnn.DADNN(2.0, cat)
    with pytest.raises(ValueError, match="n_experts must be an int >= 1 for bottom='mmoe'"):
        dadnn.DADNN(3, cat, bottom="mmoe", n_experts=0)
    with pytest.raises(ValueError, match="bottom must be one of"):
        dadnn.DADNN(3, cat, bottom="moe")
    with pytest.raises(ValueError, match="pooling must be one of"):
        dadnn.DADNN(3, cat, pooling="mean")
    with pytest.raises(ValueError, match="n_scenes must be an int >= 1"):
        SceneHeads(0, 4)
    with pytest.raises(ValueError, match="kt_teacher must be one of"):
        dadnn.kt_loss(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, dtype=torch.long), "mean")
    data, model = _tiny()
    with pytest.raises(ValueError, match="kt_weight must be >= 0"):
        dadnn.train(model, data, epochs=1, kt_weight=-1.0)
    with pytest.raises(ValueError, match="n_scenes must be an int >= 1"):
        dadnn.generate(100, n_scenes=0)
    with pytest.raises(ValueError, match="rho_range"):
        dadnn.generate(100, rho_range=(1.5, 0.0))


# ----------------------------------------------------------------------------- data
def test_generator_ground_truth():
    data = dadnn.generate(20000, n_scenes=10, zipf=1.2, seed=3)
    counts = torch.bincount(data.scene, minlength=10).double()
    share = counts / counts.sum()
    torch.testing.assert_close(share, data.scene_traffic.double(), atol=0.01, rtol=0)
    assert bool((share[:-1] >= share[1:] - 0.01).all())  # long tail: scene 0 busiest
    assert float(data.scene_rho.max()) == pytest.approx(1.0) and float(data.scene_rho.min()) == pytest.approx(-0.6)
    # labels are drawn from the stated probability: calibration of bayes_prob on the labels
    p, y = data.bayes_prob.double(), data.label.double()
    for lo in (0.0, 0.2, 0.4, 0.6):
        m = (p >= lo) & (p < lo + 0.2)
        if int(m.sum()) > 500:
            assert abs(float(y[m].mean() - p[m].mean())) < 0.03
    # the history is jagged within [5, 30] and its items are valid
    assert int(data.lengths.min()) >= 5 and int(data.lengths.max()) <= 30
    scene, user, item, history, offsets = data.model_inputs(slice(0, 10))
    assert history.shape[0] == int(offsets[-1]) == int(data.lengths[:10].sum())
    # a scene with rho = 1 follows the common behaviour: equal (group, category, history) -> equal logit up to base
    assert data.subset(data.scene == 0).scene.unique().tolist() == [0]
