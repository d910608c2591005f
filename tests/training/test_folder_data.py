"""The ``folder`` dataset: an ImageFolder layout of PNG, JPEG, BMP and WebP files, decoded once with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from sanas import get_space
from sanas.training import DatasetError, Recipe, Trainer, load_dataset, prepare_data
from sanas.training.augment import scaled
from sanas.training.data import HELD_OUT_TEST_FRACTION, dataset_shape, fit_image

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}


def _pixels(seed: int, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> np.ndarray:
    """Random pixels of an H×W image (H×W×3 for RGB, H×W for L)."""
    shape = (*size, 3) if mode == "RGB" else size
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _write(path: Path, pixels: np.ndarray, **save: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = FORMATS[path.suffix.lower()]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(pixels).save(path, fmt, **{**extra, **save})
    return path


def _folder(root: Path, classes: dict[str, int], split: bool = True, size: tuple[int, int] = (12, 10),
            mode: str = "RGB") -> dict[Path, np.ndarray]:
    """``count`` lossless PNG images per class (train/ and test/ each when ``split``); returns path → pixels."""
    written = {}
    for part in ("train", "test") if split else ("",):
        for k, (name, count) in enumerate(classes.items()):
            for i in range(count):
                pixels = _pixels(1000 * k + i + (500 if part == "test" else 0), size, mode)
                written[_write(root / part / name / f"{i:03d}.png", pixels)] = pixels
    return written


def test_train_and_test_folders_in_every_format_with_sorted_classes(tmp_path: Path) -> None:
    # Class names are sorted, whatever order the folders were made in; every format decodes.
    for part in ("train", "test"):
        for k, name in enumerate(["zebra", "ant", "moth"]):
            for i, suffix in enumerate([".png", ".JPG", ".bmp", ".webp"]):
                _write(tmp_path / part / name / f"img{i}{suffix}", _pixels(10 * k + i))
    ds = load_dataset("folder", tmp_path)
    assert ds.classes == ("ant", "moth", "zebra") and ds.num_classes == 3
    assert ds.train_images.shape == (12, 3, 12, 10) and ds.test_images.shape == (12, 3, 12, 10)
    assert ds.image_size == (12, 10) and ds.train_images.dtype == torch.uint8
    assert ds.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # Files in sorted order, each what Pillow decodes (no resampling: the size is the data's); lossless formats
    # keep the written pixels exactly.
    for row, name in enumerate(["img0.png", "img1.JPG", "img2.bmp", "img3.webp"]):
        got = ds.train_images[row].permute(1, 2, 0).numpy()
        with Image.open(tmp_path / "train" / "ant" / name) as image:
            assert np.array_equal(got, np.asarray(image.convert("RGB"))), name
        assert name.endswith(".JPG") or np.array_equal(got, _pixels(10 + row)), name
    # Mean and std are the training images' own.
    scaled01 = ds.train_images.double() / 255
    assert ds.mean == pytest.approx(scaled01.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert ds.std == pytest.approx(scaled01.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-9)
    assert "train/ and test/" in ds.source


def test_one_folder_of_classes_holds_out_a_seeded_balanced_test_part(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 10, "b": 5, "c": 1}, split=False)
    ds = load_dataset("folder", tmp_path)
    held = torch.bincount(ds.test_labels, minlength=3).tolist()
    assert held == [round(HELD_OUT_TEST_FRACTION * 10), 1, 0]  # at least one of a class of two or more
    assert torch.bincount(ds.train_labels).tolist() == [10 - held[0], 4, 1]
    again = load_dataset("folder", tmp_path)
    assert torch.equal(ds.test_images, again.test_images) and torch.equal(ds.train_labels, again.train_labels)
    # Test and training images are different files.
    flat = {bytes(x.numpy()) for x in ds.train_images}
    assert not any(bytes(x.numpy()) in flat for x in ds.test_images)
    assert "20% of each class held out" in ds.source


def test_grey_images_stay_grey_and_channels_convert_by_pillow(tmp_path: Path) -> None:
    written = _folder(tmp_path, {"a": 2, "b": 2}, mode="L")
    ds = load_dataset("folder", tmp_path)
    assert ds.in_channels == 1 and dataset_shape("folder", root=tmp_path) == (1, 2)
    first = next(iter(written.values()))
    assert np.array_equal(ds.train_images[0, 0].numpy(), first)
    rgb = load_dataset("folder", tmp_path, channels=3)
    assert rgb.in_channels == 3 and all(torch.equal(rgb.train_images[:, c], ds.train_images[:, 0]) for c in range(3))
    # One colour image makes the whole folder RGB; channels=1 converts it with Pillow's luma.
    colour = _pixels(99)
    _write(tmp_path / "train" / "a" / "colour.png", colour)
    assert load_dataset("folder", tmp_path).in_channels == 3 and dataset_shape("folder", root=tmp_path) == (3, 2)
    grey = load_dataset("folder", tmp_path, channels=1)
    expected = np.asarray(Image.fromarray(colour).convert("L"))
    assert any(np.array_equal(x[0].numpy(), expected) for x in grey.train_images)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    for part in ("train", "test"):
        for name, value in (("dark", 256), ("light", 65535)):
            path = tmp_path / part / name / "x.png"
            path.parent.mkdir(parents=True)
            Image.fromarray(np.full((4, 4), value, dtype=np.uint16)).save(path)
    ds = load_dataset("folder", tmp_path)
    assert ds.in_channels == 1 and ds.train_images[:, 0, 0, 0].tolist() == [1, 255]


def test_input_size_covers_then_centre_crops_never_enlarges(tmp_path: Path) -> None:
    big = _pixels(7, (30, 60))  # H×W: wide
    for part in ("train", "test"):
        _write(tmp_path / part / "a" / "wide.png", big)
        _write(tmp_path / part / "b" / "tall.png", _pixels(8, (50, 24)))
    with pytest.raises(DatasetError, match=r"have 2 different sizes \(e.g. 30×60 and 50×24, H×W\); expected one "
                                           r"size, or an input_size \(--input-size H W\)"):
        load_dataset("folder", tmp_path)
    ds = load_dataset("folder", tmp_path, input_size=(20, 16))  # non-square
    assert ds.train_images.shape == (2, 3, 20, 16)
    expected = np.asarray(ImageOps.fit(Image.fromarray(big), (16, 20), method=Image.Resampling.BILINEAR))
    assert np.array_equal(ds.train_images[0].permute(1, 2, 0).numpy(), expected)
    assert np.array_equal(fit_image(Image.fromarray(big), (20, 16), 3).transpose(1, 2, 0), expected)
    # 24 pixels wide is narrower than 25: refused, naming the image and the rule.
    with pytest.raises(DatasetError, match=r"^2 image\(s\) of .* are smaller than the input size 25×25, e.g. "
                                           r".*tall.png \(50×24\); expected at least 25×25: images are shrunk to "
                                           r"the input size, never enlarged"):
        load_dataset("folder", tmp_path, input_size=[25, 25])


@pytest.mark.parametrize("bad", [(0, 0), (32,), (32, 32, 3), (32.0, 32), (True, 32), "32 32", (-1, 8)])
def test_input_size_must_be_two_positive_integers(tmp_path: Path, bad: object) -> None:
    _folder(tmp_path, {"a": 1, "b": 1})
    with pytest.raises(ValueError, match=r"^input_size is .*, expected two positive integers H W \(e.g. 32 32\)$"):
        load_dataset("folder", tmp_path, input_size=bad)  # type: ignore[arg-type]


def test_non_image_files_are_skipped_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "test" / "b" / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "README.md").write_text("beside train/ and test/: not looked at")
    ds = load_dataset("folder", tmp_path)
    assert len(ds.train_labels) == 4 and len(ds.test_labels) == 4
    err = capsys.readouterr().err
    assert "skipped 2 file(s) that are not images (not .bmp, .jpeg, .jpg, .png, .webp), e.g. " in err
    assert "notes.txt" in err and err.count("\n") == 1
    assert "skipped 2 file(s)" in ds.source


def test_a_text_file_named_like_an_image_is_refused(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 2, "b": 2})
    fake = tmp_path / "train" / "b" / "fake.png"
    fake.write_text("hello")
    with pytest.raises(DatasetError, match=rf"^not an image: {fake} cannot be read as PNG, JPEG, BMP or WebP"):
        load_dataset("folder", tmp_path)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp"])
def test_a_truncated_image_is_named(tmp_path: Path, suffix: str) -> None:
    _folder(tmp_path, {"a": 2, "b": 2})
    path = _write(tmp_path / "test" / "a" / f"cut{suffix}", _pixels(5))
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(DatasetError, match=rf"^corrupt or truncated image {path}: .*; expected a complete PNG, "
                                           rf"JPEG, BMP or WebP file$"):
        load_dataset("folder", tmp_path)


def test_many_images_decode_in_order_and_an_error_names_the_file(tmp_path: Path) -> None:
    written = _folder(tmp_path, {"a": 60, "b": 60}, split=False, size=(8, 8))
    ds = load_dataset("folder", tmp_path)
    assert len(ds.train_labels) + len(ds.test_labels) == 120
    assert {bytes(p.tobytes()) for p in written.values()} == {
        bytes(x.permute(1, 2, 0).contiguous().numpy().tobytes()) for x in torch.cat([ds.train_images, ds.test_images])}
    broken = tmp_path / "b" / "050.png"
    broken.write_bytes(broken.read_bytes()[:60])
    with pytest.raises(DatasetError, match=rf"image {broken}: "):
        load_dataset("folder", tmp_path)


def test_layout_errors_name_the_folder_and_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"^image folder .*nowhere does not exist: expected .*/train/<class>/…"):
        load_dataset("folder", tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"^the folder dataset needs root: a folder of class folders"):
        load_dataset("folder")
    _folder(tmp_path, {"a": 1, "b": 1, "c": 1})
    (tmp_path / "train" / "d").mkdir()
    with pytest.raises(DatasetError, match=r"^class folders differ between .*train and .*test: .*train alone has d; "
                                           r"expected the same class folders in both$"):
        load_dataset("folder", tmp_path)
    (tmp_path / "test" / "d").mkdir()
    (tmp_path / "test" / "d" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"^empty class folder .*train/d: no .bmp, .jpeg, .jpg, .png, .webp file "
                                           r"in it; expected at least one image per class$"):
        load_dataset("folder", tmp_path)
    only_train = tmp_path / "only_train"
    _folder(only_train, {"a": 1, "b": 1}, split=False)
    (only_train / "train").mkdir()
    with pytest.raises(DatasetError, match=r"has no test/ beside train/: expected both train/<class>/… and "
                                           r"test/<class>/…"):
        load_dataset("folder", only_train)
    one = tmp_path / "one"
    _folder(one, {"a": 2}, split=False)
    with pytest.raises(DatasetError, match=r"has 1 class folder\(s\) \(a\); expected at least two"):
        load_dataset("folder", one)


def test_a_folder_trains_at_its_own_size_with_the_scaled_augmentation(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 6, "b": 6}, split=False, size=(16, 20))
    data = prepare_data("folder", tmp_path, val_fraction=0.25)
    assert data.dataset.image_size == (16, 20) and data.split["dataset"] == "folder"
    space = get_space("DartsSpace", layers=3, filter_num=[4, 8, 16], init_channels=4, auxiliary=False,
                      in_channels=data.in_channels, num_classes=data.num_classes)
    trainer = Trainer(space, space.init_tokens(), data, Recipe(retain_epoch=2, batch_size=4, device="cpu"))
    assert (trainer.augment.pad, trainer.augment.cutout) == (scaled(4, 16), scaled(16, 16)) == (2, 8)
    assert np.isfinite(trainer.run_epoch().train_loss)
