"""The NumPy reference (slow path): the readable statement of every cell's math.

This is the oracle the compiled core (csrc/) is tested against, and the backend
``backend="numpy"`` runs. It follows the course notes literally: one step at a
time, the gates computed from the concatenation ``[a<t-1>, x<t>]`` with the
concatenated weights ``W = [W_aa | W_ax]``. The Cython kernels have the same
names and signatures (outputs first, then inputs, then flags) but a different
inner structure (split GEMMs, fused gate passes), so agreement means something.

Legend: T time steps, B batch, D input features, H hidden units,
G gate blocks (RNN 1, GRU 3, LSTM 4).

Every kernel runs one layer in one direction, forward in time. Shared contract:

* ``x (T, B, D)``, ``W (G*H, H + D)``, ``b (G*H,)``, ``lengths (B,)`` int64 with
  ``1 <= lengths[b] <= T``. Step ``t`` of sequence ``b`` is *active* when
  ``t < lengths[b]``; an inactive step keeps the state as it was.
* A forward kernel's ``W`` may also be a ``seqcore.reference.quant.Int8Rows``: a
  quantized layer's step of one token, its products int8 x int8.
* States are stored for all steps, ``a (T+1, B, H)``: ``a[0]`` is the initial
  state and ``a[t+1]`` the state after step ``t`` (the notes' ``a<t+1>``).
* Forward kernels overwrite their outputs. Backward kernels overwrite ``dx``,
  the initial-state gradients and the diagnostics ``da_sq``/``dc_sq``, and *add*
  into the parameter gradients ``dW``, ``db``, ``db_cc``, ``dp``.
* ``dy (T, B, H)`` is the gradient of the cost w.r.t. the outputs; it is ignored
  at inactive steps (the output there is the constant 0). ``da_T`` is the
  gradient w.r.t. the final state ``a[T]``.
* ``da_sq[t, b]`` receives ``||dC/da<t+1>||^2`` over the units of sequence ``b``:
  the total derivative that backpropagation through time carries into step
  ``t``, from the output at ``t`` and from all later steps (0 at inactive
  steps). ``dc_sq`` is the same for the LSTM's memory cell.
"""

import numpy as np

__all__ = [
    "rnn_forward", "rnn_backward",
    "gru_forward", "gru_backward",
    "lstm_forward", "lstm_backward",
]


def sigmoid(z):
    return 0.5 * (np.tanh(0.5 * z) + 1)  # the same function, without exp overflow


def _times(W, *parts):
    """``[parts side by side] @ W.T``: a step's pre-activations. ``W`` is an array, or
    a quantized layer's ``seqcore.reference.quant.Int8Rows`` (its step of one token,
    each part quantized on its own)."""
    if isinstance(W, np.ndarray):
        return np.concatenate(parts, axis=1) @ W.T
    return W.times(*parts)


def _active(t, lengths):
    """(B, 1) boolean column: which sequences still run at step t."""
    return (t < lengths)[:, None]


# ----------------------------------------------------------------------------- RNN

def rnn_forward(a, x, a0, W, b, lengths, relu):
    """Vanilla RNN, forward through time.

        a<t> = g(W [a<t-1>, x<t>] + b),   g = tanh, or relu when relu

    Parameters
    ----------
    a : numpy.ndarray
        Out: ``(T+1, B, H)``, the states; ``a[0] = a0``.
    x : numpy.ndarray
        ``(T, B, D)``.
    a0 : numpy.ndarray
        ``(B, H)``, the initial state.
    W : numpy.ndarray
        ``(H, H+D)``, ``[W_aa | W_ax]``.
    b : numpy.ndarray
        ``(H,)``.
    lengths : numpy.ndarray
        ``(B,)`` int64, each in ``[1, T]``: step ``t`` of sequence ``b`` runs when
        ``t < lengths[b]``.
    relu : bool
        ``g`` is relu instead of tanh.
    """
    T = x.shape[0]
    a[0] = a0
    for t in range(T):
        z = _times(W, a[t], x[t]) + b                           # (B, H)
        a_next = np.maximum(z, 0) if relu else np.tanh(z)
        a[t + 1] = np.where(_active(t, lengths), a_next, a[t])


