"""Text for sequence models: the Vocab (token <-> id), tokenizers, corpus reading, the default corpus.

Plain Python. A vocabulary holds the two special tokens of the course notes,
``<EOS>`` (closes every sequence) and ``<UNK>`` (stands for any symbol never seen in
training), then every token of the training text in sorted order, so the same text
always gives the same ids.

Ids: ``<EOS>`` is 0, ``<UNK>`` is 1, the corpus tokens follow. The input id ``-1``
(``NO_TOKEN``) is the notes' x<1> = 0: "nothing seen yet", encoded as a zero vector.
"""

import os
import re
import sysconfig

__all__ = ["Vocab", "EOS", "UNK", "NO_TOKEN", "tokenize", "read_text", "read_corpus",
           "default_corpus", "default_text"]

EOS = "<EOS>"
UNK = "<UNK>"
NO_TOKEN = -1          # the input at the first step: x<1> = 0
LEVELS = ("char", "word")

# Words, and every other non-space symbol on its own ("don't" -> "don", "'", "t").
_WORD_RE = re.compile(r"\w+|[^\w\s]")


def tokenize(text, level):
    """The tokens of ``text``.

    Parameters
    ----------
    text : str
    level : {"char", "word"}
        Its characters, or its words and symbols.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        An unknown level.
    """
    if level == "char":
        return list(text)
    if level == "word":
        return _WORD_RE.findall(text)
    raise ValueError(f"level: expected one of 'char', 'word', got {level!r}")


class Vocab:
    """Token ↔ id map: ``<EOS>`` = 0, ``<UNK>`` = 1, then the tokens in sorted order.

    ``Vocab.build(texts, level="char")`` collects the tokens of training texts;
    ``Vocab(tokens, level)`` rebuilds one from its token list (as saved with a model).

    Parameters
    ----------
    tokens : iterable of str
        ``"<EOS>"``, ``"<UNK>"``, then the corpus tokens in sorted order, no
        duplicates.
    level : {"char", "word"}, default "char"
        Tokens are characters, or words and symbols.

    Attributes
    ----------
    tokens : list of str
        The tokens, by id.
    level : str
        ``"char"`` or ``"word"``.
    eos_id, unk_id : int
        0 and 1.

    Raises
    ------
    ValueError
        An unknown level, or tokens not in the order above.

    Examples
    --------
    >>> import seqcore
    >>> vocab = seqcore.Vocab.build(["anna", "bob"])
    >>> vocab.tokens
    ['<EOS>', '<UNK>', 'a', 'b', 'n', 'o']
    >>> vocab.encode("bax", eos=True), vocab.decode([3, 2, 0, 4])
    ([3, 2, 1, 0], 'ba')
    """

    def __init__(self, tokens, level="char"):
        if level not in LEVELS:
            raise ValueError(f"level: expected one of 'char', 'word', got {level!r}")
        tokens = list(tokens)
        if tokens[:2] != [EOS, UNK]:
            raise ValueError(f"tokens: expected {EOS!r} and {UNK!r} first, got {tokens[:2]!r}")
        if any(not isinstance(t, str) or not t for t in tokens):
            raise ValueError("tokens: expected non-empty strings")
        if len(set(tokens)) != len(tokens):
            raise ValueError("tokens: expected no duplicates")
        if tokens[2:] != sorted(tokens[2:]):
            raise ValueError("tokens: expected the corpus tokens in sorted order")
        self.level = level
        self.tokens = tokens
        self._ids = {t: i for i, t in enumerate(tokens)}
        self.eos_id = 0
        self.unk_id = 1

    @classmethod
    def build(cls, texts, level="char", *, min_count=1, max_size=None):
        """The vocabulary of ``texts``.

        Tokens seen fewer than ``min_count`` times, and beyond the ``max_size`` most
        frequent (ties broken alphabetically), are left out: they become ``<UNK>``.

        Parameters
        ----------
        texts : iterable of str
            One sequence each.
        level : {"char", "word"}, default "char"
            Tokens are characters, or words and symbols.
        min_count : int, default 1
            Keep tokens seen at least this often.
        max_size : int, optional
            At most this many entries, ``<EOS>`` and ``<UNK>`` included (at least 2).

        Returns
        -------
        seqcore.Vocab

        Raises
        ------
        ValueError
            An unknown level, or ``max_size`` below 2.
        """
        counts = {}
        for text in texts:
            for tok in tokenize(text, level):
                counts[tok] = counts.get(tok, 0) + 1
        for special in (EOS, UNK):
            counts.pop(special, None)
        kept = [t for t, n in counts.items() if n >= min_count]
        if max_size is not None:
            if max_size < 2:
                raise ValueError(f"max_size: expected at least 2 (<EOS> and <UNK>), got {max_size}")
            kept = sorted(kept, key=lambda t: (-counts[t], t))[: max_size - 2]
        return cls([EOS, UNK] + sorted(kept), level)

    def __len__(self):
        return len(self.tokens)

    def __contains__(self, token):
        return token in self._ids

    def __eq__(self, other):
        return isinstance(other, Vocab) and (self.level, self.tokens) == (other.level, other.tokens)

    def __repr__(self):
        return f"Vocab({len(self)} tokens, level={self.level!r})"

    def tokenize(self, text):
        return tokenize(text, self.level)

    def encode(self, text, *, eos=False):
        """The ids of ``text``'s tokens, unknown ones as ``<UNK>``.

        Parameters
        ----------
        text : str
            The text to encode.
        eos : bool, default False
            Append ``<EOS>``.

        Returns
        -------
        list of int
        """
        ids = [self._ids.get(tok, self.unk_id) for tok in self.tokenize(text)]
        if eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids):
        """The text of ``ids``, up to the first ``<EOS>`` (excluded).

        Parameters
        ----------
        ids : iterable of int
            Token ids.

        Returns
        -------
        str
            The tokens joined (by spaces at word level).
        """
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"ids: expected ids in [0, {len(self.tokens)}), got {i}")
            out.append(self.tokens[i])
        return ("" if self.level == "char" else " ").join(out)

    def config(self):
        return {"tokens": self.tokens, "level": self.level}

    @classmethod
    def from_config(cls, config):
        return cls(config["tokens"], config["level"])


