"""TempMe training pieces: retrieval metrics and InfoNCE on hand-made values, FLOPs against a hand count,
the matched ToMe schedule, LoRA through peft, the frame-folder dataset, the generator's ground truth, and a
tiny run of the experiment's main function."""
import json
import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("transformers")
from transformers import CLIPVisionConfig, CLIPVisionModel  # noqa: E402

import leanops.tempme as tm  # noqa: E402
from leanops.tempme.baselines import matched_tome_schedule  # noqa: E402
from leanops.tempme.flops import count_gflops, flops  # noqa: E402
from leanops.tempme.metrics import group_r1, ranks, retrieval_metrics  # noqa: E402
from leanops.tempme.synthetic import WordTokenizer, VideoSpec, all_specs, render  # noqa: E402
from leanops.tempme.train import info_nce  # noqa: E402


def test_retrieval_metrics_hand_made():
    # text 0 -> rank 1, text 1 -> rank 3, text 2 -> rank 2
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.5], [0.1, 0.7, 0.6]])
    assert ranks(sim).tolist() == [1, 3, 2]
    m = retrieval_metrics(sim)
    assert m["t2v_R@1"] == pytest.approx(100 / 3) and m["t2v_R@5"] == 100.0
    assert m["t2v_MdR"] == 2 and m["t2v_MnR"] == pytest.approx(2.0)
    # video->text: columns: video 0 -> text 0 (0.9 top) rank 1; video 1: 0.2 vs 0.1, 0.7 -> rank 2; video 2: 0.6 vs 0, .5 -> 1
    assert ranks(sim.t()).tolist() == [1, 2, 1]
    assert m["v2t_R@1"] == pytest.approx(200 / 3)
    assert m["R-Sum"] == pytest.approx(100 / 3 + 100 + 100 + 200 / 3 + 100 + 100)
    assert ranks(torch.zeros(2, 2)).tolist() == [2, 2]  # ties count against the match
    assert group_r1(sim, ["a", "a", "b"]) == pytest.approx(200 / 3)  # text 1 loses to video 0 in its group


def test_metrics_bad_input():
    with pytest.raises(ValueError, match="sim must be a non-empty square"):
        retrieval_metrics(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="sim must be finite"):
        retrieval_metrics(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="groups needs one key per row"):
        group_r1(torch.zeros(2, 2), ["a"])


def test_info_nce_hand_made():
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    scale = torch.tensor(math.log(2.0))  # logits 2 * cos: 2 on the diagonal, 0 off it
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))  # both directions alike
    assert info_nce(v, t, scale).item() == pytest.approx(expected, rel=1e-5)
    # identical captions share the target: all logits equal, target (1/2, 1/2): cross-entropy log 2
    same = torch.ones(2, 2, dtype=torch.bool)
    v2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert info_nce(v2, v2, scale, same).item() == pytest.approx(math.log(2.0), rel=1e-5)
    with pytest.raises(ValueError, match="video and text must be"):
        info_nce(v, t[:1], scale)


def test_flops_hand_count():
    # 2 layers, hidden C=8, MLP I=16, 32 px / patch 16: 5 tokens per frame, 2 frames; layer 0 ImgMe r=1,
    # layer 1 ClipMe (group 2): 8 tokens, cross floor(0.3*8)=2 -> 6, intra floor(0.6)=0
    torch.manual_seed(0)
    c, i = 8, 16
    model = CLIPVisionModel(CLIPVisionConfig(hidden_size=c, intermediate_size=i, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=32, patch_size=16)).eval()
    tm.patch(model, 2, tm.TempMeConfig(imgme_r=1, merge_layers=(1,), frame_groups=(2,), cross_clip=0.3,
                                       intra_clip=0.1))
    conv = 2 * 2 * 4 * (3 * 16 * 16) * c
    proj, mlp = 2 * 4 * c * c, 2 * 2 * c * i  # per token: q, k, v, out projections; the two MLP matrices
    per_token = proj + mlp
    attn = lambda n: 4 * n * n * c  # noqa: E731  (QK^T and AV, multiply-add = 2)
    layer0 = 10 * proj + 2 * attn(5) + 8 * mlp  # the MLP runs after the merge (r=1 per frame)
    layer1 = 8 * 2 * c * c + 6 * per_token + attn(6)  # cross-merge keys of the 8 joined tokens
    unmerged = conv + 2 * (10 * per_token + 2 * attn(5))
    got = flops(model, 2)
    assert got["tempme"] * 1e9 == pytest.approx(conv + layer0 + layer1)
    assert got["unmerged"] * 1e9 == pytest.approx(unmerged)
    assert tm.tokens_per_layer(model) == [10, 8, 6]
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        flops(model, 2, image_size=0)
    assert count_gflops(lambda: torch.ones(2, 3) @ torch.ones(3, 4)) == pytest.approx(2 * 2 * 3 * 4 / 1e9)


def test_matched_tome_schedule():
    trace = tm.planned_trace(tm.TempMeConfig(), 12, 12, 50)
    schedule = matched_tome_schedule(trace, 12)
    assert schedule == [2] * 8 + [12, 8, 5, 1]  # 50 -> 34 -> 22 -> 14 -> 9 -> 8 per frame (96 per video)
    with pytest.raises(ValueError, match="num_frames=12"):
        matched_tome_schedule([601, 97], 12)


