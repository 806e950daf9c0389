"""Blending ads with organic content (arXiv 2105.13556): list-aware click model, virtual bids, VCG payments."""
from .search import allocate
from .slates import count_slates, enumerate_slates
from .vcg import VCGResult, vcg, vcg_result

__all__ = ["allocate", "vcg", "vcg_result", "VCGResult", "count_slates", "enumerate_slates"]
