"""SCPNet (Ding et al., CVPR 2023, arXiv 2303.13223): multi-label recognition with incomplete labels, from a
structured semantic prior over label-to-label relations computed from text embeddings of the label names."""
from .data import COCO_NAMES, SCENES, MultiLabelImages, generate
from .losses import FlexThresholds, assume_negative_bce, partial_bce, pessl_loss, splc_loss
from .model import HFVisionBackbone, LabelGCN, LinearHead, SCPNet, SmallCNN, small_vit
from .prior import label_prior
from .text import LabelPrompts, text_embeddings

__all__ = ["label_prior", "text_embeddings", "LabelPrompts", "splc_loss", "pessl_loss", "assume_negative_bce",
           "partial_bce", "FlexThresholds", "SCPNet", "SmallCNN", "HFVisionBackbone", "small_vit", "LinearHead",
           "LabelGCN", "generate", "MultiLabelImages", "COCO_NAMES", "SCENES"]
