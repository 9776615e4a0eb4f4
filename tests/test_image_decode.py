"""Image decoding: formats, transparency, EXIF orientation and metadata, damaged files, bombs."""

from __future__ import annotations

import struct
import warnings
import zlib
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image, ImageOps, JpegImagePlugin

from searchengine.config import IndexConfig
from searchengine.errors import DecodeError
from searchengine.media import decode_file
from searchengine.media import image as image_mod
from searchengine.media.image import MAX_SIDE, decode

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def close(color: tuple[int, ...], expected: tuple[int, int, int], tol: int = 24) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(color[:3], expected, strict=True))


def payload(path: Path, config: IndexConfig | None = None) -> Image.Image:
    decoded = decode(str(path), config or IndexConfig())
    assert decoded.file_type == "image"
    assert len(decoded.segments) == 1
    seg = decoded.segments[0]
    assert (seg.space, seg.kind, seg.start, seg.end, seg.text) == (
        "clip",
        "image",
        None,
        None,
        None,
    )
    assert isinstance(seg.payload, Image.Image)
    assert seg.payload.mode == "RGB"
    return seg.payload


def quadrants(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Left half red, right half blue, with a green top-left corner block."""
    w, h = size
    im = Image.new("RGB", size, BLUE)
    im.paste(RED, (0, 0, w // 2, h))
    im.paste(GREEN, (0, 0, w // 4, h // 4))
    return im


def test_rgba_png_transparent_pixels_become_white(tmp_path: Path) -> None:
    im = Image.new("RGBA", (40, 20), (255, 0, 0, 255))
    im.paste((0, 0, 255, 0), (20, 0, 40, 20))  # right half fully transparent (blue underneath)
    path = tmp_path / "alpha.png"
    im.save(path)
    decoded = decode(str(path), IndexConfig())
    out = decoded.segments[0].payload
    assert out.mode == "RGB" and out.size == (40, 20)
    assert out.getpixel((5, 10)) == RED
    assert out.getpixel((35, 10)) == WHITE
    assert decoded.meta == {"format": "png", "width": 40, "height": 20}


def test_half_transparent_pixels_blend_with_white(tmp_path: Path) -> None:
    path = tmp_path / "half.png"
    Image.new("RGBA", (10, 10), (0, 0, 0, 128)).save(path)
    assert close(payload(path).getpixel((5, 5)), (127, 127, 127), tol=3)


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (30, 30), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))  # index 0 black, 1 red
    im.paste(1, (0, 0, 15, 30))
    path = tmp_path / "palette.png"
    im.save(path, transparency=0)  # black (index 0) is transparent
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" in check.info
    out = payload(path)
    assert out.getpixel((5, 15)) == RED
    assert out.getpixel((25, 15)) == WHITE  # would be black if transparency were dropped


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in (RED, GREEN, BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    decoded = decode(str(path), IndexConfig())
    assert close(decoded.segments[0].payload.getpixel((10, 10)), RED)
    assert decoded.meta["format"] == "gif"


@pytest.mark.parametrize(
    ("name", "fmt", "kwargs"),
    [
        ("pic.webp", "webp", {"lossless": True}),
        ("pic.bmp", "bmp", {}),
        ("pic.tiff", "tiff", {}),
        ("pic.tif", "tiff", {"compression": "tiff_lzw"}),
        ("pic.jpg", "jpeg", {"quality": 95}),
    ],
)
def test_common_formats_decode(tmp_path: Path, name: str, fmt: str, kwargs: dict) -> None:
    path = tmp_path / name
    quadrants((64, 48)).save(path, **kwargs)
    decoded = decode(str(path), IndexConfig())
    out = decoded.segments[0].payload
    assert out.size == (64, 48)
    assert close(out.getpixel((2, 2)), GREEN)
    assert close(out.getpixel((24, 40)), RED)
    assert close(out.getpixel((60, 40)), BLUE)
    assert decoded.meta == {"format": fmt, "width": 64, "height": 48}


def test_greyscale_16bit_png_is_not_clipped_to_white(tmp_path: Path) -> None:
    row = struct.pack("<16H", *[1000] * 16) + struct.pack("<16H", *[20000] * 16)
    im = Image.frombytes("I;16", (32, 8), row * 8)
    assert im.getpixel((4, 4)) == 1000 and im.getpixel((28, 4)) == 20000
    path = tmp_path / "deep.png"
    im.save(path)
    out = payload(path)
    dark, bright = out.getpixel((4, 4)), out.getpixel((28, 4))
    assert dark[0] < 40 and bright[0] > 200  # contrast kept, not both saturated


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red ink
    assert close(payload(path).getpixel((8, 8)), RED, tol=40)


def exif_with(orientation: int | None = None, **tags: object) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    for key, value in tags.items():
        exif[int(key.removeprefix("t"), 16)] = value
    return exif


def test_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    # Stored 64 wide x 48 high with a green top-left corner; orientation 6 means "rotate
    # 90 degrees clockwise to display", so the viewer sees 48 x 64 with green at top-right.
    path = tmp_path / "rotated.jpg"
    quadrants((64, 48)).save(path, exif=exif_with(6), quality=95)
    decoded = decode(str(path), IndexConfig())
    out = decoded.segments[0].payload
    assert out.size == (48, 64)
    assert (decoded.meta["width"], decoded.meta["height"]) == (48, 64)
    assert close(out.getpixel((44, 3)), GREEN)  # stored top-left -> top-right
    assert close(out.getpixel((3, 3)), RED)  # stored bottom-left (red half) -> top-left
    assert close(out.getpixel((24, 60)), BLUE)  # stored right (blue) half -> bottom half


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow_exif_transpose(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / f"o{orientation}.png"
    quadrants((64, 48)).save(path, exif=exif_with(orientation))
    with Image.open(path) as im:
        expected = ImageOps.exif_transpose(im).convert("RGB")
    out = payload(path)
    assert out.size == expected.size
    assert out.tobytes() == expected.tobytes()
    if orientation > 1:
        assert out.tobytes() != quadrants((64, 48)).tobytes()


def test_orientation_with_jpeg_downscale(tmp_path: Path) -> None:
    path = tmp_path / "big_rotated.jpg"
    quadrants((2000, 1200)).save(path, exif=exif_with(8), quality=90)  # rotate 90 CCW to show
    decoded = decode(str(path), IndexConfig())
    out = decoded.segments[0].payload
    assert out.size == (round(1200 * MAX_SIDE / 2000), MAX_SIDE)
    assert (decoded.meta["width"], decoded.meta["height"]) == (1200, 2000)
    assert close(out.getpixel((5, out.height - 5)), GREEN)  # stored top-left -> bottom-left


def test_exif_date_camera_and_gps_are_extracted(tmp_path: Path) -> None:
    exif = exif_with(t10F="Canon ", t110="EOS 80D\x00")
    exif.get_ifd(0x8769)[0x9003] = "2021:06:05 14:03:22"  # DateTimeOriginal
    exif[0x0132] = "2022:01:01 00:00:00"  # DateTime (modified): must not win
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (Fraction(48), Fraction(51), Fraction(2964, 100))  # 48 deg 51' 29.64" N
    gps[3] = "W"
    gps[4] = (Fraction(2), Fraction(17), Fraction(4026, 100))  # 2 deg 17' 40.26" W
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (32, 24), RED).save(path, exif=exif)
    meta = decode(str(path), IndexConfig()).meta
    assert meta["taken_at"] == "2021-06-05T14:03:22"
    assert meta["camera"] == "Canon EOS 80D"
    assert meta["gps"]["lat"] == pytest.approx(48.8582333, abs=1e-6)
    assert meta["gps"]["lon"] == pytest.approx(-2.2945167, abs=1e-6)
    assert (meta["format"], meta["width"], meta["height"]) == ("jpeg", 32, 24)


def test_exif_fallbacks_offset_and_duplicated_make(tmp_path: Path) -> None:
    exif = exif_with(t10F="NIKON", t110="NIKON D750", t132="2019:12:31 23:59:59")
    exif.get_ifd(0x8769)[0x9003] = "2019:12:31 23:00:00"
    exif.get_ifd(0x8769)[0x9011] = "+02:00"
    path = tmp_path / "nikon.jpg"
    Image.new("RGB", (8, 8), RED).save(path, exif=exif)
    meta = decode(str(path), IndexConfig()).meta
    assert meta["camera"] == "NIKON D750"
    assert meta["taken_at"] == "2019-12-31T23:00:00+02:00"

    exif = exif_with(t132="2018:03:04 05:06:07")  # only DateTime
    path = tmp_path / "plain.jpg"
    Image.new("RGB", (8, 8), RED).save(path, exif=exif)
    meta = decode(str(path), IndexConfig()).meta
    assert meta["taken_at"] == "2018-03-04T05:06:07"
    assert "camera" not in meta and "gps" not in meta


def test_malformed_exif_is_left_out_not_fatal(tmp_path: Path) -> None:
    exif = exif_with(t132="0000:00:00 00:00:00", t10F=b"\xff\xfe")
    exif.get_ifd(0x8769)[0x9003] = "not a date"
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (Fraction(400), Fraction(0), Fraction(0))  # latitude out of range
    gps[3] = "E"
    gps[4] = (Fraction(10), Fraction(0), Fraction(0))
    path = tmp_path / "bad_exif.jpg"
    Image.new("RGB", (8, 8), GREEN).save(path, exif=exif)
    decoded = decode(str(path), IndexConfig())
    assert "taken_at" not in decoded.meta and "gps" not in decoded.meta
    assert close(decoded.segments[0].payload.getpixel((4, 4)), GREEN)

    # garbage bytes in the APP1 segment itself: the pixels still decode
    path = tmp_path / "garbage_exif.jpg"
    Image.new("RGB", (8, 8), BLUE).save(path, exif=b"Exif\x00\x00MM\x00*\x00\x00\xff\xff\xff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pillow's "Corrupt EXIF data" note
        decoded = decode(str(path), IndexConfig())
    assert decoded.meta == {"format": "jpeg", "width": 8, "height": 8}
    assert close(decoded.segments[0].payload.getpixel((4, 4)), BLUE)


def tiff_entry(tag: int, typ: int, count: int, value: bytes) -> bytes:
    return struct.pack(">HHI", tag, typ, count) + value.ljust(4, b"\0")


def test_exif_fields_of_the_wrong_type_are_left_out(tmp_path: Path) -> None:
    """Hand-built EXIF (Pillow refuses to write it): orientation and GPS degrees as text."""
    ascii_ = 2
    gps = [
        tiff_entry(1, ascii_, 2, b"N\0"),
        tiff_entry(2, ascii_, 4, b"abc\0"),
        tiff_entry(3, ascii_, 2, b"E\0"),
        tiff_entry(4, ascii_, 4, b"xyz\0"),
    ]
    gps_at = 8 + 2 + 2 * 12 + 4
    ifd0 = (
        struct.pack(">H", 2)
        + tiff_entry(0x0112, ascii_, 2, b"6\0")
        + tiff_entry(0x8825, 4, 1, struct.pack(">I", gps_at))
        + b"\0\0\0\0"
    )
    gps_ifd = struct.pack(">H", len(gps)) + b"".join(gps) + b"\0\0\0\0"
    blob = b"Exif\0\0MM\0*" + struct.pack(">I", 8) + ifd0 + gps_ifd
    path = tmp_path / "typed_wrong.jpg"
    quadrants((64, 48)).save(path, exif=blob, quality=95)
    with Image.open(path) as check:  # the file really carries these malformed values
        exif = check.getexif()
        assert exif[0x0112] == "6" and exif.get_ifd(0x8825)[2] == "abc"
    decoded = decode(str(path), IndexConfig())
    assert decoded.meta == {"format": "jpeg", "width": 64, "height": 48}
    assert close(decoded.segments[0].payload.getpixel((2, 2)), GREEN)  # text "6": not rotated


def test_truncated_jpeg_is_a_decode_error(tmp_path: Path) -> None:
    src = tmp_path / "full.jpg"
    Image.effect_noise((256, 256), 64).convert("RGB").save(src, quality=90)
    data = src.read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="truncated or corrupt image"):
        decode(str(path), IndexConfig())


def test_truncated_png_is_a_decode_error(tmp_path: Path) -> None:
    src = tmp_path / "full.png"
    Image.effect_noise((128, 128), 64).save(src)
    data = src.read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="truncated or corrupt image"):
        decode(str(path), IndexConfig())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_file_cut_inside_its_header_is_corrupt_not_foreign(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "full.img"
    Image.new("RGB", (32, 32), RED).save(src, format=fmt)
    path = tmp_path / "stub.img"
    path.write_bytes(src.read_bytes()[:12])
    with pytest.raises(DecodeError, match="^truncated or corrupt image: "):
        decode(str(path), IndexConfig())


def test_random_bytes_named_jpg_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "fake.jpg"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(DecodeError, match=r"not an image.*'\.jpg'"):
        decode(str(path), IndexConfig())


def test_png_named_jpg_decodes(tmp_path: Path) -> None:
    path = tmp_path / "liar.jpg"
    Image.new("RGB", (20, 10), BLUE).save(path, format="PNG")
    decoded = decode(str(path), IndexConfig())
    assert decoded.meta["format"] == "png"
    assert decoded.segments[0].payload.getpixel((10, 5)) == BLUE


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        decode(str(tmp_path / "nope.jpg"), IndexConfig())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with a token IDAT: a decompression bomb's shape."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_huge_header_rejected_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(12_000, 10_000))  # 120 Mpx; the file is under 100 bytes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # Pillow's 89 Mpx note
        with pytest.raises(DecodeError) as info:
            decode(str(path), IndexConfig())
    msg = str(info.value)
    assert "image too large: 12000 x 10000 pixels" in msg
    assert f"decompression-bomb limit {image_mod.MAX_PIXELS}" in msg


def test_pixel_limit_from_config_and_module(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "normal.png"
    Image.new("RGB", (100, 50), RED).save(path)
    cfg = IndexConfig()
    cfg.max_image_pixels = 4_999  # type: ignore[attr-defined]
    with pytest.raises(DecodeError, match=r"100 x 50 pixels \(decompression-bomb limit 4999\)"):
        decode(str(path), cfg)
    cfg.max_image_pixels = 5_000  # type: ignore[attr-defined]
    assert payload(path, cfg).size == (100, 50)

    monkeypatch.setattr(image_mod, "MAX_PIXELS", 1_000)
    with pytest.raises(DecodeError, match="decompression-bomb limit 1000"):
        decode(str(path), IndexConfig())


def test_pillow_bomb_error_and_warning_become_decode_errors(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "normal.png"
    Image.new("RGB", (100, 50), RED).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # 5000 px > 2 x 1000: Pillow errors
    with pytest.raises(DecodeError, match="image too large"):
        decode(str(path), IndexConfig())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4_000)  # 5000 px: Pillow only warns
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(DecodeError, match="image too large"):
            decode(str(path), IndexConfig())


def test_large_image_is_downscaled_keeping_aspect(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    quadrants((2000, 1000)).save(path)
    decoded = decode(str(path), IndexConfig())
    out = decoded.segments[0].payload
    assert max(out.size) == MAX_SIDE and out.size == (MAX_SIDE, MAX_SIDE // 2)
    assert (decoded.meta["width"], decoded.meta["height"]) == (2000, 1000)  # full size
    assert close(out.getpixel((10, 10)), GREEN)
    assert close(out.getpixel((MAX_SIDE - 10, MAX_SIDE // 2 - 10)), BLUE)


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.jpg"
    quadrants((3000, 1600)).save(path, quality=90)
    real_draft = JpegImagePlugin.JpegImageFile.draft
    decoded_sizes: list[tuple[int, int]] = []

    def spy(self, mode, size):  # record the size libjpeg will actually decode at
        result = real_draft(self, mode, size)
        decoded_sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    cfg = IndexConfig()
    cfg.max_image_side = 300  # type: ignore[attr-defined]
    decoded = decode(str(path), cfg)
    out = decoded.segments[0].payload
    assert out.size == (300, 160)
    assert decoded_sizes and 300 <= max(decoded_sizes[0]) <= 750  # 1/4 or 1/8 scale, not 3000
    assert (decoded.meta["width"], decoded.meta["height"]) == (3000, 1600)
    assert close(out.getpixel((5, 5)), GREEN)


def test_small_image_is_not_upscaled(tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", (7, 3), GREEN).save(path)
    assert payload(path).size == (7, 3)


def test_decode_file_routes_images_here(tmp_path: Path) -> None:
    path = tmp_path / "routed.webp"
    Image.new("RGB", (16, 16), RED).save(path, lossless=True)
    decoded = decode_file(str(path), IndexConfig())
    assert decoded.file_type == "image"
    assert decoded.segments[0].payload.getpixel((8, 8)) == RED


def test_heic_photo_decodes_through_the_engine_path(tmp_path: Path) -> None:
    """iPhone photos are HEIC: pillow-heif (a dependency) lets the same decoder read them."""
    import pillow_heif

    from searchengine.media import decode_file

    pillow_heif.register_heif_opener()
    path = tmp_path / "IMG_0001.HEIC"
    Image.new("RGB", (640, 480), (200, 30, 30)).save(path, format="HEIF")
    decoded = decode_file(str(path), IndexConfig())
    assert decoded.file_type == "image"
    assert decoded.meta["width"] == 640 and decoded.meta["height"] == 480
    out = decoded.segments[0].payload
    assert max(out.size) == MAX_SIDE and close(out.getpixel((10, 10)), (200, 30, 30))
