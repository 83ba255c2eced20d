"""The calibration loader: errors reach the caller (never a hang), skips are named, and only
the warning it means to silence is silenced."""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import normstyle.io.folders as folders_module
from nets import random_relu_net
from normstyle.errors import InputError
from normstyle.io.folders import image_files
from normstyle.nets.inputs import network_inputs
from normstyle.nets.preprocessing import CAFFE
from normstyle.normalization.calibrate import measure_means


def write_images(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(exist_ok=True)
    generator = np.random.default_rng(0)
    for index in range(count):
        array = generator.integers(0, 255, (40 + index, 36, 3), np.uint8)
        Image.fromarray(array).save(folder / f"{index}.png")
    return image_files(folder)


@pytest.mark.timeout(30)
def test_an_unexpected_loader_error_reaches_the_caller(tmp_path: Path, monkeypatch) -> None:
    files = write_images(tmp_path / "images")
    real = folders_module.decoded

    def faulty(path, *args, **kwargs):
        if path == files[1]:
            raise RuntimeError("decoder bug")  # not a NormstyleError
        return real(path, *args, **kwargs)

    monkeypatch.setattr(folders_module, "decoded", faulty)
    with pytest.raises(InputError, match=r"1\.png: loading failed \(RuntimeError: decoder bug\)"):
        list(network_inputs(files, CAFFE, 32))


@pytest.mark.timeout(30)
def test_huge_resizes_are_skipped_with_a_reason(tmp_path: Path) -> None:
    files = write_images(tmp_path / "images", 2)
    Image.new("RGB", (40000, 1)).save(tmp_path / "images" / "strip.png")
    skipped: list[str] = []
    batches = list(network_inputs(image_files(tmp_path / "images"), CAFFE, 32, skipped))
    assert len(batches) == len(files) == 2
    assert len(skipped) == 1 and "strip.png" in skipped[0]
    assert "40000×1 px would become 1280000×32 px" in skipped[0]


def corrupt_exif_jpeg(path: Path) -> None:
    # An IFD entry whose data lies beyond the block: Pillow's TIFF parser warns about it.
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + struct.pack("<H", 1)
    exif += struct.pack("<HHII", 0x010E, 2, 100, 200)
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), (120, 30, 200)).save(buffer, "JPEG", exif=exif)
    path.write_bytes(buffer.getvalue())


def test_only_the_corrupt_exif_warning_is_silenced(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    write_images(folder, 1)
    corrupt_exif_jpeg(folder / "exif.jpg")
    net = random_relu_net()

    def warn(_module, _inputs, _output):
        warnings.warn("a warning of the user's own", UserWarning, stacklevel=1)

    net.relu1.register_forward_hook(warn)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        means, skipped = measure_means(net, image_files(folder), CAFFE, 32, progress=False)
    messages = [str(w.message) for w in caught]
    assert means.images == 2 and not skipped
    assert "a warning of the user's own" in messages  # not hidden any more
    assert not [m for m in messages if "EXIF" in m or "Tag data" in m]


def test_measure_means_counts_every_readable_image(tmp_path: Path) -> None:
    files = write_images(tmp_path / "images", 3)
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    net = random_relu_net()
    means, skipped = measure_means(net, image_files(tmp_path / "images"), CAFFE, 32, False)
    assert means.images == len(files) and len(skipped) == 1 and "broken.png" in skipped[0]
    # Independent reference: the same images, resized the same way, through the net by hand.
    total = torch.zeros(6, dtype=torch.float64)
    count = 0
    for x in network_inputs(files, CAFFE, 32):
        out = net[:7](x).double()  # up to relu3
        total += out.sum(dim=(0, 2, 3))
        count += out.shape[0] * out.shape[2] * out.shape[3]
    torch.testing.assert_close(means.means["conv3"], total / count, rtol=1e-6, atol=0)