def rnn_backward(dx, da0, dW, db, da_sq, dy, da_T, x, a, W, lengths, relu):
    """Backpropagation through time for ``rnn_forward``.

    Parameters
    ----------
    dx : numpy.ndarray
        Out: ``(T, B, D)``.
    da0 : numpy.ndarray
        Out: ``(B, H)``, the gradient with respect to ``a0``.
    dW : numpy.ndarray
        Accumulates: ``(H, H+D)``.
    db : numpy.ndarray
        Accumulates: ``(H,)``.
    da_sq : numpy.ndarray
        Out: ``(T, B)``, ``||dC/da<t+1>||^2`` per sequence.
    dy : numpy.ndarray
        ``(T, B, H)``, the gradient with respect to the outputs.
    da_T : numpy.ndarray
        ``(B, H)``, the gradient with respect to the final state.
    x, a, W, lengths, relu
        As in ``rnn_forward``.
    """
    T = x.shape[0]
    H = a.shape[2]
    da = da_T.copy()                                            # dC/da<t+1>
    for t in reversed(range(T)):
        active = _active(t, lengths)
        da = da + np.where(active, dy[t], 0)
        da_sq[t] = np.where(active[:, 0], (da * da).sum(axis=1), 0)
        if relu:
            dz = da * (a[t + 1] > 0)                            # backprop through relu
        else:
            dz = da * (1 - a[t + 1] ** 2)                       # backprop through tanh
        dz = np.where(active, dz, 0)
        dW += dz.T @ np.concatenate([a[t], x[t]], axis=1)
        db += dz.sum(axis=0)
        d_ax = dz @ W                                           # (B, H+D)
        dx[t] = d_ax[:, H:]
        da = np.where(active, d_ax[:, :H], da)                  # inactive: state was copied
    da0[...] = da


# ----------------------------------------------------------------------------- GRU

def gru_forward(c, gates, hc, x, c0, W, b, b_cc, lengths, reset_after):
    """GRU, forward through time. Row blocks of ``W`` and ``b``: ``(r, u, c)``.

    ``reset_after=False`` (the notes, Cho et al. 2014):

        gamma_r = sigma(W_r [c<t-1>, x<t>] + b_r)
        gamma_u = sigma(W_u [c<t-1>, x<t>] + b_u)
        c_tilde = tanh(W_c [gamma_r * c<t-1>, x<t>] + b_c)
        c<t>    = gamma_u * c_tilde + (1 - gamma_u) * c<t-1>          (a<t> = c<t>)

    ``reset_after=True`` (PyTorch, cuDNN, Keras), with ``W_c = [W_cc | W_cx]``:

        c_tilde = tanh(W_cx x<t> + b_c + gamma_r * (W_cc c<t-1> + b_cc))

    Parameters
    ----------
    c : numpy.ndarray
        Out: ``(T+1, B, H)``, the states; ``c[0] = c0``.
    gates : numpy.ndarray
        Out: ``(T, B, 3H)``, ``[gamma_r, gamma_u, c_tilde]``.
    hc : numpy.ndarray
        Out: ``(T, B, H)``, what the candidate saw of the old state:
        ``gamma_r * c<t-1>`` (reset before) or ``W_cc c<t-1> + b_cc`` (reset after).
    x : numpy.ndarray
        ``(T, B, D)``.
    c0 : numpy.ndarray
        ``(B, H)``, the initial state.
    W : numpy.ndarray
        ``(3H, H+D)``.
    b : numpy.ndarray
        ``(3H,)``.
    b_cc : numpy.ndarray
        ``(H,)``, used only when ``reset_after``.
    lengths : numpy.ndarray
        ``(B,)`` int64, each in ``[1, T]``: step ``t`` of sequence ``b`` runs when
        ``t < lengths[b]``.
    reset_after : bool
        The form of the candidate.
    """
    T = x.shape[0]
    H = c0.shape[1]
    W_r, W_u, W_c = W[:H], W[H:2 * H], W[2 * H:]
    b_r, b_u, b_c = b[:H], b[H:2 * H], b[2 * H:]
    c[0] = c0
    for t in range(T):
        c_prev = c[t]
        gamma_r = sigmoid(_times(W_r, c_prev, x[t]) + b_r)     # W_r [c<t-1>, x<t>] + b_r
        gamma_u = sigmoid(_times(W_u, c_prev, x[t]) + b_u)
        if reset_after:
            hc[t] = _times(W_c[:, :H], c_prev) + b_cc
            c_tilde = np.tanh(_times(W_c[:, H:], x[t]) + b_c + gamma_r * hc[t])
        else:
            hc[t] = gamma_r * c_prev
            c_tilde = np.tanh(_times(W_c, hc[t], x[t]) + b_c)
        c_next = gamma_u * c_tilde + (1 - gamma_u) * c_prev
        gates[t] = np.concatenate([gamma_r, gamma_u, c_tilde], axis=1)
        c[t + 1] = np.where(_active(t, lengths), c_next, c_prev)


