"""Rendered text lines (seqcore.data.ocr): columns of the right height, ink where the
text is, reproducible from a seed, and texts of the charset."""
import numpy as np

from seqcore.data.ocr import CHARSET, HEIGHT, ocr_dataset, random_texts, render_line


def test_a_line_is_its_pixel_columns(rng):
    clean = render_line("hello 42", np.random.default_rng(0), noise=0.0, shift=0)
    assert clean.dtype == np.float32 and clean.shape[1] == HEIGHT
    assert clean.shape[0] > 8 * 5                      # wider than 5 pixels a character
    ink = clean.max(axis=1) > 0.5
    assert ink.any() and not ink[:3].any() and not ink[-3:].any()   # margins stay blank
    wider = render_line("hello 42", np.random.default_rng(0), noise=0.0, shift=0,
                        sizes=(20, 20))
    narrow = render_line("hello 42", np.random.default_rng(0), noise=0.0, shift=0,
                         sizes=(12, 12))
    assert wider.shape[0] > narrow.shape[0]
    noisy = render_line("hello 42", rng)
    assert 0.0 <= noisy.min() and noisy.max() <= 1.0


def test_the_dataset_is_reproducible_and_of_the_charset():
    a = ocr_dataset(5, np.random.default_rng(3), noise=0.05)
    b = ocr_dataset(5, np.random.default_rng(3), noise=0.05)
    assert a[1] == b[1] and all(np.array_equal(x, y) for x, y in zip(a[0], b[0]))
    texts = random_texts(50, np.random.default_rng(1))
    assert all(set(t) <= set(CHARSET + " ") and t == t.strip() for t in texts)
