"""Frame-folder video-text data (e.g. MSR-VTT frames): ``root/<video_id>/*.jpg`` plus a captions JSON mapping
``video_id`` to a caption or a list of captions; frames read with Pillow, sampled uniformly over the video."""
from __future__ import annotations

import json
import os

import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class FrameFolderDataset(torch.utils.data.Dataset):
    """Item i: ``(pixel_values [num_frames, 3, image_size, image_size], caption)``; one item per
    (video, caption) pair. Videos with fewer frames than ``num_frames`` repeat frames (uniform sampling)."""

    def __init__(self, root: str, captions_json: str, num_frames: int = 12, image_size: int = 224,
                 mean=CLIP_MEAN, std=CLIP_STD):
        if not os.path.isdir(root):
            raise ValueError(f"root must be a directory of <video_id>/ frame folders, got {root!r}")
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        with open(captions_json) as fh:
            captions = json.load(fh)
        if not isinstance(captions, dict):
            raise ValueError(f"captions_json must hold an object {{video_id: caption | [captions]}}, got "
                             f"{type(captions).__name__}")
        self.root, self.num_frames, self.image_size = root, num_frames, image_size
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.items = []
        for video_id, caps in sorted(captions.items()):
            frames = self.frame_files(video_id)
            if not frames:
                raise ValueError(f"video {video_id!r} in captions_json has no frames under {root}/{video_id}/")
            for cap in [caps] if isinstance(caps, str) else caps:
                if not isinstance(cap, str):
                    raise ValueError(f"captions of video {video_id!r} must be strings, got {type(cap).__name__}")
                self.items.append((video_id, cap))

    def frame_files(self, video_id: str) -> list[str]:
        folder = os.path.join(self.root, video_id)
        if not os.path.isdir(folder):
            return []
        return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))

    def __len__(self) -> int:
        return len(self.items)

    def load_video(self, video_id: str) -> torch.Tensor:
        from PIL import Image
        files = self.frame_files(video_id)
        picks = torch.linspace(0, len(files) - 1, self.num_frames).round().long().tolist()
        frames = []
        for i in picks:
            with Image.open(files[i]) as img:
                img = img.convert("RGB").resize((self.image_size, self.image_size), Image.BICUBIC)
                data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
            frames.append(data.view(self.image_size, self.image_size, 3).permute(2, 0, 1).float() / 255.0)
        return (torch.stack(frames) - self.mean) / self.std

    def __getitem__(self, index: int):
        video_id, caption = self.items[index]
        return self.load_video(video_id), caption