def gru_backward(dx, dc0, dW, db, db_cc, da_sq, dy, dc_T, x, c, gates, hc, W,
                 lengths, reset_after):
    """Backpropagation through time for ``gru_forward``.

    Parameters
    ----------
    dx : numpy.ndarray
        Out: ``(T, B, D)``.
    dc0 : numpy.ndarray
        Out: ``(B, H)``, the gradient with respect to ``c0``.
    dW : numpy.ndarray
        Accumulates: ``(3H, H+D)``.
    db : numpy.ndarray
        Accumulates: ``(3H,)``.
    db_cc : numpy.ndarray
        Accumulates: ``(H,)``, only when ``reset_after``.
    da_sq : numpy.ndarray
        Out: ``(T, B)``, ``||dC/da<t+1>||^2`` per sequence.
    dy : numpy.ndarray
        ``(T, B, H)``, the gradient with respect to the outputs.
    dc_T : numpy.ndarray
        ``(B, H)``, the gradient with respect to the final state.
    x, c, gates, hc, W, lengths, reset_after
        As in ``gru_forward``.
    """
    T = x.shape[0]
    H = c.shape[2]
    W_c = W[2 * H:]
    dc = dc_T.copy()                                            # dC/dc<t+1>
    for t in reversed(range(T)):
        active = _active(t, lengths)
        dc = dc + np.where(active, dy[t], 0)
        da_sq[t] = np.where(active[:, 0], (dc * dc).sum(axis=1), 0)
        dc_act = np.where(active, dc, 0)      # inactive steps pass dc through untouched
        c_prev = c[t]
        gamma_r, gamma_u, c_tilde = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:]
        # c<t> = gamma_u * c_tilde + (1 - gamma_u) * c<t-1>
        dc_tilde = dc_act * gamma_u
        dgamma_u = dc_act * (c_tilde - c_prev)
        dc_prev = dc_act * (1 - gamma_u)
        dz_c = dc_tilde * (1 - c_tilde ** 2)                    # backprop through tanh
        dz_u = dgamma_u * gamma_u * (1 - gamma_u)               # backprop through sigma
        if reset_after:
            # z_c = W_cx x + b_c + gamma_r * hc,   hc = W_cc c<t-1> + b_cc
            dgamma_r = dz_c * hc[t]
            dhc = dz_c * gamma_r
            dz_r = dgamma_r * gamma_r * (1 - gamma_r)
            dz = np.concatenate([dz_r, dz_u, dz_c], axis=1)     # gates' input parts
            dz_h = np.concatenate([dz_r, dz_u, dhc], axis=1)    # gates' recurrent parts
            dW[:, H:] += dz.T @ x[t]
            dW[:, :H] += dz_h.T @ c_prev
            db += dz.sum(axis=0)
            db_cc += dhc.sum(axis=0)
            dx[t] = dz @ W[:, H:]
            dc_prev = dc_prev + dz_h @ W[:, :H]
        else:
            # z_c = W_c [gamma_r * c<t-1>, x] + b_c
            d_rcx = dz_c @ W_c                                  # (B, H+D)
            dW[2 * H:] += dz_c.T @ np.concatenate([hc[t], x[t]], axis=1)
            drc = d_rcx[:, :H]                                  # d(gamma_r * c<t-1>)
            dgamma_r = drc * c_prev
            dc_prev = dc_prev + drc * gamma_r
            dz_r = dgamma_r * gamma_r * (1 - gamma_r)
            dz_ru = np.concatenate([dz_r, dz_u], axis=1)        # (B, 2H)
            dW[:2 * H] += dz_ru.T @ np.concatenate([c_prev, x[t]], axis=1)
            d_cx = dz_ru @ W[:2 * H]
            dc_prev = dc_prev + d_cx[:, :H]
            dx[t] = d_cx[:, H:] + d_rcx[:, H:]
            db += np.concatenate([dz_r, dz_u, dz_c], axis=1).sum(axis=0)
        dc = np.where(active, dc_prev, dc)
    dc0[...] = dc


