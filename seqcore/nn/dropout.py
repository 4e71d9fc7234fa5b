"""Dropout (Srivastava et al. 2014), inverted as in PyTorch, and the training switch it obeys.

In training mode every element of x is kept with probability 1 - p and scaled by
1 / (1 - p), so the expected output equals the input and evaluation needs no
rescaling:

    m  ~ Bernoulli(1 - p)   (one draw per element, from the layer's ``generator``)
    y  = x * m / (1 - p)                      forward
    dx = dy * m / (1 - p)                     backward (the same mask)

In evaluation mode (``eval()``), and whenever p = 0, y = x. Masks come from a NumPy
``Generator`` the layer holds (``generator``); a model gives all its dropout layers
one seeded generator, so a seed reproduces a run and a checkpoint can store its state.

``Switchable`` is the PyTorch-style switch shared by every layer and model:
``training`` (True after construction, as in PyTorch), ``train(mode=True)`` and
``eval()``, both returning the object.
"""

import numpy as np

from .. import _validation as V

__all__ = ["Dropout", "check_dropout"]


def check_dropout(p, name="dropout"):
    """p as a float in [0, 1), else a ValueError naming the argument."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a probability in [0, 1), got {type(p).__name__}")
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {p!r}")
    return p


def dropout_mask(generator, shape, p, dtype):
    """m / (1 - p) of shape ``shape``: 0 with probability p, else 1 / (1 - p)."""
    keep = generator.random(shape, dtype=np.float32) >= np.float32(p)
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


class Switchable:
    """The training switch: ``training``, ``train(mode=True)``, ``eval()`` (PyTorch's names)."""

    training = True

    def train(self, mode=True):
        """Switch to training mode (dropout on) or to evaluation mode.

        Parameters
        ----------
        mode : bool, default True
            True for training mode, False for evaluation mode.

        Returns
        -------
        self
        """
        self.training = V.check_bool(mode, "mode")
        for child in self._children():
            child.train(self.training)
        return self

    def eval(self):
        """Switch to evaluation mode: dropout passes its input through.

        Returns
        -------
        self
        """
        return self.train(False)

    def _children(self):
        return ()


class Dropout(Switchable):
    """Inverted dropout over arrays of any shape.

    In training mode each element is dropped with probability ``p`` and the kept ones
    are scaled by ``1 / (1 - p)``; in evaluation mode (``eval()``) the input passes
    through. No parameters (``params`` and ``grads`` are empty, so it sits among a
    model's layers).

    Parameters
    ----------
    p : float, default 0.5
        The probability of dropping, in ``[0, 1)``.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The masks' dtype.
    seed : int, optional
        Seed of the masks' generator (when ``generator`` is None).
    generator : numpy.random.Generator, optional
        The masks' random source, shared with other layers.

    Raises
    ------
    TypeError
        ``p`` not a number.
    ValueError
        ``p`` outside ``[0, 1)``.
    """

    def __init__(self, p=0.5, *, dtype=np.float32, seed=None, generator=None):
        self.p = check_dropout(p, "p")
        self.dtype = V.check_dtype(dtype)
        if generator is None:
            if seed is not None:
                seed = V.check_int(seed, "seed", minimum=0)
            generator = np.random.default_rng(seed)
        self.generator = generator
        self.params, self.grads = {}, {}
        self._mask = None

    def zero_grad(self):
        pass

    def forward(self, x):
        """Drop elements of ``x`` with a fresh mask (training mode), or return ``x``.

        Parameters
        ----------
        x : numpy.ndarray
            Any shape.

        Returns
        -------
        numpy.ndarray
            Shaped like ``x``.
        """
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        mask = dropout_mask(self.generator, x.shape, self.p, self.dtype)   # m / (1 - p)
        self._mask = mask             # for backward (this call's mask, whatever others do)
        return x * mask

    def backward(self, dy):
        """The gradient passes where the element was kept, scaled alike.

        Parameters
        ----------
        dy : numpy.ndarray
            Shaped like the last ``forward``'s output.

        Returns
        -------
        numpy.ndarray
            ``dx``, shaped like ``dy``.
        """
        return dy if self._mask is None else dy * self._mask

    def config(self):
        return {"p": self.p}

    def __repr__(self):
        return f"Dropout(p={self.p})"
