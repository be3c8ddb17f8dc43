"""Unit tests of the input normalisation every scorer shares: ``load_image`` and ``clean_caption``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_vlm_filter import ImagePolicy, RowError, clean_caption, load_image
from tests.conftest import jpeg_bytes, png_bytes, png_header_claiming, random_image

# A policy that never upscales, so small arrays can be checked pixel by pixel.
NO_UPSCALE = ImagePolicy(min_side=1)


def refused(cell, policy: ImagePolicy = ImagePolicy()) -> str:
    with pytest.raises(RowError) as info:
        load_image(cell, policy)
    return str(info.value)


# ---- accepted cell forms ------------------------------------------------------------------------


@pytest.fixture()
def stored(tmp_path) -> tuple[Path, np.ndarray]:
    """A lossless 40x30 PNG on disk and its pixels."""
    image = random_image(40, 30, seed=3)
    path = tmp_path / "sub" / "pic.png"
    path.parent.mkdir()
    image.save(path)
    return path, np.asarray(image)


def test_pil_image_cell():
    image = random_image(40, 30, seed=1)
    out = load_image(image)
    assert out.mode == "RGB" and out.size == (40, 30)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(image))


def test_bytes_dict_cell(stored):
    path, pixels = stored
    out = load_image({"bytes": path.read_bytes(), "path": None})
    assert out.size == (40, 30)
    np.testing.assert_array_equal(np.asarray(out), pixels)


def test_bytes_dict_wins_over_a_missing_path(stored):
    path, pixels = stored
    out = load_image({"bytes": path.read_bytes(), "path": "/nonexistent/elsewhere.png"})
    np.testing.assert_array_equal(np.asarray(out), pixels)


def test_path_dict_cell(stored):
    path, pixels = stored
    np.testing.assert_array_equal(np.asarray(load_image({"bytes": None, "path": str(path)})), pixels)


@pytest.mark.parametrize("as_type", [str, Path])
def test_path_cells(stored, as_type):
    path, pixels = stored
    np.testing.assert_array_equal(np.asarray(load_image(as_type(path))), pixels)


@pytest.mark.parametrize("as_cell", [lambda p: p, Path, lambda p: {"bytes": None, "path": p}])
def test_relative_path_resolved_against_image_root(stored, as_cell):
    path, pixels = stored
    policy = ImagePolicy(image_root=str(path.parent.parent))
    np.testing.assert_array_equal(np.asarray(load_image(as_cell("sub/pic.png"), policy)), pixels)


def test_relative_path_without_root_is_not_found(stored, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path / "sub" / "..")  # the file is "sub/pic.png" from here ...
    assert load_image("sub/pic.png").size == (40, 30)  # ... so the working directory resolves it
    monkeypatch.chdir(tmp_path / "sub")
    assert refused("sub/pic.png") == "image file not found: sub/pic.png"


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_raw_bytes_cells(stored, wrap):
    path, pixels = stored
    np.testing.assert_array_equal(np.asarray(load_image(wrap(path.read_bytes()))), pixels)


# ---- modes --------------------------------------------------------------------------------------


def test_rgba_composited_on_white():
    rgba = Image.new("RGBA", (30, 30), (10, 20, 30, 0))  # fully transparent
    rgba.putpixel((1, 1), (10, 20, 30, 255))  # opaque
    rgba.putpixel((2, 2), (0, 0, 0, 128))  # half-transparent black
    out = load_image(rgba)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 1)) == (10, 20, 30)
    assert out.getpixel((2, 2)) == (127, 127, 127)


def test_rgba_png_bytes_composited_on_white():
    rgba = Image.new("RGBA", (30, 30), (200, 0, 0, 0))
    out = load_image(png_bytes(rgba))
    assert out.getpixel((5, 5)) == (255, 255, 255)


def test_la_composited_on_white():
    la = Image.new("LA", (30, 30), (100, 0))
    la.putpixel((3, 3), (100, 255))
    out = load_image(la)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((3, 3)) == (100, 100, 100)


def _palette_image() -> Image.Image:
    image = Image.new("P", (30, 30), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    return image


def test_palette_with_transparency_composited_on_white():
    image = _palette_image()
    image.info["transparency"] = 1  # index 1 (green) is transparent
    for cell in (image, png_bytes(image)):
        out = load_image(cell)
        assert out.getpixel((0, 0)) == (255, 255, 255)
        assert out.getpixel((1, 1)) == (255, 0, 0)


def test_palette_without_transparency():
    out = load_image(_palette_image())
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (0, 255, 0)
    assert out.getpixel((1, 1)) == (255, 0, 0)


def test_cmyk():
    out = load_image(Image.new("CMYK", (30, 30), (0, 255, 255, 0)))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 0, 0)


def test_i16_rescaled_from_its_min_max():
    image = Image.fromarray(np.array([[100, 200], [300, 1100]], dtype=np.uint16))
    assert image.mode == "I;16"
    out = np.asarray(load_image(image, NO_UPSCALE))
    assert out.shape == (2, 2, 3)
    # (v - 100) * 255 / 1000, rounded: 0, 25.5 -> 26, 51, 255
    np.testing.assert_array_equal(out[..., 0], [[0, 26], [51, 255]])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_i16_png_bytes_use_the_full_range():
    array = (np.arange(30 * 30).reshape(30, 30) * 70).astype(np.uint16)
    out = np.asarray(load_image(png_bytes(Image.fromarray(array))))
    assert tuple(out[0, 0]) == (0, 0, 0) and tuple(out[-1, -1]) == (255, 255, 255)


def test_mode_i_rescaled():
    image = Image.fromarray(np.array([[-5, 5], [15, 0]], dtype=np.int32))
    assert image.mode == "I"
    np.testing.assert_array_equal(np.asarray(load_image(image, NO_UPSCALE))[..., 1], [[0, 128], [255, 64]])


def test_mode_f_rescaled():
    image = Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32))
    assert image.mode == "F"
    np.testing.assert_array_equal(np.asarray(load_image(image, NO_UPSCALE))[..., 0], [[0, 128], [255, 64]])


def test_constant_high_bit_depth_image_is_black_not_nan():
    image = Image.fromarray(np.full((2, 2), 7.0, dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(load_image(image, NO_UPSCALE)), np.zeros((2, 2, 3), np.uint8))


def test_bilevel():
    image = Image.new("1", (30, 30), 0)
    image.putpixel((0, 0), 1)
    out = load_image(image)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 1)) == (0, 0, 0)


def test_grayscale():
    out = load_image(Image.new("L", (30, 30), 77))
    assert out.mode == "RGB" and out.getpixel((4, 4)) == (77, 77, 77)


# ---- orientation, animation, shape --------------------------------------------------------------


def test_exif_orientation_applied():
    image = Image.new("RGB", (60, 40), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert Image.open(io.BytesIO(buffer.getvalue())).size == (60, 40)
    assert load_image(buffer.getvalue()).size == (40, 60)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    data = buffer.getvalue()
    assert load_image(data).getpixel((0, 0)) == (255, 0, 0)
    opened = Image.open(io.BytesIO(data))
    assert opened.is_animated
    opened.seek(1)  # a decoded image left on a later frame is still judged on the first
    assert load_image(opened).getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((10, 20), (28, 56)), ((14, 100), (28, 200)), ((27, 27), (28, 28)), ((1, 1), (28, 28)), ((28, 5), (157, 28))],
)
def test_small_images_upscaled_to_min_side(size, expected):
    assert load_image(Image.new("RGB", size, "white")).size == expected


def test_images_at_min_side_are_untouched():
    assert load_image(Image.new("RGB", (28, 300))).size == (28, 300)


def test_extreme_aspect_ratio_refused():
    assert refused(Image.new("RGB", (5000, 20))) == "aspect ratio 250:1 is over 200:1"
    assert "aspect ratio" in refused(Image.new("RGB", (20, 5000)))
    assert load_image(Image.new("RGB", (5600, 28))).size == (5600, 28)  # exactly 200:1 passes
    assert load_image(Image.new("RGB", (4000, 20))).size == (5600, 28)  # 200:1, then upscaled
    assert "aspect ratio" in refused(Image.new("RGB", (5601, 28)))


# ---- refusals -----------------------------------------------------------------------------------


def test_decompression_bomb_header_refused():
    reason = refused(png_header_claiming(20_000, 20_000))
    assert reason.startswith("decompression bomb refused")


def test_decompression_bomb_by_policy():
    assert refused(Image.new("RGB", (100, 100)), ImagePolicy(max_image_pixels=5000)) == (
        "decompression bomb refused: 100x100 is over 5000 pixels"
    )
    assert refused(png_bytes(Image.new("RGB", (100, 100))), ImagePolicy(max_image_pixels=9999)).startswith(
        "decompression bomb refused"
    )
    assert load_image(Image.new("RGB", (100, 100)), ImagePolicy(max_image_pixels=10_000)).size == (100, 100)


def test_truncated_jpeg_refused():
    data = jpeg_bytes(random_image(200, 200, seed=5))
    assert load_image(data).size == (200, 200)
    assert refused(data[: len(data) // 2]).startswith("corrupt or truncated image")


def test_corrupt_png_refused():
    data = bytearray(png_bytes(random_image(64, 64, seed=6)))
    data[60:160] = b"\x00" * 100  # inside the compressed pixel data
    assert refused(bytes(data)).startswith("corrupt or truncated image")


@pytest.mark.parametrize("cell", [b"hello", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, {"bytes": b"hello", "path": None}])
def test_non_image_bytes_refused(cell):
    assert refused(cell) == "not an image (unrecognised format)"


def test_non_image_file_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    assert refused(str(path)) == "not an image (unrecognised format)"


@pytest.mark.parametrize("cell", [b"", bytearray(), {"bytes": b"", "path": None}])
def test_empty_bytes_refused(cell):
    assert refused(cell) == "empty image bytes"


@pytest.mark.parametrize("cell", ["/nonexistent/x.jpg", Path("/nonexistent/x.jpg"), {"bytes": None, "path": "/nonexistent/x.jpg"}])
def test_missing_file_refused(cell):
    assert refused(cell) == "image file not found: /nonexistent/x.jpg"


def test_directory_is_not_an_image_file(tmp_path):
    assert refused(str(tmp_path)) == f"image file not found: {tmp_path}"


@pytest.mark.parametrize("cell", [None, "", "   ", {"bytes": None, "path": None}, {"bytes": None, "path": ""}, {}])
def test_missing_image(cell):
    assert refused(cell) == "missing image"


@pytest.mark.parametrize(("cell", "name"), [(5, "int"), (3.5, "float"), ([1, 2], "list"), (np.zeros((4, 4, 3)), "ndarray")])
def test_unsupported_cells(cell, name):
    assert refused(cell) == f"unsupported image cell of type {name}"


# ---- captions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a red bus", "a red bus"),
        ("  a red bus \n\t", "a red bus"),
        ("inner   spaces  kept", "inner   spaces  kept"),
        ("Äpfel 🍎", "Äpfel 🍎"),
        ("a <|im_end|> b", "a <|im_end|> b"),
        ("Äpfel 🍎 ".encode("utf-8"), "Äpfel 🍎"),
        (b"  bytes caption\n", "bytes caption"),
    ],
)
def test_clean_caption_accepts(value, expected):
    assert clean_caption(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "missing caption"),
        ("", "empty caption"),
        ("   \n\t ", "empty caption"),
        (b"", "empty caption"),
        (b"  ", "empty caption"),
        (b"\xff\xfe\xfa", "caption bytes are not UTF-8"),
        (42, "caption is not text (int)"),
        (3.5, "caption is not text (float)"),
        (["a", "b"], "caption is not text (list)"),
    ],
)
def test_clean_caption_refuses(value, reason):
    with pytest.raises(RowError) as info:
        clean_caption(value)
    assert str(info.value) == reason


def test_raising_max_image_pixels_is_honoured_up_to_pils_hard_limit():
    header = png_header_claiming(10_000, 10_000)  # 1e8 pixels: over PIL's 89.5 MP warning level
    assert refused(header) == "decompression bomb refused: 10000x10000 is over 89478485 pixels"
    # with a higher policy limit the size check passes; the header-only file then fails to decode
    assert refused(header, ImagePolicy(max_image_pixels=150_000_000)).startswith("corrupt or truncated image")
