"""Per-scene layers run in one batched pass: stacked weights ``[S, in, out]`` applied to rows grouped by scene.

``SceneGroups`` sorts the rows of a batch by scene id and lays them out in tiles of ``tile`` rows, every
tile holding rows of one scene only (a scene's last tile is zero-padded). A per-scene linear layer is then
one ``baddbmm`` of the tiles ``[n_tiles, tile, in]`` with the weights of each tile's scene
``W[tile_scene]`` ``[n_tiles, in, out]``: a segment matmul without a loop over scenes. Padding is at most
``tile - 1`` rows per scene present, and the weight gather is per tile, not per row. A row only ever meets
its own scene's weights, so a scene's parameters get gradients from that scene's rows alone.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def check_scene_ids(scene: torch.Tensor, n_scenes: int, rows: int | None = None, name: str = "scene") -> None:
    """Clear errors for scene ids: an integer 1-D tensor of ``rows`` values in ``[0, n_scenes)``."""
    if not isinstance(scene, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of int64 scene ids, got {type(scene).__name__}")
    if scene.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must hold integer scene ids (int64 or int32), got dtype {scene.dtype}")
    if scene.dim() != 1:
        raise ValueError(f"{name} must be 1-D [B], got shape {tuple(scene.shape)}")
    if rows is not None and scene.shape[0] != rows:
        raise ValueError(f"{name} has {scene.shape[0]} rows but the features have {rows}; they must be equal")
    if scene.numel() and (int(scene.min()) < 0 or int(scene.max()) >= n_scenes):
        raise ValueError(f"{name} ids must be in [0, n_scenes={n_scenes}), got values in "
                         f"[{int(scene.min())}, {int(scene.max())}]")


def auto_tile(rows: int, n_scenes: int) -> int:
    """Rows per tile: about a quarter of the mean rows per scene, a power of two in [4, 128]."""
    target = max(1, rows // max(1, 4 * n_scenes))
    return int(min(128, max(4, 2 ** math.ceil(math.log2(target)))))


class SceneGroups:
    """The tiling of one batch by scene, computed once and shared by every per-scene layer of the batch.

    ``pad(x[B, d]) -> [n_tiles, tile, d]``, ``unpad(y[n_tiles, tile, o]) -> [B, o]`` (rows back in their
    original order); ``tile_scene[n_tiles]`` is the scene of each tile."""

    def __init__(self, scene: torch.Tensor, n_scenes: int, tile: int | None = None, validate: bool = True,
                 exact: bool | None = None):
        if validate:  # a min/max check (a host sync on a GPU; callers that checked already pass False)
            check_scene_ids(scene, n_scenes)
        rows = scene.shape[0]
        self.tile = tile = int(tile) if tile is not None else auto_tile(rows, n_scenes)
        if tile < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
        scene = scene.long()
        counts = torch.bincount(scene, minlength=n_scenes)
        tiles = (counts + tile - 1) // tile
        # exact tile count on CPU; on a GPU (exact=None) an upper bound avoids a host sync (extra tiles stay zero)
        exact = not scene.is_cuda if exact is None else exact
        self.n_tiles = int(tiles.sum()) if exact else rows // tile + n_scenes
        tile_start = torch.cumsum(tiles, 0) - tiles
        row_start = torch.cumsum(counts, 0) - counts
        order = torch.argsort(scene, stable=True)
        sorted_scene = scene[order]
        rank = torch.arange(rows, device=scene.device) - row_start[sorted_scene]  # position within its scene
        self.slot = torch.empty_like(scene)
        self.slot[order] = tile_start[sorted_scene] * tile + rank
        scene_ids = torch.arange(n_scenes, device=scene.device)
        tile_scene = torch.repeat_interleave(scene_ids, tiles, output_size=self.n_tiles if exact else None)
        if tile_scene.shape[0] < self.n_tiles:  # upper bound: unused tiles point at scene 0
            tile_scene = torch.cat([tile_scene, tile_scene.new_zeros(self.n_tiles - tile_scene.shape[0])])
        self.tile_scene = tile_scene

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(self.n_tiles * self.tile, x.shape[-1]).index_copy(0, self.slot, x)
        return out.view(self.n_tiles, self.tile, x.shape[-1])

    def unpad(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(-1, y.shape[-1]).index_select(0, self.slot)


class SceneLinear(nn.Module):
    """One linear layer per scene, stored stacked: ``weight[S, in, out]``, ``bias[S, out]``."""

    def __init__(self, n_scenes: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_scenes, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n_scenes, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default initialisation, per scene
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def tiled(self, x_tiles: torch.Tensor, groups: SceneGroups) -> torch.Tensor:
        """``[n_tiles, tile, in] -> [n_tiles, tile, out]``, each tile through its scene's weights."""
        ts = groups.tile_scene
        # index_select, not W[ts]: its backward is an index_add, much faster on CPU than an accumulating index_put
        return torch.baddbmm(self.bias.index_select(0, ts).unsqueeze(1), x_tiles, self.weight.index_select(0, ts))

    def all_scenes(self, x: torch.Tensor) -> torch.Tensor:
        """Every scene's layer on every row: ``x[B, in]`` or ``x[S, B, in]`` -> ``[S, B, out]``."""
        s, i, o = self.weight.shape
        if x.dim() == 2:  # one GEMM against all scenes' weights side by side
            y = torch.addmm(self.bias.reshape(1, s * o), x, self.weight.permute(1, 0, 2).reshape(i, s * o))
            return y.view(-1, s, o).transpose(0, 1)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)


class SceneHeads(nn.Module):
    """One small MLP per scene (``in -> hidden... -> out``, ReLU between), all run in one batched pass.

    ``forward(x[B, in], scene[B] | groups) -> [B, out]``: each row through its own scene's head.
    ``all_scenes(x) -> [S, B, out]``: every head on every row (knowledge transfer between heads).
    ``loop(x, scene)``: the same function as a Python loop over scenes (the reference and the benchmark's
    anchor)."""

    def __init__(self, n_scenes: int, in_dim: int, hidden=(16,), out_dim: int = 1):
        super().__init__()
        if not isinstance(n_scenes, int) or n_scenes < 1:
            raise ValueError(f"n_scenes must be an int >= 1, got {n_scenes!r}")
        self.n_scenes = n_scenes
        widths = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(SceneLinear(n_scenes, a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor, scene, tile: int | None = None) -> torch.Tensor:
        if not isinstance(scene, SceneGroups) and isinstance(scene, torch.Tensor):
            check_scene_ids(scene, self.n_scenes, x.shape[0])
        groups = scene if isinstance(scene, SceneGroups) else SceneGroups(scene, self.n_scenes, tile, validate=False)
        h = groups.pad(x)
        for i, layer in enumerate(self.layers):
            h = layer.tiled(h, groups)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return groups.unpad(h)

    def all_scenes(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = layer.all_scenes(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h

    def loop(self, x: torch.Tensor, scene: torch.Tensor) -> torch.Tensor:
        """A Python loop over the scenes present: select the rows, run the head, put them back."""
        out = x.new_zeros(x.shape[0], self.layers[-1].weight.shape[-1])
        for s in torch.unique(scene).tolist():
            rows = torch.nonzero(scene == s).squeeze(1)
            h = x.index_select(0, rows)
            for i, layer in enumerate(self.layers):
                h = torch.addmm(layer.bias[s], h, layer.weight[s])
                if i < len(self.layers) - 1:
                    h = torch.relu(h)
            out = out.index_copy(0, rows, h)
        return out
