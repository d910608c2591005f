"""Augmentation: shapes, value ranges, crop/flip/Cutout statistics, determinism."""

from __future__ import annotations

import pytest
import torch

from sanas.training import Augment, normalize
from sanas.training.augment import scaled

N = 4000
# mean 0, std 1/255: normalisation is the identity on raw pixel values, so outputs can be read back exactly.
IDENTITY = {"mean": [0.0, 0.0], "std": [1 / 255, 1 / 255]}


def _coordinate_images(n: int) -> torch.Tensor:
    """Channel 0 holds row + 1, channel 1 holds column + 1 (padding reads as 0)."""
    rows = torch.arange(1, 33, dtype=torch.uint8).view(32, 1).expand(32, 32)
    cols = torch.arange(1, 33, dtype=torch.uint8).view(1, 32).expand(32, 32)
    return torch.stack([rows, cols]).expand(n, 2, 32, 32).contiguous()


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shapes_dtype_and_value_range() -> None:
    mean, std = (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=_gen(1))
    out = Augment(mean, std)(images, _gen())
    assert out.shape == (64, 3, 32, 32) and out.dtype == torch.float32
    lo = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(1, 3, 1, 1)
    hi = torch.tensor([(1 - m) / s for m, s in zip(mean, std, strict=True)]).view(1, 3, 1, 1)
    assert ((out >= lo - 1e-5) & (out <= hi + 1e-5)).all()
    assert Augment(mean, std)(images, _gen(), channels_last=True).is_contiguous(memory_format=torch.channels_last)


def test_normalize_matches_the_formula() -> None:
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=_gen(2))
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(images, mean, std), expected)


def test_crop_and_flip_are_exact_shifted_copies_with_the_right_statistics() -> None:
    images = _coordinate_images(N)
    out = Augment(cutout=0, **IDENTITY)(images, _gen()).round().long()
    # The centre pixel is always inside the image: it tells the offset; its right neighbour tells the flip.
    flipped = out[:, 1, 16, 17] < out[:, 1, 16, 16]
    oy = out[:, 0, 16, 16] - 1 - 16 + 4
    ox = torch.where(flipped, out[:, 1, 16, 16] - 1 - 15 + 4, out[:, 1, 16, 16] - 1 - 16 + 4)
    assert oy.min() == 0 and oy.max() == 8 and ox.min() == 0 and ox.max() == 8
    # Every sample equals a reference crop of the zero-padded image with its offsets (and flip).
    padded = torch.nn.functional.pad(images[:200].long(), (4, 4, 4, 4))
    for b in range(200):
        ref = padded[b, :, oy[b]:oy[b] + 32, ox[b]:ox[b] + 32]
        assert torch.equal(out[b], ref.flip(-1) if flipped[b] else ref)
    # Offsets uniform on 0..8 in both axes, independent per sample; flips with probability 0.5.
    for offsets in (oy, ox):
        freq = torch.bincount(offsets, minlength=9).float() / N
        assert (freq - 1 / 9).abs().max() < 0.025
    assert abs(flipped.float().mean().item() - 0.5) < 0.03
    assert abs(torch.corrcoef(torch.stack([oy.float(), ox.float()]))[0, 1].item()) < 0.05


def test_cutout_is_a_clipped_16_square_centred_uniformly() -> None:
    images = torch.full((N, 2, 32, 32), 200, dtype=torch.uint8)
    out = Augment(pad=0, flip=False, cutout=16, **IDENTITY)(images, _gen(3))
    hole = out[:, 0] == 0
    assert torch.equal(hole, out[:, 1] == 0), "the hole covers every channel"
    rows, cols = hole.any(2), hole.any(1)
    # The hole is a rectangle: its area is rows × cols of its bounding box.
    assert torch.equal(hole.sum((1, 2)), rows.sum(1) * cols.sum(1))

    def centres(mask: torch.Tensor) -> torch.Tensor:
        first = mask.float().argmax(1)
        last = 31 - mask.flip(1).float().argmax(1)
        # Rows c-8 .. c+7 clipped to the image: recover c from whichever end was not clipped.
        return torch.where(first > 0, first + 8, last - 7)

    cy, cx = centres(rows), centres(cols)
    assert cy.min() == 0 and cy.max() == 31 and cx.min() == 0 and cx.max() == 31
    expected_height = torch.clamp(cy + 8, max=32) - torch.clamp(cy - 8, min=0)
    assert torch.equal(rows.sum(1), expected_height)
    for c in (cy, cx):
        freq = torch.bincount(c, minlength=32).float() / N
        assert (freq - 1 / 32).abs().max() < 0.015
    assert ((out == 0) | (out == 200)).all()


def test_cutout_comes_after_normalisation_and_padding_before() -> None:
    mean, std = [0.5], [0.25]
    images = torch.full((2000, 1, 32, 32), 255, dtype=torch.uint8)
    out = Augment(mean, std, cutout=16)(images, _gen(4))
    values = set(torch.unique(out).tolist())
    # 255 → 2.0; zero padding → -2.0 (padding happens on the raw image); the Cutout hole is exactly 0.
    assert values == {2.0, -2.0, 0.0}


def test_same_seed_same_batch_different_seed_different_batch() -> None:
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=_gen(5))
    aug = Augment((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    assert torch.equal(aug(images, _gen(11)), aug(images, _gen(11)))
    assert not torch.equal(aug(images, _gen(11)), aug(images, _gen(12)))
    g = _gen(11)
    assert not torch.equal(aug(images, g), aug(images, g)), "the generator advances"


def test_for_size_is_today_s_augmentation_at_32() -> None:
    mean, std = (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=_gen(7))
    for cutout in (16, 8, 0):
        assert torch.equal(Augment.for_size(mean, std, (32, 32), cutout=cutout)(images, _gen(8)),
                           Augment(mean, std, cutout=cutout)(images, _gen(8)))


def test_for_size_scales_pad_and_cutout_by_the_shorter_side_rounded_half_up() -> None:
    sides = (8, 12, 16, 20, 28, 32, 40, 64, 224)
    assert [(scaled(4, s), scaled(16, s)) for s in sides] == [
        (1, 4), (2, 6), (2, 8), (3, 10), (4, 14), (4, 16), (5, 20), (8, 32), (28, 112)]
    aug = Augment.for_size(IDENTITY["mean"], IDENTITY["std"], (24, 48), cutout=16)  # non-square: the shorter side
    assert (aug.pad, aug.cutout, aug.flip) == (3, 12, True)
    images = torch.full((N // 4, 2, 24, 48), 200, dtype=torch.uint8)
    out = Augment(pad=0, flip=False, cutout=aug.cutout, **IDENTITY)(images, _gen(9))
    assert out.shape == images.shape and (out[:, 0] == 0).sum((1, 2)).max() == 12 * 12
    with pytest.raises(ValueError, match=r"^size is \(0, 32\), expected two positive integers H W$"):
        Augment.for_size([0.5], [0.2], (0, 32))


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"expected a uint8 B×C×H×W batch, got torch.float32"):
        Augment([0.5], [0.2])(torch.zeros(2, 1, 32, 32), _gen())
    with pytest.raises(ValueError, match="one entry per channel"):
        Augment([0.5, 0.5], [0.2])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_with_a_cuda_generator() -> None:
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8).cuda()
    g = torch.Generator("cuda").manual_seed(0)
    out = Augment((0.5,) * 3, (0.2,) * 3)(images, g)
    assert out.device.type == "cuda" and out.shape == images.shape
