"""``dataset_from_torch``: a user's map-style torch Dataset (or DataLoader) of (image, label) read into memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sanas.training import DatasetError
from sanas.training.data import HELD_OUT_TEST_FRACTION, dataset_from_torch


class Pairs(torch.utils.data.Dataset):
    """A map-style dataset as a user writes one, with torchvision's ``classes`` attribute."""

    classes = ("plane", "car")

    def __init__(self, items: list[tuple[object, object]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[object, object]:
        return self.items[i]


def _float_items(n: int, shape: tuple[int, ...] = (3, 6, 5), seed: int = 0) -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 256, shape, generator=g).float() / 255, i % 2) for i in range(n)]


def test_float_tensors_uint8_tensors_and_pil_images_read_the_same() -> None:
    items = _float_items(10)
    ds = dataset_from_torch(Pairs(items), Pairs(items[:4]))
    assert ds.classes == ("plane", "car") and ds.name == "torch" and ds.image_size == (6, 5)
    expected = torch.stack([(x * 255).round().to(torch.uint8) for x, _ in items])
    assert torch.equal(ds.train_images, expected) and ds.train_labels.tolist() == [i % 2 for i in range(10)]
    as_uint8 = [((x * 255).round().to(torch.uint8), torch.tensor(y)) for x, y in items]
    as_pil = [(Image.fromarray(x.permute(1, 2, 0).numpy()), np.int64(y)) for x, y in as_uint8]
    for other in (as_uint8, as_pil):
        again = dataset_from_torch(Pairs(other), Pairs(other[:4]), classes=["p", "c"])
        assert torch.equal(again.train_images, expected) and again.classes == ("p", "c")
    scaled = expected.double() / 255
    assert ds.mean == pytest.approx(scaled.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)


def test_a_dataloader_and_a_held_out_test_part() -> None:
    items = _float_items(20)
    loader = torch.utils.data.DataLoader(Pairs(items), batch_size=6)
    ds = dataset_from_torch(loader)
    assert ds.classes == ("plane", "car")  # from the loader's dataset
    per_class = round(HELD_OUT_TEST_FRACTION * 10)
    assert torch.bincount(ds.test_labels).tolist() == [per_class] * 2 and len(ds.train_labels) == 20 - 2 * per_class
    plain = dataset_from_torch(items)  # a list is a map-style dataset too; no classes attribute
    assert torch.equal(plain.test_images, ds.test_images) and plain.classes == ("0", "1")


def test_sizes_and_channels_follow_the_fit_rule() -> None:
    items = [(Image.new("L", (8 + i, 10), 30 * i), i % 2) for i in range(4)]  # grey, W 8..11
    with pytest.raises(DatasetError, match=r"^the images of the Pairs have 4 different sizes"):
        dataset_from_torch(Pairs(items))
    ds = dataset_from_torch(Pairs(items), Pairs(items), input_size=(6, 7))
    assert ds.train_images.shape == (4, 1, 6, 7) and ds.train_images[2].unique().tolist() == [60]
    assert dataset_from_torch(Pairs(items), Pairs(items), input_size=(6, 7), channels=3).in_channels == 3
    with pytest.raises(DatasetError, match=r"^1 image\(s\) of the Pairs are smaller than the input size 9×9, e.g. "
                                           r"train item 0 \(10×8\)"):
        dataset_from_torch(Pairs(items[:2]), Pairs(items[1:2]), input_size=(9, 9))


@pytest.mark.parametrize(("item", "message"), [
    ((torch.rand(3, 4, 4) * 2 - 1, 0), r"train item 0: a float image with values in \[-.*\]; expected a C×H×W "
                                       r"tensor \(C = 1 or 3; float in \[0, 1\] or uint8\) or a PIL image"),
    ((torch.zeros(4, 4, 4), 0), r"train item 0: the image has shape \(4, 4, 4\); expected a C×H×W tensor"),
    ((torch.zeros(3, 4, 4, dtype=torch.int32), 0), r"train item 0: the image is int32; expected"),
    (("image.png", 0), r"train item 0: the image is str; expected a C×H×W tensor"),
    ((torch.zeros(3, 4, 4), 1.5), r"train item 0: the label is 1.5; expected an integer class index"),
    ((torch.zeros(3, 4, 4),), r"train item 0 is tuple; expected an \(image, label\) pair"),
    ((torch.zeros(3, 4, 4), -1), r"the Pairs: label -1 is negative"),
])
def test_bad_items_are_named(item: tuple[object, ...], message: str) -> None:
    good = (torch.zeros(3, 4, 4), 1)
    with pytest.raises(DatasetError, match=message):
        dataset_from_torch(Pairs([item, good]), Pairs([good, (torch.zeros(3, 4, 4), 0)]))


def test_what_is_not_a_dataset_is_named() -> None:
    with pytest.raises(DatasetError, match=r"^the train data is generator, without len\(\); expected a map-style "
                                           r"torch.utils.data.Dataset of \(image, label\), or a DataLoader$"):
        dataset_from_torch(x for x in [])
    with pytest.raises(DatasetError, match=r"^the train data holds no item"):
        dataset_from_torch(Pairs([]))
    with pytest.raises(ValueError, match=r"^input_size is \(0, 0\)"):
        dataset_from_torch(Pairs(_float_items(4)), input_size=(0, 0))
