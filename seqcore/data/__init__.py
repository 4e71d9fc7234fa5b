"""Data: vocabularies and text (``text``), and how token sequences become padded
batches (``batching``)."""

from .batching import (BATCHINGS, DEFAULT_BATCHING, check_batching,  # noqa: F401
                       index_batches, pad_features, pad_ids, step_mask)
from .text import (EOS, NO_TOKEN, UNK, Vocab, default_corpus, default_text,  # noqa: F401
                   read_corpus, read_text, tokenize)

__all__ = ["Vocab", "EOS", "UNK", "NO_TOKEN", "tokenize", "read_corpus", "read_text",
           "default_corpus", "default_text", "BATCHINGS", "DEFAULT_BATCHING",
           "check_batching", "index_batches", "pad_features", "pad_ids", "step_mask"]
