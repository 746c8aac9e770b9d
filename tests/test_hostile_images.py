"""Hostile and unusual image files (issue 11): every Pillow mode comes out as the picture a viewer shows.

The oracle is the 8-bit version of the same picture: a 16-bit file holds v * 257 where the 8-bit one holds v
(65535 / 255 = 257), so both must load to the same RGB pixels, classify the same, and look the same in the
CamExplorer's upload path.
"""

import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from effnet_edu.images import ImageError, load_image, sample_photo


def png_bytes(array: np.ndarray, bit_depth: int, claimed_size=None) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB): grey (H, W) or RGB (H, W, 3), 8 or 16 bits.
    ``claimed_size`` (width, height) puts other dimensions in the header than the data holds."""
    height, width = array.shape[:2]
    colour_type = 0 if array.ndim == 2 else 2
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = array.astype(dtype).reshape(height, -1).view(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", *(claimed_size or (width, height)), bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def cat():
    return np.asarray(sample_photo("chelsea"))  # (300, 451, 3) uint8, a real photo


@pytest.mark.parametrize("grey", [True, False], ids=["grey16", "rgb16"])
def test_16_bit_png_loads_as_its_8_bit_picture(tmp_path, cat, grey):
    pixels = cat.mean(2).round().astype(np.uint16) if grey else cat.astype(np.uint16)
    (tmp_path / "16.png").write_bytes(png_bytes(pixels * 257, 16))
    (tmp_path / "8.png").write_bytes(png_bytes(pixels, 8))
    sixteen, eight = np.asarray(load_image(tmp_path / "16.png")), np.asarray(load_image(tmp_path / "8.png"))
    assert sixteen.shape == eight.shape == (300, 451, 3)
    assert np.abs(sixteen.astype(int) - eight).max() <= 1  # not white (today's bug: 16-bit grey clipped at 255)
    assert eight.std() > 30  # a real picture, not a flat one


def test_16_bit_png_classifies_like_8_bit_on_the_command_line_and_in_the_widget(tmp_path, cat):
    from effnet_edu_widgets.cam import read_upload

    grey = cat.mean(2).round().astype(np.uint16)
    data16 = png_bytes(grey * 257, 16)
    (tmp_path / "cat16.png").write_bytes(data16)
    (tmp_path / "cat8.png").write_bytes(png_bytes(grey, 8))
    out = subprocess.run([sys.executable, "-m", "effnet_edu", "predict", "--json", "--top", "3",
                          str(tmp_path / "cat16.png"), str(tmp_path / "cat8.png")],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    sixteen, eight = json.loads(out.stdout)
    assert [t["index"] for t in sixteen["top"]] == [t["index"] for t in eight["top"]]
    assert sixteen["top"][0]["probability"] == pytest.approx(eight["top"][0]["probability"], abs=0.02)
    name, uploaded = read_upload([{"name": "cat16.png", "content": memoryview(data16)}])
    assert name == "cat16.png"
    assert np.abs(np.asarray(uploaded).astype(int) - np.asarray(load_image(tmp_path / "cat8.png"))).max() <= 1


def test_palette_la_cmyk_and_32_bit_modes(tmp_path, cat):
    photo = Image.fromarray(cat)
    grey = photo.convert("L")
    palette = photo.quantize(64)
    palette.save(tmp_path / "p.png")
    assert np.array_equal(np.asarray(load_image(tmp_path / "p.png")), np.asarray(palette.convert("RGB")))
    # LA: opaque pixels are the grey picture; transparent ones are white (as a viewer shows them), not black.
    alpha = np.full(cat.shape[:2], 255, np.uint8)
    alpha[:, :100] = 0
    Image.merge("LA", (grey, Image.fromarray(alpha))).save(tmp_path / "la.png")
    loaded = np.asarray(load_image(tmp_path / "la.png"))
    assert np.array_equal(loaded[:, 100:, 0], np.asarray(grey)[:, 100:]) and (loaded[:, :100] == 255).all()
    photo.convert("CMYK").save(tmp_path / "cmyk.tif")  # Pillow's RGB <-> CMYK round trip is exact
    assert np.array_equal(np.asarray(load_image(tmp_path / "cmyk.tif")), cat)
    # 32-bit integer grey holding 16-bit values (how some Pillow versions open 16-bit PNGs): scaled like them
    Image.fromarray(np.asarray(grey).astype(np.int32) * 257, "I").save(tmp_path / "i32.tif")
    assert np.abs(np.asarray(load_image(tmp_path / "i32.tif"))[..., 0].astype(int) - np.asarray(grey)).max() <= 1


def test_exif_orientation_is_applied(tmp_path, cat):
    photo = Image.fromarray(cat)  # 451 wide, 300 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display" (EXIF 2.3, tag Orientation)
    photo.save(tmp_path / "phone.png", exif=exif)
    loaded = load_image(tmp_path / "phone.png")
    assert loaded.size == (300, 451)
    assert np.array_equal(np.asarray(loaded), np.asarray(photo.transpose(Image.Transpose.ROTATE_270)))


def test_decompression_bomb_is_one_line_and_exit_2(tmp_path):
    # A 20000 x 20000 PNG header with almost no data: Pillow refuses it at open (> 2 x MAX_IMAGE_PIXELS).
    (tmp_path / "bomb.png").write_bytes(png_bytes(np.zeros((1, 1), np.uint8), 8, claimed_size=(20000, 20000)))
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(tmp_path / "bomb.png")
    out = subprocess.run([sys.executable, "-m", "effnet_edu", "predict", str(tmp_path / "bomb.png")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "bomb.png: refused as a possible decompression bomb" in out.stderr


def test_bundled_photos_by_name_and_clear_errors(tmp_path):
    assert load_image("chelsea").size == load_image("sample:chelsea").size == (451, 300)
    with pytest.raises(ImageError, match="no such file .*bundled photo: astronaut, chelsea"):
        load_image(tmp_path / "photo.jpg")
    with pytest.raises(ImageError, match="no bundled photo 'cat'"):
        load_image("sample:cat")
    with pytest.raises(ImageError, match="upload: not an image file"):
        load_image(b"hello")
    (tmp_path / "chelsea").write_bytes(png_bytes(np.zeros((40, 40), np.uint8), 8))  # a file wins over a name
    assert load_image(tmp_path / "chelsea").size == (40, 40)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_image_is_named(tmp_path):
    path = tmp_path / "secret.png"
    path.write_bytes(png_bytes(np.zeros((4, 4), np.uint8), 8))
    path.chmod(0)
    with pytest.raises(ImageError, match="secret.png: cannot read the file"):
        load_image(path)


def test_upload_of_a_bad_file_shows_in_the_widget_message():
    from effnet_edu_widgets.cam import read_upload

    with pytest.raises(ImageError, match="notes.txt: not an image file"):
        read_upload([{"name": "notes.txt", "content": b"hello"}])
    with pytest.raises(ImageError, match="no file uploaded"):
        read_upload([])