# ---------------------------------------------------------------------------- LSTM

def lstm_forward(a, c, gates, x, a0, c0, W, b, p, lengths, peephole):
    """LSTM, forward through time. Row blocks of ``W`` and ``b``: ``(u, f, c, o)``.

        gamma_u = sigma(W_u [a<t-1>, x<t>] + b_u + p_u * c<t-1>)
        gamma_f = sigma(W_f [a<t-1>, x<t>] + b_f + p_f * c<t-1>)
        c_tilde = tanh(W_c [a<t-1>, x<t>] + b_c)
        c<t>    = gamma_u * c_tilde + gamma_f * c<t-1>
        gamma_o = sigma(W_o [a<t-1>, x<t>] + b_o + p_o * c<t>)
        a<t>    = gamma_o * tanh(c<t>)

    The peephole terms ``p * c`` exist only when ``peephole``.

    Parameters
    ----------
    a, c : numpy.ndarray
        Out: ``(T+1, B, H)``, the states and the memory cells; ``a[0] = a0``,
        ``c[0] = c0``.
    gates : numpy.ndarray
        Out: ``(T, B, 4H)``, ``[gamma_u, gamma_f, c_tilde, gamma_o]``.
    x : numpy.ndarray
        ``(T, B, D)``.
    a0, c0 : numpy.ndarray
        ``(B, H)``, the initial state.
    W : numpy.ndarray
        ``(4H, H+D)``.
    b : numpy.ndarray
        ``(4H,)``.
    p : numpy.ndarray
        ``(3, H)``, ``[p_u; p_f; p_o]``, used only when ``peephole``.
    lengths : numpy.ndarray
        ``(B,)`` int64, each in ``[1, T]``: step ``t`` of sequence ``b`` runs when
        ``t < lengths[b]``.
    peephole : bool
        Use the peephole terms.
    """
    T = x.shape[0]
    H = a0.shape[1]
    a[0] = a0
    c[0] = c0
    for t in range(T):
        a_prev, c_prev = a[t], c[t]
        z = _times(W, a_prev, x[t]) + b                         # (B, 4H)
        z_u, z_f, z_c, z_o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
        if peephole:
            z_u = z_u + p[0] * c_prev
            z_f = z_f + p[1] * c_prev
        gamma_u = sigmoid(z_u)
        gamma_f = sigmoid(z_f)
        c_tilde = np.tanh(z_c)
        c_next = gamma_u * c_tilde + gamma_f * c_prev
        if peephole:
            z_o = z_o + p[2] * c_next
        gamma_o = sigmoid(z_o)
        a_next = gamma_o * np.tanh(c_next)
        gates[t] = np.concatenate([gamma_u, gamma_f, c_tilde, gamma_o], axis=1)
        active = _active(t, lengths)
        a[t + 1] = np.where(active, a_next, a_prev)
        c[t + 1] = np.where(active, c_next, c_prev)


