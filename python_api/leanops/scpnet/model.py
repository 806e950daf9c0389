"""SCPNet: image features against label embeddings refined by a GCN over the semantic prior graph G."""
from __future__ import annotations

import math

import torch
from torch import nn

from .prior import label_prior
from .text import LabelPrompts, check_label_names, text_embeddings


class SmallCNN(nn.Module):
    """A small convolutional backbone for small images: four conv blocks, global average pooling."""

    def __init__(self, out_dim: int = 64, width: int = 16):
        super().__init__()
        chans = (3, width, width * 2, width * 4, out_dim)
        layers = []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]),
                       nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images).mean((2, 3))


class HFVisionBackbone(nn.Module):
    """Any Hugging Face vision encoder taking pixel_values (ViTModel, CLIPVisionModel, ...): the first
    token of the last hidden state (the class token) as the feature vector."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.out_dim = model.config.hidden_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=images).last_hidden_state[:, 0]


def small_vit(image_size: int = 32, patch_size: int = 8, hidden_size: int = 128, layers: int = 4,
              heads: int = 4) -> HFVisionBackbone:
    """A randomly initialised HF ViT (no weights can be downloaded here) wrapped as a backbone."""
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(image_size=image_size, patch_size=patch_size, hidden_size=hidden_size, num_hidden_layers=layers,
                    num_attention_heads=heads, intermediate_size=hidden_size * 4, num_channels=3)
    return HFVisionBackbone(ViTModel(cfg, add_pooling_layer=False))


def _feature_dim(backbone: nn.Module, feature_dim) -> int:
    dim = feature_dim if feature_dim is not None else getattr(backbone, "out_dim", None)
    if not isinstance(dim, int) or dim < 1:
        raise ValueError("feature_dim must be given (a positive int) when the backbone has no int `out_dim`")
    return dim


class LinearHead(nn.Module):
    """Backbone + linear classifier: the model of the BCE / SPLC baselines."""

    def __init__(self, backbone: nn.Module, num_classes: int, feature_dim: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(_feature_dim(backbone, feature_dim), num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


class LabelGCN(nn.Module):
    """`layers` graph convolutions H <- act(G H W) over the label graph (LeakyReLU between layers, none after the
    last); the caller adds the residual."""

    def __init__(self, dim: int, layers: int = 3, init_std: float | None = None):
        super().__init__()
        self.weights = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(layers))
        for w in self.weights:  # default: small start, so Z starts near the text embeddings (the residual dominates)
            nn.init.normal_(w.weight, std=init_std if init_std is not None else 0.1 / math.sqrt(dim))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, h: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        for i, w in enumerate(self.weights):
            h = adjacency @ w(h)
            if i < len(self.weights) - 1:
                h = self.act(h)
        return h


class SCPNet(nn.Module):
    """logits = s * cos(proj(backbone(x)), Z), Z = E + GCN(E; G), E = label prompts through the frozen text
    encoder, G and S from `label_prior` of the label names' text embeddings (identity with use_prior=False).
    The label side (prompts + GCN) is computed once per forward, not per image."""

    def __init__(self, backbone: nn.Module, label_names, feature_dim: int | None = None, encoder=None,
                 top_k: int = 8, p: float = 0.2, temperature: float = 0.2, learn_context: bool = True,
                 gcn_layers: int = 3, use_prior: bool = True, init_scale: float = 10.0, center: bool = False,
                 gcn_init_std: float | None = None):
        super().__init__()
        names = check_label_names(label_names)
        self.label_names = names
        self.backbone = backbone
        self.prompts = LabelPrompts(names, encoder, learn_context=learn_context)
        c = len(names)
        if use_prior:
            g, s = label_prior(text_embeddings(names, encoder), min(top_k, c - 1), p, temperature)
        else:
            g, s = torch.eye(c), torch.eye(c)
        self.register_buffer("G", g)
        self.register_buffer("S", s)
        self.proj = nn.Linear(_feature_dim(backbone, feature_dim), self.prompts.dim)
        self.gcn = LabelGCN(self.prompts.dim, gcn_layers, gcn_init_std)
        self.center = center
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def label_embeddings(self) -> torch.Tensor:
        e = self.prompts()
        if self.center:  # drop the component all label prompts share (MiniLM cosines of names are all ~0.3-0.6)
            e = e - e.mean(0, keepdim=True)
        return e + self.gcn(e, self.G)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        f = nn.functional.normalize(self.proj(self.backbone(images)), dim=-1)
        z = nn.functional.normalize(self.label_embeddings(), dim=-1)
        return self.log_scale.exp() * f @ z.T