def test_lora_trains_only_adapters_and_temporal_embeddings():
    pytest.importorskip("peft")
    from transformers import CLIPConfig, CLIPModel

    from leanops.tempme.lora import add_lora
    torch.manual_seed(0)
    v = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, image_size=32,
             patch_size=8)
    t = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=20,
             max_position_embeddings=8)
    model = CLIPModel(CLIPConfig(text_config=t, vision_config=v, projection_dim=8))
    tm.patch(model, 4, tm.TempMeConfig(imgme_r=1, merge_layers=(1, 2), frame_groups=(2, 2)))
    peft_model = add_lora(model, rank=2)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("tempme_temporal_pos" in n for n in trainable) and any("logit_scale" in n for n in trainable)
    assert any("text_model" in n and "lora_A" in n for n in trainable)
    assert any("vision_model" in n and "q_proj.lora_B" in n for n in trainable)
    assert all("lora_" in n or "tempme_temporal_pos" in n or "logit_scale" in n for n in trainable)
    out = tm.encode_video(peft_model, torch.randn(2, 4, 3, 32, 32))
    assert out.shape == (2, 8)
    with pytest.raises(ValueError, match="rank must be a positive int"):
        add_lora(CLIPModel(CLIPConfig(text_config=t, vision_config=v)), rank=0)


def test_frame_folder_dataset(tmp_path):
    from PIL import Image

    from leanops.tempme.folder import FrameFolderDataset
    for vid, colour in (("v1", (255, 0, 0)), ("v2", (0, 0, 255))):
        os.makedirs(tmp_path / vid)
        for f in range(3):
            Image.new("RGB", (20, 10), colour).save(tmp_path / vid / f"{f:03d}.jpg")
    (tmp_path / "caps.json").write_text(json.dumps({"v1": ["a red video", "red"], "v2": "a blue video"}))
    ds = FrameFolderDataset(str(tmp_path), str(tmp_path / "caps.json"), num_frames=4, image_size=8,
                            mean=(0, 0, 0), std=(1, 1, 1))
    assert len(ds) == 3
    pix, cap = ds[2]
    assert cap == "a blue video" and pix.shape == (4, 3, 8, 8)
    assert pix[:, 2].mean() > 0.9 and pix[:, 0].mean() < 0.1  # blue channel high, red low (JPEG: nearly)
    (tmp_path / "bad.json").write_text(json.dumps({"v3": "missing"}))
    with pytest.raises(ValueError, match="video 'v3' in captions_json has no frames"):
        FrameFolderDataset(str(tmp_path), str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="root must be a directory"):
        FrameFolderDataset(str(tmp_path / "nope"), str(tmp_path / "caps.json"))
    with pytest.raises(ValueError, match="num_frames must be a positive int"):
        FrameFolderDataset(str(tmp_path), str(tmp_path / "caps.json"), num_frames=0)


def test_generator_ground_truth():
    import numpy as np
    spec = VideoSpec("square", "red", "right", "fast")
    video = render(spec, np.random.default_rng(0), frames=12, size=32)
    assert video.shape == (12, 3, 32, 32)
    red = (video[:, 0] * 0.25 + 0.5 > 0.85) & (video[:, 1] * 0.25 + 0.5 < 0.15)  # the object's pixels
    xs = [torch.nonzero(red[f])[:, 1].float().mean().item() for f in range(12)]
    steps = [b - a for a, b in zip(xs, xs[1:])]
    assert all(s > 0 for s in steps) and abs(sum(steps) / 11 - 0.05 * 32) < 0.3  # moves right at 1.6 px/frame
    caps = [s.caption for s in all_specs()]
    assert len(set(caps)) == len(caps) == 96  # every test caption names one video
    tok = WordTokenizer()
    ids = tok(["a slow red circle moving left"])["input_ids"][0].tolist()
    assert ids[0] == tok.bos_id and ids[7] == tok.eos_id and 0 not in ids  # 6 words fill the 8 slots
    assert tok(["a red circle"])["input_ids"][0].tolist()[4:] == [tok.eos_id, 0, 0, 0]


def test_experiment_main_tiny(tmp_path):
    pytest.importorskip("peft")
    from leanops.tempme import experiment
    res = experiment.run_experiment(seeds=1, seed=100, quick=True, out_dir=str(tmp_path), progress=False,
                                    overrides=dict(train_videos=8, pretrain_steps=1, adapt_steps=1, batch=4))
    assert (tmp_path / "tempme-experiment-quick.json").exists() and (tmp_path / "tempme-experiment-quick.png").exists()
    methods = res["runs"][0]["methods"]
    assert set(methods) == set(experiment.METHODS)
    assert methods["TempMe"]["final_tokens_per_video"] == 42 and methods["meanP (all tokens)"]["final_tokens_per_video"] == 204
    assert methods["TempMe"]["gflops_per_video"] < methods["meanP (all tokens)"]["gflops_per_video"]
    with pytest.raises(ValueError, match="seeds must be a positive int"):
        experiment.run_experiment(seeds=0)
