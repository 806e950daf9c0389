"""Synthetic multi-label images with a known ground truth and realistic label co-occurrence.

Every COCO category is a distinct sprite (shape x colour x texture, assigned by a fixed random permutation, so
how alike two sprites look says nothing about how alike their names are). Images are filled by scene
templates (kitchen, street, animals, sports, ...) that follow COCO's supercategories, so labels that co-occur
are also close in meaning: the assumption SCPNet's prior rests on. Training annotations keep one positive
per image (single positive) or a random fraction of all labels (partial); the test set keeps every label."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

COCO_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush")

# Scene templates (COCO supercategories, regrouped into places); every COCO name is in at least one scene.
SCENES = {
    "street": ("car", "bus", "truck", "traffic light", "fire hydrant", "stop sign", "parking meter", "bicycle",
               "motorcycle", "bench", "person"),
    "animals": ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"),
    "sports": ("frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
               "skateboard", "surfboard", "tennis racket"),
    "food": ("banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake"),
    "kitchen": ("bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "microwave", "oven", "toaster",
                "refrigerator", "dining table"),
    "living room": ("chair", "couch", "potted plant", "tv", "remote", "clock", "vase", "book"),
    "office": ("laptop", "mouse", "keyboard", "cell phone", "scissors"),
    "bathroom": ("toilet", "sink", "hair drier", "toothbrush", "teddy bear", "bed"),
    "travel": ("airplane", "train", "boat", "backpack", "umbrella", "handbag", "tie", "suitcase"),
}

_SHAPES = ("disc", "square", "triangle", "diamond", "cross", "ring", "bar", "star")
_COLOURS = ((230, 40, 40), (40, 180, 60), (50, 80, 230), (240, 210, 40), (230, 120, 30), (160, 60, 200),
            (40, 200, 210), (240, 240, 240), (120, 70, 30), (240, 100, 180))
_TEXTURES = ("solid", "stripes", "dots")


@dataclass
class MultiLabelImages:
    images: torch.Tensor      # [N, 3, H, W] float32 in [0, 1]
    labels: torch.Tensor      # [N, C] int64 ground truth (0/1)
    observed: torch.Tensor    # [N, C] int64 given to training: 1 positive, 0 known negative, -1 unknown
    label_names: tuple
    scene: torch.Tensor       # [N] index into scene_names
    scene_names: tuple


def _sprite(shape: str, colour, texture: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb [size, size, 3], mask [size, size]) drawn with Pillow."""
    from PIL import Image, ImageDraw

    mask_img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(mask_img)
    s = size - 1
    if shape == "disc":
        d.ellipse((0, 0, s, s), fill=255)
    elif shape == "square":
        d.rectangle((1, 1, s - 1, s - 1), fill=255)
    elif shape == "triangle":
        d.polygon(((s / 2, 0), (s, s), (0, s)), fill=255)
    elif shape == "diamond":
        d.polygon(((s / 2, 0), (s, s / 2), (s / 2, s), (0, s / 2)), fill=255)
    elif shape == "cross":
        w = size // 3
        d.rectangle((w, 0, s - w, s), fill=255)
        d.rectangle((0, w, s, s - w), fill=255)
    elif shape == "ring":
        d.ellipse((0, 0, s, s), fill=255)
        d.ellipse((size // 3, size // 3, s - size // 3, s - size // 3), fill=0)
    elif shape == "bar":
        d.rectangle((0, size // 3, s, s - size // 3), fill=255)
        d.rectangle((size // 3, 0, s - size // 3, size // 4), fill=255)
    else:  # star: a triangle and an upside-down one
        d.polygon(((s / 2, 0), (s, s * 0.75), (0, s * 0.75)), fill=255)
        d.polygon(((s / 2, s), (s, s * 0.25), (0, s * 0.25)), fill=255)
    mask = np.asarray(mask_img, dtype=np.float32) / 255.0
    rgb = np.empty((size, size, 3), dtype=np.float32)
    rgb[:] = np.asarray(colour, dtype=np.float32) / 255.0
    yy, xx = np.mgrid[0:size, 0:size]
    if texture == "stripes":
        rgb[(yy // 2) % 2 == 0] *= 0.35
    elif texture == "dots":
        rgb[((yy % 3) == 1) & ((xx % 3) == 1)] = 0.0
    return rgb, mask


def sprites(size: int = 12, seed: int = 1234) -> dict:
    """name -> (rgb, mask): a distinct (shape, colour, texture) per COCO name, by a fixed random permutation
    (independent of the scenes, so sprite similarity carries no semantics)."""
    combos = [(s, c, t) for s in range(len(_SHAPES)) for c in range(len(_COLOURS)) for t in range(len(_TEXTURES))]
    order = np.random.default_rng(seed).permutation(len(combos))[: len(COCO_NAMES)]
    out = {}
    for name, k in zip(COCO_NAMES, order):
        s, c, t = combos[k]
        out[name] = _sprite(_SHAPES[s], _COLOURS[c], _TEXTURES[t], size)
    return out


def scene_labels(scenes) -> tuple:
    """The label names used by a set of scenes, in COCO order."""
    used = {n for sc in scenes for n in SCENES[sc]}
    return tuple(n for n in COCO_NAMES if n in used)


def generate(n: int, scenes=None, image_size: int = 32, sprite_size: int = 12, objects=(2, 4), clutter: float = 0.15,
             setting: str = "single", known_fraction: float = 0.1, noise: float = 0.08, seed: int = 0
             ) -> MultiLabelImages:
    """n images; each picks a scene uniformly, then objects[0]..objects[1] distinct objects from it (with
    probability `clutter` one of them is replaced by a random object of any scene), pasted at random
    positions on a noisy background. setting: "single" (one observed positive per image, the rest unknown),
    "partial" (each label known, positive or negative, with probability known_fraction; at least one per
    image), or "full" (every label observed)."""
    scenes = tuple(SCENES) if scenes is None else tuple(scenes)
    for sc in scenes:
        if sc not in SCENES:
            raise ValueError(f"scenes: unknown scene {sc!r}; expected names from {tuple(SCENES)}")
    if setting not in ("single", "partial", "full"):
        raise ValueError(f"setting must be 'single', 'partial' or 'full', got {setting!r}")
    if not 0.0 < known_fraction <= 1.0:
        raise ValueError(f"known_fraction must be in (0, 1], got {known_fraction!r}")
    if n < 1 or sprite_size > image_size:
        raise ValueError(f"need n >= 1 and sprite_size <= image_size, got n={n}, sprite_size={sprite_size}, "
                         f"image_size={image_size}")
    names = scene_labels(scenes)
    index = {nm: i for i, nm in enumerate(names)}
    art = sprites(sprite_size)
    rng = np.random.default_rng(seed)
    c = len(names)
    imgs = np.empty((n, image_size, image_size, 3), dtype=np.float32)
    labels = np.zeros((n, c), dtype=np.int64)
    scene_idx = rng.integers(0, len(scenes), size=n)
    for i in range(n):
        pool = SCENES[scenes[scene_idx[i]]]
        k = int(rng.integers(objects[0], objects[1] + 1))
        chosen = list(rng.choice(pool, size=min(k, len(pool)), replace=False))
        if rng.random() < clutter:
            chosen[-1] = names[int(rng.integers(0, c))]
        canvas = rng.random(3).astype(np.float32) * 0.3 + 0.1 + noise * rng.standard_normal(
            (image_size, image_size, 3)).astype(np.float32)
        for nm in chosen:
            rgb, mask = art[nm]
            y, x = rng.integers(0, image_size - sprite_size + 1, size=2)
            region = canvas[y:y + sprite_size, x:x + sprite_size]
            region[:] = region * (1 - mask[..., None]) + rgb * mask[..., None]
            labels[i, index[nm]] = 1
        imgs[i] = canvas
    observed = np.full_like(labels, -1)
    if setting == "full":
        observed[:] = labels
    elif setting == "single":
        for i in range(n):
            observed[i, rng.choice(np.flatnonzero(labels[i]))] = 1
    else:
        known = rng.random((n, c)) < known_fraction
        for i in np.flatnonzero(~known.any(1)):
            known[i, rng.integers(0, c)] = True
        observed[known] = labels[known]
    images = torch.from_numpy(np.clip(imgs, 0, 1)).permute(0, 3, 1, 2).contiguous()
    return MultiLabelImages(images, torch.from_numpy(labels), torch.from_numpy(observed), names,
                            torch.from_numpy(scene_idx), scenes)