def lstm_backward(dx, da0, dc0, dW, db, dp, da_sq, dc_sq, dy, da_T, dc_T,
                  x, a, c, gates, W, p, lengths, peephole):
    """Backpropagation through time for ``lstm_forward``.

    Parameters
    ----------
    dx : numpy.ndarray
        Out: ``(T, B, D)``.
    da0, dc0 : numpy.ndarray
        Out: ``(B, H)``, the gradients with respect to ``a0`` and ``c0``.
    dW : numpy.ndarray
        Accumulates: ``(4H, H+D)``.
    db : numpy.ndarray
        Accumulates: ``(4H,)``.
    dp : numpy.ndarray
        Accumulates: ``(3, H)``, only when ``peephole``.
    da_sq, dc_sq : numpy.ndarray
        Out: ``(T, B)``, ``||dC/da<t+1>||^2`` and ``||dC/dc<t+1>||^2`` per sequence.
    dy : numpy.ndarray
        ``(T, B, H)``, the gradient with respect to the outputs.
    da_T, dc_T : numpy.ndarray
        ``(B, H)``, the gradients with respect to the final state.
    x, a, c, gates, W, p, lengths, peephole
        As in ``lstm_forward``.
    """
    T = x.shape[0]
    H = a.shape[2]
    da = da_T.copy()                                            # dC/da<t+1>
    dc = dc_T.copy()                                            # dC/dc<t+1>, partial
    for t in reversed(range(T)):
        active = _active(t, lengths)
        a_prev, c_prev, c_t = a[t], c[t], c[t + 1]
        gamma_u, gamma_f = gates[t, :, :H], gates[t, :, H:2 * H]
        c_tilde, gamma_o = gates[t, :, 2 * H:3 * H], gates[t, :, 3 * H:]
        da = da + np.where(active, dy[t], 0)
        da_sq[t] = np.where(active[:, 0], (da * da).sum(axis=1), 0)
        # a<t> = gamma_o * tanh(c<t>)
        tanh_c = np.tanh(c_t)
        dgamma_o = da * tanh_c
        dz_o = dgamma_o * gamma_o * (1 - gamma_o)               # backprop through sigma
        dc_t = dc + da * gamma_o * (1 - tanh_c ** 2)            # backprop through tanh
        if peephole:
            dc_t = dc_t + dz_o * p[2]                           # c<t> peeks into gamma_o
        dc_sq[t] = np.where(active[:, 0], (dc_t * dc_t).sum(axis=1), 0)
        # c<t> = gamma_u * c_tilde + gamma_f * c<t-1>
        dgamma_u = dc_t * c_tilde
        dgamma_f = dc_t * c_prev
        dc_tilde = dc_t * gamma_u
        dc_prev = dc_t * gamma_f
        dz_u = dgamma_u * gamma_u * (1 - gamma_u)
        dz_f = dgamma_f * gamma_f * (1 - gamma_f)
        dz_c = dc_tilde * (1 - c_tilde ** 2)
        dz = np.concatenate([dz_u, dz_f, dz_c, dz_o], axis=1)  # (B, 4H)
        dz = np.where(active, dz, 0)
        if peephole:
            dz_u, dz_f, dz_o = dz[:, :H], dz[:, H:2 * H], dz[:, 3 * H:]
            dc_prev = dc_prev + dz_u * p[0] + dz_f * p[1]
            dp[0] += (dz_u * c_prev).sum(axis=0)
            dp[1] += (dz_f * c_prev).sum(axis=0)
            dp[2] += (dz_o * c_t).sum(axis=0)
        dW += dz.T @ np.concatenate([a_prev, x[t]], axis=1)
        db += dz.sum(axis=0)
        d_ax = dz @ W                                           # (B, H+D)
        dx[t] = d_ax[:, H:]
        da = np.where(active, d_ax[:, :H], da)
        dc = np.where(active, dc_prev, dc)
    da0[...] = da
    dc0[...] = dc
