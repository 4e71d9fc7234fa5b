"""How each seqcore cell maps onto ONNX's RNN, GRU and LSTM operators, both ways.

seqcore keeps one matrix per layer and direction, the notes' ``W = [W_aa | W_ax]``
``(G*H, H + D)``, and one bias ``b (G*H,)`` (the GRU in reset-after form also has
``b_cc (H,)``; the LSTM with peepholes has ``p (3, H)``). An ONNX recurrent node
takes, per direction, ``W (G*H, D)`` (the input weights), ``R (G*H, H)`` (the
recurrent weights) and ``B (2*G*H,)``: an input bias and a recurrent bias, which
the operator adds.

The gate blocks (the rows of W, R and the biases) in each order:

| cell | seqcore | ONNX | notes |
|---|---|---|---|
| RNN | ``a`` | ``a`` | activation ``Tanh`` or ``Relu`` |
| GRU | ``(r, u, c)`` | ``(z, r, h)`` | ``z = 1 - Γu``: the u block is negated |
| LSTM | ``(u, f, c, o)`` | ``(i, o, f, c)`` | peepholes ``P = (p_u, p_o, p_f)`` |

ONNX's GRU update is ``H = (1 - z) h + z H_prev``, where the notes have
``c = Γu c̃ + (1 - Γu) c_prev``. So ``z = 1 - Γu = σ(-s_u)``, and negating the u
block's weights and bias maps one form onto the other exactly, as for PyTorch.
``linear_before_reset = 0`` is the notes' reset-before GRU, with the candidate
``tanh(W_cx x + W_cc (Γr * c_prev) + b_c)``. ``linear_before_reset = 1`` is the
reset-after form, ``tanh(W_cx x + b_c + Γr * (W_cc c_prev + b_cc))``: ``b_cc`` is the
recurrent bias ``Rb`` of the h block. Every other bias of seqcore sits in ``Wb``,
and ``Rb`` is zero.
"""

import numpy as np

__all__ = ["OP", "GATES", "to_onnx", "from_onnx"]

OP = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}

# ONNX block k is seqcore block ORDER[cell][k]
ORDER = {"rnn": [0], "gru": [1, 0, 2], "lstm": [0, 3, 1, 2]}
NEGATED = {"rnn": (), "gru": (1,), "lstm": ()}      # seqcore blocks whose sign flips


def _blocks(a, H, order):
    """The (G*H, ...) array ``a`` with its H-row blocks in ``order``."""
    return np.concatenate([a[k * H:(k + 1) * H] for k in order], axis=0)


def to_onnx(cell, W, b, H, *, b_cc=None, p=None):
    """One direction of one seqcore layer as ONNX's ``(W, R, B, P)``.

    Parameters
    ----------
    cell : {"rnn", "gru", "lstm"}
    W : numpy.ndarray
        ``(G*H, H + D)``, seqcore's ``[W_aa | W_ax]``.
    b : numpy.ndarray
        ``(G*H,)``.
    H : int
        Hidden units.
    b_cc : numpy.ndarray, optional
        ``(H,)``, the reset-after GRU's recurrent candidate bias.
    p : numpy.ndarray, optional
        ``(3, H)``, the LSTM's peepholes ``[p_u; p_f; p_o]``.

    Returns
    -------
    tuple
        ``W_onnx (G*H, D)``, ``R (G*H, H)``, ``B (2*G*H,)`` and ``P (3*H,)`` or None.
    """
    W = np.array(W, copy=True)
    b = np.array(b, copy=True)
    for k in NEGATED[cell]:
        W[k * H:(k + 1) * H] *= -1
        b[k * H:(k + 1) * H] *= -1
    order = ORDER[cell]
    W_onnx = _blocks(W[:, H:], H, order)
    R = _blocks(W[:, :H], H, order)
    Rb = np.zeros_like(b)
    if b_cc is not None:                                   # the h block is ONNX's last
        Rb[-H:] = b_cc
    B = np.concatenate([_blocks(b, H, order), Rb])
    P = None if p is None else np.concatenate([p[0], p[2], p[1]])
    return W_onnx, R, B, P


def from_onnx(cell, W_onnx, R, B, H, *, P=None, reset_after=False):
    """The inverse of ``to_onnx``: seqcore's ``(W, b, b_cc, p)`` of one direction.

    ONNX's two biases become one wherever the operator adds them: every block but the
    reset-after GRU's candidate, whose recurrent bias is ``b_cc``.
    """
    G = GATES[cell]
    inverse = np.argsort(ORDER[cell])
    Wb, Rb = B[:G * H], B[G * H:]
    W = np.concatenate([_blocks(R, H, inverse), _blocks(W_onnx, H, inverse)], axis=1)
    Wb, Rb = _blocks(Wb, H, inverse), _blocks(Rb, H, inverse)
    b_cc = None
    if cell == "gru":
        c = slice(2 * H, 3 * H)                            # seqcore's candidate block
        b = Wb.copy()
        b[:2 * H] += Rb[:2 * H]
        if reset_after:
            b_cc = Rb[c].copy()
        else:                                              # added outside the reset
            b[c] += Rb[c]
    else:
        b = Wb + Rb
    for k in NEGATED[cell]:
        W[k * H:(k + 1) * H] *= -1
        b[k * H:(k + 1) * H] *= -1
    p = None if P is None else np.stack([P[:H], P[2 * H:], P[H:2 * H]])
    return W, b, b_cc, p
