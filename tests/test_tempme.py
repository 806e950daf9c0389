"""TempMe patch: the token trace (600 -> 97 at ViT-B/32), equality with per-frame encoding where nothing is
joined, conservation of token sizes, joining of clips, and a clear error for every bad input."""
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel, BertConfig, BertModel  # noqa: E402

import leanops.tempme as tm  # noqa: E402
from leanops import tome  # noqa: E402
from leanops.tempme.layers import join_clips  # noqa: E402
from leanops.tempme.state import TempMeState  # noqa: E402


def vision(image_size=224, patch_size=32, layers=12, hidden=16, seed=0):
    """The ViT-B geometry (depth, patch grid) at a tiny width: the token counts do not depend on the width."""
    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                           num_attention_heads=2, image_size=image_size, patch_size=patch_size)
    return CLIPVisionModel(cfg).eval()


def clip(layers=4, image_size=32, patch_size=8, seed=0):
    torch.manual_seed(seed)
    v = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=layers, num_attention_heads=2,
             image_size=image_size, patch_size=patch_size)
    t = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=50,
             max_position_embeddings=16)
    return CLIPModel(CLIPConfig(text_config=t, vision_config=v, projection_dim=8)).eval()


def test_token_trace_vit_b32_600_to_97():
    model = tm.patch(vision(), num_frames=12)
    with torch.no_grad():
        out = tm.encode_video(model, torch.randn(1, 12, 3, 224, 224))
    trace = tm.tokens_per_layer(model)
    assert trace[0] == 600 and trace[-1] == 97
    assert trace == [600, 576, 552, 528, 504, 480, 456, 432, 408, 264, 168, 107, 97]
    assert trace == tm.planned_trace(tm.TempMeConfig(), 12, 12, 50)
    assert out.shape == (1, 16) and torch.isfinite(out).all()


def test_planned_trace_vit_b16_and_24_frames():
    # B/16: 197 tokens per frame; every count follows floor(share * tokens in the clip)
    assert tm.planned_trace(tm.TempMeConfig(), 12, 12, 197)[-1] == 493
    assert tm.planned_trace(tm.TempMeConfig(), 12, 24, 50) == [2 * n for n in tm.planned_trace(tm.TempMeConfig(),
                                                                                                12, 12, 50)]


def test_trace_24_frames_runs():
    model = tm.patch(vision(image_size=64), num_frames=24)  # 2x2 grid: 5 tokens per frame
    with torch.no_grad():
        tm.encode_video(model, torch.randn(2, 24, 3, 64, 64))
    assert tm.tokens_per_layer(model) == tm.planned_trace(tm.TempMeConfig(), 12, 24, 5)


def test_sizes_conserved_and_class_tokens_protected():
    model = tm.patch(vision(image_size=96), num_frames=12)  # 10 tokens per frame
    with torch.no_grad():
        tm.encode_video(model, torch.randn(2, 12, 3, 96, 96))
    size = model._tempme_state.size
    assert size.shape == (2, tm.tokens_per_layer(model)[-1])
    assert torch.equal(size[:, :12], torch.ones(2, 12))  # one class token per frame, never merged
    assert torch.equal(size.sum(1), torch.full((2,), 120.0))  # every input token is in exactly one slot


def test_no_clipme_no_merge_equals_per_frame_hf():
    model = clip()
    frames = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        expected = model.get_image_features(pixel_values=frames.flatten(0, 1)).pooler_output.view(2, 4, -1).mean(1)
        tm.patch(model, 4, tm.TempMeConfig(imgme_r=0, merge_layers=(), frame_groups=()))
        got = tm.encode_video(model, frames)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_imgme_alone_equals_tome_per_frame():
    base, patched = vision(image_size=64, patch_size=16, layers=3), vision(image_size=64, patch_size=16, layers=3)
    frames = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        tome.patch(base, r=3)
        expected = base(pixel_values=frames.flatten(0, 1)).pooler_output.view(2, 3, -1).mean(1)
        tm.patch(patched, 3, tm.TempMeConfig(imgme_r=3, merge_layers=(), frame_groups=()))
        got = tm.encode_video(patched, frames)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert tm.tokens_per_layer(patched) == [3 * n for n in [17, 14, 11, 8]]


def test_join_clips_order_and_temporal_embedding():
    # 2 videos x 2 clips, each clip: 1 class token + 2 patch tokens, C=1; values name (video, clip, token)
    x = torch.tensor([[[v * 100 + k * 10 + t] for t in range(3)] for v in range(2) for k in range(2)], dtype=torch.float)
    state = TempMeState(r=[], size=torch.arange(12, dtype=torch.float).view(4, 3))
    out = join_clips(state, x, 2, torch.tensor([[0.5], [0.25]]))
    assert out.shape == (2, 6, 1) and state.frames_per_clip == 2
    assert out[0, :, 0].tolist() == [0.5, 10.25, 1.5, 2.5, 11.25, 12.25]  # class tokens of both clips first
    assert out[1, :, 0].tolist() == [100.5, 110.25, 101.5, 102.5, 111.25, 112.25]
    assert state.size.tolist() == [[0, 3, 1, 2, 4, 5], [6, 9, 7, 8, 10, 11]]


