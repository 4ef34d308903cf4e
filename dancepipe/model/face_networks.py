"""Face GAN networks and the refiner that applies a trained one to full frames.

:class:`FaceGenerator` and :class:`FaceDiscriminator` reuse the main model's blocks
(:class:`dancepipe.model.networks.GlobalGenerator`, :class:`dancepipe.model.networks.NLayerDiscriminator`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dancepipe.errors import DancepipeError
from dancepipe.model.networks import GlobalGenerator, NLayerDiscriminator, init_weights

Box = tuple[int, int, int]  # (x0, y0, size) in label pixels


class FaceGenerator(nn.Module):
    """Residual face generator: (label crop, main crop) → main crop + residual.

    The body is the main training's pix2pixHD global generator without its tanh head
    (:class:`dancepipe.model.networks.GlobalGenerator`: 6 input channels, ``n_downsample``
    strided convs, ``n_blocks`` residual blocks, back up to full resolution). The
    residual head is a 7x7 conv over the body's features *and* the input crops
    themselves: the full-resolution path lets it correct pixel-level detail (or noise)
    of the main crop that the downsampled body cannot carry. The head's weights and
    bias start at zero, so a fresh face generator returns its input crop unchanged.
    Crops must have sides divisible by ``2 ** n_downsample``.
    """

    def __init__(self, ngf: int = 16, n_downsample: int = 2, n_blocks: int = 2, in_channels: int = 6) -> None:
        super().__init__()
        self.n_downsample = n_downsample
        self.body = GlobalGenerator(in_channels, ngf, n_downsample, n_blocks, with_head=False)
        init_weights(self.body)
        self.out = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf + in_channels, 3, 7))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def residual(self, label: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) label and main crops in [-1, 1] → (B, 3, S, S) residual."""
        x = torch.cat([label, image], dim=1)  # (B, 6, S, S)
        return self.out(torch.cat([self.body(x), x], dim=1))  # (B, ngf + 6, S, S) → (B, 3, S, S)

    def forward(self, label: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) crops in [-1, 1] → refined (B, 3, S, S) crop in [-1, 1]."""
        return (image + self.residual(label, image)).clamp(-1.0, 1.0)


class FaceDiscriminator(nn.Module):
    """PatchGAN (the main training's :class:`~dancepipe.model.networks.NLayerDiscriminator`) on
    the 6-channel (label crop, face crop) pair; returns its feature maps, scores last."""

    def __init__(self, ndf: int = 16, n_layers: int = 2, in_channels: int = 6) -> None:
        super().__init__()
        self.net = NLayerDiscriminator(in_channels, ndf, n_layers)
        init_weights(self.net)

    def forward(self, label: torch.Tensor, image: torch.Tensor) -> list[torch.Tensor]:
        return self.net(torch.cat([label, image], dim=1))


def build_face_generator(arch: dict[str, Any]) -> FaceGenerator:
    """Rebuild the face generator from a checkpoint's ``arch`` dict."""
    return FaceGenerator(ngf=arch["ngf"], n_downsample=arch["n_downsample"], n_blocks=arch["n_blocks"],
                         in_channels=arch.get("in_channels", 6))


def crop(images: torch.Tensor, boxes: Sequence[Box]) -> torch.Tensor:
    """Cut one same-size square per item: (B, C, H, W) + B boxes → (B, C, S, S)."""
    return torch.stack([images[i, :, y0:y0 + s, x0:x0 + s] for i, (x0, y0, s) in enumerate(boxes)])


def check_box(box: Box, width: int, height: int, where: str) -> None:
    x0, y0, s = box
    if s <= 0 or x0 < 0 or y0 < 0 or x0 + s > width or y0 + s > height:
        raise DancepipeError(f"{where}: face box {box} does not lie inside the {width}x{height} image")


class FaceRefiner:
    """A trained face generator applied to full frames (what rendering uses).

    ``applied`` and ``skipped`` count the items refined and the items passed through
    without a face box, so the caller can report how many frames had no usable face.
    """

    def __init__(self, model: FaceGenerator, crop_size: int, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.crop_size = int(crop_size)
        self.applied = 0
        self.skipped = 0

    @torch.inference_mode()
    def refine(self, label: torch.Tensor, image: torch.Tensor, boxes: Sequence[Box | None]) -> torch.Tensor:
        """Add the face residual inside each box of (B, 3, H, W) ``image`` in [-1, 1].

        ``boxes[i]`` is ``(x0, y0, size)`` in pixels or None to leave item ``i``
        unchanged. A box whose size differs from the trained crop size is resized to
        the trained size and back, so the network always sees faces at its scale.
        Returns a new tensor; pixels outside the boxes are copied unchanged.
        """
        if label.shape != image.shape or image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected label and image of one shape (B, 3, H, W), got {tuple(label.shape)} "
                             f"and {tuple(image.shape)}")
        if len(boxes) != image.shape[0]:
            raise ValueError(f"got {len(boxes)} face boxes for a batch of {image.shape[0]}")
        out = image.clone()
        todo = [i for i, b in enumerate(boxes) if b is not None]
        self.skipped += len(boxes) - len(todo)
        if not todo:
            return out
        h, w = image.shape[-2:]
        for i in todo:
            check_box(boxes[i], w, h, "refine")  # type: ignore[arg-type]
        by_size: dict[int, list[int]] = {}
        for i in todo:
            by_size.setdefault(boxes[i][2], []).append(i)  # type: ignore[index]
        for size, items in by_size.items():
            bx = [boxes[i] for i in items]
            lab = crop(label[items], bx).to(self.device, torch.float32)  # type: ignore[arg-type]
            img = crop(image[items], bx).to(self.device, torch.float32)  # type: ignore[arg-type]
            if size != self.crop_size:
                lab_s = F.interpolate(lab, size=self.crop_size, mode="bilinear", align_corners=False)
                img_s = F.interpolate(img, size=self.crop_size, mode="bilinear", align_corners=False)
                res = F.interpolate(self.model.residual(lab_s, img_s), size=size, mode="bilinear",
                                    align_corners=False)
                new = (img + res).clamp(-1.0, 1.0)
            else:
                new = self.model(lab, img)
            new = new.to(out.device, out.dtype)
            for k, i in enumerate(items):
                x0, y0, s = boxes[i]  # type: ignore[misc]
                out[i, :, y0:y0 + s, x0:x0 + s] = new[k]
        self.applied += len(todo)
        return out

    def summary(self) -> str:
        """One line for the logs: how many frames were refined and how many skipped."""
        return (f"face refinement applied to {self.applied} frame(s), skipped {self.skipped} "
                f"frame(s) without a usable face")


def freeze(module: nn.Module) -> nn.Module:
    """Frozen for good: eval mode, no gradients (the main generator during face training)."""
    return module.eval().requires_grad_(False)
