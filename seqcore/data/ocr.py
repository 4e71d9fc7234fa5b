"""Rendered text lines for OCR: random strings drawn with the font that Pillow ships,
varied in size, letter spacing and vertical position, with pixel noise. The image's
pixel columns, left to right, are the input sequence of a transcriber.

Needs Pillow (``pip install 'seqcore[ocr]'``), imported when a line is rendered.
"""

import numpy as np

__all__ = ["CHARSET", "random_texts", "render_line", "ocr_dataset"]

CHARSET = "abcdefghijklmnopqrstuvwxyz0123456789"
HEIGHT = 32                 # pixels: the features of one column


def _pil():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as exc:
        raise ImportError("rendering text lines needs Pillow: pip install 'seqcore[ocr]'") \
            from exc
    return Image, ImageDraw, ImageFont


def random_texts(n, rng, *, charset=CHARSET, min_words=1, max_words=3, min_word=2,
                 max_word=7):
    """n random lines of ``min_words``-``max_words`` words of random characters."""
    out = []
    for _ in range(n):
        words = ["".join(rng.choice(list(charset), int(rng.integers(min_word, max_word + 1))))
                 for _ in range(int(rng.integers(min_words, max_words + 1)))]
        out.append(" ".join(words))
    return out


_FONTS = {}


def render_line(text, rng, *, height=HEIGHT, sizes=(14, 20), spacing=(0, 2), shift=3,
                noise=0.1):
    """The image of ``text`` as (width, height) float32 columns in [0, 1], ink high.

    The font size is drawn from ``sizes`` (inclusive), the extra space after each
    character from ``spacing`` (pixels), the baseline's shift from ``[-shift, shift]``,
    and each pixel gets Gaussian noise of standard deviation ``noise``.
    """
    Image, ImageDraw, ImageFont = _pil()
    size = int(rng.integers(sizes[0], sizes[1] + 1))
    if size not in _FONTS:
        _FONTS[size] = ImageFont.load_default(size)
    font = _FONTS[size]
    gaps = rng.integers(spacing[0], spacing[1] + 1, len(text))
    width = int(sum(font.getlength(ch) for ch in text) + gaps.sum()) + 8
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    top = (height - size) // 2 + int(rng.integers(-shift, shift + 1))
    x = 4.0
    for ch, gap in zip(text, gaps):
        draw.text((x, top), ch, fill=255, font=font)
        x += font.getlength(ch) + gap
    pixels = np.asarray(img, np.float32) / 255.0                  # (height, width)
    pixels = pixels + rng.normal(0.0, noise, pixels.shape).astype(np.float32)
    return np.ascontiguousarray(np.clip(pixels, 0.0, 1.0).T)      # (width, height) columns


def ocr_dataset(n, rng, **options):
    """(images, texts): n random lines and their renderings (``render_line``)."""
    render = {k: options.pop(k) for k in ("sizes", "spacing", "shift", "noise") if k in options}
    texts = random_texts(n, rng, **options)
    return [render_line(t, rng, **render) for t in texts], texts