def test_clipmodel_forward_and_text_tower_unchanged():
    model = clip()
    ids = torch.randint(0, 50, (3, 6))
    with torch.no_grad():
        text_before = model.get_text_features(input_ids=ids).pooler_output
        img_before = model.get_image_features(pixel_values=torch.ones(1, 3, 32, 32)).pooler_output
        tm.patch(model, 4, tm.TempMeConfig(imgme_r=1, merge_layers=(1, 2), frame_groups=(2, 2)))
        assert torch.equal(model.get_text_features(input_ids=ids).pooler_output, text_before)
        assert torch.equal(model.get_image_features(pixel_values=torch.ones(1, 3, 32, 32)).pooler_output, img_before)
        video = torch.randn(2, 4, 3, 32, 32)
        via_hf = model.get_image_features(pixel_values=video).pooler_output
        torch.testing.assert_close(via_hf, tm.encode_video(model, video))
    names = [n for n, _ in model.named_parameters() if "tempme_temporal_pos" in n]
    assert len(names) == 2
    tm.unpatch(model)
    assert not any("tempme" in n for n, _ in model.named_parameters())


def test_temporal_embedding_gets_gradient():
    model = tm.patch(clip(), 4, tm.TempMeConfig(imgme_r=1, merge_layers=(1, 2), frame_groups=(2, 2))).train()
    tm.encode_video(model, torch.randn(2, 4, 3, 32, 32)).square().sum().backward()
    pos = model.vision_model.tempme_temporal_pos
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pos)


# ---- bad input: each names the argument
def test_frames_not_divisible():
    with pytest.raises(ValueError, match="num_frames=10.*frame_groups"):
        tm.patch(vision(image_size=64), num_frames=10)


def test_4d_pixel_values():
    model = tm.patch(vision(image_size=64), num_frames=12)
    with pytest.raises(ValueError, match="pixel_values must be 5-D"):
        tm.encode_video(model, torch.randn(12, 3, 64, 64))
    with pytest.raises(ValueError, match="pixel_values has 6 frames.*num_frames=12"):
        tm.encode_video(model, torch.randn(1, 6, 3, 64, 64))
    with pytest.raises(TypeError, match="pixel_values must be a torch.Tensor"):
        tm.encode_video(model, [[0.0]])


@pytest.mark.parametrize("name", ["cross_clip", "intra_clip", "final_intra_clip"])
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, True])
def test_proportions_outside_0_1(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a proportion in \\[0, 1\\)"):
        tm.TempMeConfig(**{name: value})


def test_merge_layers_out_of_order_or_beyond_depth():
    with pytest.raises(ValueError, match="merge_layers must be strictly increasing"):
        tm.TempMeConfig(merge_layers=(9, 8, 10))
    with pytest.raises(ValueError, match="merge_layers must be strictly increasing"):
        tm.TempMeConfig(merge_layers=(8, 8, 10))
    with pytest.raises(ValueError, match="merge_layers .* beyond the model's depth"):
        tm.patch(vision(image_size=64, layers=10), num_frames=12)
    with pytest.raises(ValueError, match="merge_layers and frame_groups"):
        tm.TempMeConfig(merge_layers=(8, 9), frame_groups=(2, 2, 3))
    with pytest.raises(ValueError, match="imgme_r"):
        tm.TempMeConfig(imgme_r=-1)
    with pytest.raises(ValueError, match="frame_groups must be >= 1"):
        tm.TempMeConfig(merge_layers=(1,), frame_groups=(0,))


def test_not_clip():
    bert = BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                vocab_size=30))
    with pytest.raises(TypeError, match="model must be a Hugging Face CLIPModel or CLIPVisionModel"):
        tm.patch(bert, num_frames=12)
    with pytest.raises(TypeError, match="model must be a Hugging Face CLIPModel"):
        tm.patch("clip", num_frames=12)
    with pytest.raises(ValueError, match="num_frames must be a positive int"):
        tm.patch(vision(image_size=64), num_frames=0)
    with pytest.raises(TypeError, match="config must be a TempMeConfig"):
        tm.patch(vision(image_size=64), num_frames=12, config={"imgme_r": 2})
    with pytest.raises(ValueError, match="not patched"):
        tm.encode_video(vision(image_size=64), torch.randn(1, 12, 3, 64, 64))
