"""The seed's CIFAR augmentation as a few batched tensor ops on the training device.

Per sample: zero-pad 4 and take a random 32×32 crop, flip horizontally with p = 0.5, scale to [0, 1] and
normalise with the dataset's mean/std, then Cutout: a 16×16 square of zeros centred uniformly in the image,
clipped at the borders (applied after normalisation, as in PaddleSlim's reader). Crop and flip are one
``gather`` with per-sample indices; Cutout is one broadcast mask. No per-sample Python.

Other sizes (:meth:`Augment.for_size`): the padding and the Cutout side are scaled from their values at 32 by the
image's shorter side ``s``, rounded half up: ``pad = round(4·s/32)``, ``cutout = round(c·s/32)`` for a recipe's
cutout ``c`` (DARTS' 16). At 32×32 that is exactly the augmentation above; at 64×64 pad 8 and a 32×32 hole; at
28×28 pad 4 and 14. The same pad-crop, flip and Cutout at every size, rather than a random-resized crop for large
images: a user's images are decoded once and held at the input size, so a resized crop could only enlarge pixels
already shrunk, and this is the augmentation the recipe's defaults were measured with. Square, because Cutout is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["Augment", "normalize", "scaled"]

#: The size the augmentation's pixel settings (pad 4, a recipe's cutout) are stated at.
REFERENCE_SIDE = 32


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``N×C×H×W`` → float32, scaled to [0, 1] and normalised per channel (what test images get).

    >>> normalize(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8), [0.5], [0.25])[0, 0, 0, 0].item()
    2.0
    """
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=images.device).view(1, -1, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std, strict=True)], device=images.device).view(1, -1, 1, 1)
    return images.float() * scale - shift


def scaled(pixels: int, side: int) -> int:
    """``pixels`` at a 32-pixel side, scaled to ``side`` and rounded half up (integers only: exact).

    >>> scaled(4, 32), scaled(16, 32), scaled(4, 28), scaled(16, 224), scaled(4, 12)
    (4, 16, 4, 112, 2)
    """
    return (pixels * side + REFERENCE_SIDE // 2) // REFERENCE_SIDE


class Augment:
    """Random crop (pad ``pad``), horizontal flip, normalisation and Cutout for a uint8 batch.

    Randomness comes only from the ``generator`` passed per call (it must live on the images' device),
    so a seeded generator gives the same batch every time.

    >>> aug = Augment(mean=[0.5], std=[0.25])
    >>> g = torch.Generator().manual_seed(0)
    >>> aug(torch.zeros(8, 1, 32, 32, dtype=torch.uint8), g).shape
    torch.Size([8, 1, 32, 32])
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], pad: int = 4, flip: bool = True,
                 cutout: int = 16) -> None:
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} must have one entry per channel")
        if any(s <= 0 for s in std):
            raise ValueError(f"std {tuple(std)} must be positive")
        if pad < 0 or cutout < 0:
            raise ValueError(f"pad ({pad}) and cutout ({cutout}) must be non-negative")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.pad, self.flip, self.cutout = pad, flip, cutout

    @classmethod
    def for_size(cls, mean: Sequence[float], std: Sequence[float], size: Sequence[int], cutout: int = 16,
                 flip: bool = True) -> Augment:
        """The augmentation for ``size = (H, W)`` images: pad 4 and ``cutout`` (both stated at 32×32) scaled by the
        shorter side (:func:`scaled`); exactly ``Augment(mean, std, cutout=cutout)`` at 32×32.

        >>> aug = Augment.for_size([0.5], [0.25], (64, 96), cutout=16)
        >>> aug.pad, aug.cutout
        (8, 32)
        """
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size is {tuple(size)}, expected two positive integers H W")
        side = int(min(size))
        return cls(mean, std, pad=scaled(4, side), flip=flip, cutout=scaled(cutout, side))

    def __call__(self, images: torch.Tensor, generator: torch.Generator,
                 channels_last: bool = False) -> torch.Tensor:
        """Augment a uint8 ``B×C×H×W`` batch; returns float32 of the same shape."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"expected a uint8 B×C×H×W batch, got {images.dtype} of shape {tuple(images.shape)}")
        b, c, h, w = images.shape
        dev = images.device
        p = self.pad
        # Crop + flip as one gather from the padded image, flattened to H'·W' per channel.
        padded = torch.nn.functional.pad(images, (p, p, p, p)) if p else images
        hp, wp = h + 2 * p, w + 2 * p
        oy = torch.randint(0, 2 * p + 1, (b, 1, 1), generator=generator, device=dev)
        ox = torch.randint(0, 2 * p + 1, (b, 1, 1), generator=generator, device=dev)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        if self.flip:
            flipped = torch.rand(b, 1, 1, generator=generator, device=dev) < 0.5
            cols = torch.where(flipped, w - 1 - cols, cols)
        rows = torch.arange(h, device=dev).view(1, h, 1)
        index = ((oy + rows) * wp + (ox + cols)).view(b, 1, h * w).expand(b, c, h * w)
        out = padded.reshape(b, c, hp * wp).gather(2, index).view(b, c, h, w)
        out = normalize(out, self.mean, self.std)
        if self.cutout:
            half = self.cutout // 2
            cy = torch.randint(0, h, (b, 1, 1, 1), generator=generator, device=dev)
            cx = torch.randint(0, w, (b, 1, 1, 1), generator=generator, device=dev)
            ry = torch.arange(h, device=dev).view(1, 1, h, 1)
            rx = torch.arange(w, device=dev).view(1, 1, 1, w)
            # Rows cy-half .. cy+half-1 (clipped), as np.clip(y - 8, 0, h):np.clip(y + 8, 0, h) in the reader.
            hole = (ry >= cy - half) & (ry < cy + self.cutout - half) & (rx >= cx - half) & \
                (rx < cx + self.cutout - half)
            out = out.masked_fill(hole, 0.0)
        if channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out
