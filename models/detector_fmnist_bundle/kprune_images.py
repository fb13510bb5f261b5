"""Image files for kprune bundles: PNG, PGM/PPM and .npy without extra packages.

Used by run_bundle.py (the RTMaps component gets frames, not files). Pillow,
when installed, decodes everything including JPEG; without it the decoders
below read PNG (8/16-bit, any colour type, not interlaced), PGM/PPM and .npy.
Needs Python 3.8 or later and numpy; never imports TensorFlow or kprune.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

IMAGE_SUFFIXES = (".png", ".pgm", ".ppm", ".pnm", ".npy", ".jpg", ".jpeg", ".bmp")


class ImageError(ValueError):
    """An image file that cannot be found or decoded; the message says why."""


def read_image(path):
    """An image file as a uint8 H×W×C array (RGB or gray) and its channel order.

    PNG (8 or 16 bit, any colour type, not interlaced), PGM/PPM and .npy are
    read without extra packages; JPEG and BMP need Pillow.
    """
    path = str(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npy":
        pixels = np.load(path)
        return pixels, None
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        with Image.open(path) as picture:
            gray = picture.mode in ("1", "L", "LA", "I", "I;16", "F")
            picture = picture.convert("L" if gray else "RGB")
            pixels = np.asarray(picture, dtype=np.uint8)
        return (pixels[:, :, np.newaxis], "GRAY") if gray else (pixels, "RGB")
    with open(path, "rb") as stream:
        content = stream.read()
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        pixels = decode_png(content)
    elif content[:2] in (b"P5", b"P6"):
        pixels = _decode_pnm(content)
    else:
        raise ImageError("Cannot read %s without Pillow: pip install pillow." % path)
    return pixels, "GRAY" if pixels.shape[2] == 1 else "RGB"


def decode_png(content):
    """A PNG file's bytes → uint8 H×W×1 (gray) or H×W×3 (RGB); alpha is dropped."""
    position = 8
    header, palette, data = None, None, []
    while position < len(content):
        (length,) = struct.unpack(">I", content[position : position + 4])
        kind = content[position + 4 : position + 8]
        body = content[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            data.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ImageError("Not a PNG file: no IHDR chunk.")
    width, height, depth, colour, _, _, interlace = header
    supported_depths = (8,) if colour == 3 else (8, 16)
    if interlace or depth not in supported_depths:
        raise ImageError(
            "Reading an interlaced PNG or one of bit depth %d needs Pillow: pip install pillow." % depth
        )
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    pixel_bytes = samples * depth // 8
    raw = np.frombuffer(zlib.decompress(b"".join(data)), dtype=np.uint8)
    rows = _unfilter(raw.reshape(height, 1 + width * pixel_bytes), pixel_bytes)
    if depth == 16:
        rows = rows.reshape(height, -1, 2)[:, :, 0]  # keep the high byte
    pixels = rows.reshape(height, width, samples)
    if colour == 3:
        pixels = palette[pixels[:, :, 0]]
    elif colour in (4, 6):
        pixels = pixels[:, :, :-1]
    return np.ascontiguousarray(pixels)


def _unfilter(filtered, bpp):
    height, stride = filtered.shape[0], filtered.shape[1] - 1
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for row in range(height):
        kind, line = filtered[row, 0], filtered[row, 1:]
        if kind == 0:
            current = line.copy()
        elif kind == 1:  # Sub: running sums per byte position within a pixel, modulo 256
            current = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:
            current = (line + previous).astype(np.uint8)
        elif kind in (3, 4):
            current = _unfilter_serial(line, previous, bpp, kind)
        else:
            raise ImageError("Corrupt PNG: unknown filter type %d." % kind)
        out[row] = current
        previous = current
    return out


def _unfilter_serial(line, previous, bpp, kind):
    current = bytearray(line.tobytes())
    above = previous.tobytes()
    for i in range(len(current)):
        left = current[i - bpp] if i >= bpp else 0
        up = above[i]
        if kind == 3:  # Average
            current[i] = (current[i] + (left + up) // 2) & 0xFF
        else:  # Paeth
            upper_left = above[i - bpp] if i >= bpp else 0
            estimate = left + up - upper_left
            distances = (abs(estimate - left), abs(estimate - up), abs(estimate - upper_left))
            if distances[0] <= distances[1] and distances[0] <= distances[2]:
                predictor = left
            elif distances[1] <= distances[2]:
                predictor = up
            else:
                predictor = upper_left
            current[i] = (current[i] + predictor) & 0xFF
    return np.frombuffer(bytes(current), dtype=np.uint8)


def _decode_pnm(content):
    fields, position = [], 2
    while len(fields) < 3:
        while content[position : position + 1].isspace():
            position += 1
        if content[position : position + 1] == b"#":
            position = content.index(b"\n", position)
            continue
        end = position
        while not content[end : end + 1].isspace():
            end += 1
        fields.append(int(content[position:end]))
        position = end
    width, height, maximum = fields
    channels = 1 if content[:2] == b"P5" else 3
    dtype = np.uint8 if maximum < 256 else np.dtype(">u2")
    pixels = np.frombuffer(content, dtype=dtype, count=width * height * channels, offset=position + 1)
    if maximum != 255:
        pixels = np.round(pixels.astype(np.float64) * 255.0 / maximum)
    return pixels.astype(np.uint8).reshape(height, width, channels)


def find_images(paths):
    """Image files named in ``paths``; folders are searched recursively, in sorted order."""
    found = []
    for path in paths:
        path = str(path)
        if os.path.isdir(path):
            for root, folders, files in os.walk(path):
                folders.sort()
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_SUFFIXES):
                        found.append(os.path.join(root, name))
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise ImageError("%s does not exist." % path)
    return found