def read_text(path):
    """The whole of a UTF-8 text file, as one string (a corpus of running text).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    IsADirectoryError
        ``path`` is a directory.
    ValueError
        The file is not UTF-8 or holds no text.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{path}: is a directory, not a text file") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise ValueError(f"{path}: no text (the file is empty)")
    return text


def read_corpus(path):
    """The non-empty lines of a UTF-8 text file, one training sequence each (trailing spaces stripped).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    list of str

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    IsADirectoryError
        ``path`` is a directory.
    ValueError
        The file is not UTF-8 or has no non-empty line.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip() for line in f]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no text (the corpus needs at least one non-empty line)")
    return lines


# ---------------------------------------------------------------- the default corpus

_DEF_RE = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z]\w*)", re.MULTILINE)


def default_corpus(min_len=3, max_len=16):
    """Names that ship with every Python: the functions and classes its standard library defines.

    Reads the source of the standard-library modules (no tests, no site-packages),
    keeps the names defined with ``def``/``class`` that are lowercase words or
    snake_case of ``min_len`` to ``max_len`` characters ("getattr", "urlopen",
    "get_terminal_size"; no private ``_names``), and returns them sorted, without
    duplicates. Falls back to the names of a few built-in modules when the library
    ships without sources. ``seqcore train`` trains on it without a corpus.

    Parameters
    ----------
    min_len : int, default 3
        The shortest name kept.
    max_len : int, default 16
        The longest name kept.

    Returns
    -------
    list of str
    """
    stdlib = sysconfig.get_paths()["stdlib"]
    names = set()
    word = re.compile(r"[a-z]+(?:_[a-z]+)*")

    def keep(name):
        return (min_len <= len(name) <= max_len and word.fullmatch(name)
                and not name.startswith("test"))
    try:
        entries = sorted(os.listdir(stdlib))
    except OSError:
        entries = []
    for entry in entries:
        if entry in ("test", "idlelib", "site-packages", "lib2to3", "tkinter", "turtledemo"):
            continue
        full = os.path.join(stdlib, entry)
        files = []
        if entry.endswith(".py"):
            files = [full]
        elif os.path.isfile(os.path.join(full, "__init__.py")):
            files = [os.path.join(root, f) for root, dirs, fs in os.walk(full)
                     if "test" not in os.path.relpath(root, full).split(os.sep)
                     for f in fs if f.endswith(".py")]
        for fname in files:
            try:
                with open(fname, encoding="utf-8", errors="replace") as f:
                    names.update(n for n in _DEF_RE.findall(f.read()) if keep(n))
            except OSError:
                continue
    if len(names) < 500:
        import builtins
        import math
        import string
        for mod in (builtins, math, string, os, re):
            names.update(n for n in dir(mod) if keep(n))
    return sorted(names)


def default_text(min_len=200):
    """English prose that ships with every Python: the docstrings of its standard library.

    The module, class and function docstrings of the top-level standard-library
    modules (``.py`` files, no packages or tests) of at least ``min_len`` characters,
    in file order, separated by blank lines: most of a megabyte of technical English
    (0.7 MB with Python 3.11) for ``seqcore train --stream`` without a corpus. The
    same Python gives the same text.

    Parameters
    ----------
    min_len : int, default 200
        The shortest docstring kept.

    Returns
    -------
    str
    """
    import ast
    stdlib = sysconfig.get_paths()["stdlib"]
    try:
        entries = sorted(f for f in os.listdir(stdlib) if f.endswith(".py"))
    except OSError:
        entries = []
    docs = []
    for entry in entries:
        try:
            with open(os.path.join(stdlib, entry), encoding="utf-8") as f:
                tree = ast.parse(f.read())
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        nodes = [tree] + [n for n in ast.walk(tree)
                          if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc and len(doc) >= min_len:
                docs.append(doc)
    if not docs:
        raise ValueError("default_text: this Python ships without the sources of its "
                         "standard library; give a text file")
    return "\n\n".join(docs) + "\n"
