"""What the notes claim, made visible: gradient flow through time and gate activity.

Legend: T time steps, B batch, H hidden units, L layers, dirs directions;
k = l * dirs + d indexes layer l, direction d (the row order of the state).

Both functions read what the layer already keeps: BPTT records the squared norm of
the gradient it carries at every step (``layer.last_grad_sq``, filled by the kernels
at the cost of one multiply-add per element, in both backends), and forward keeps
the gate activations for backward.
"""

import numpy as np

from .nn.recurrent import reverse_padded

__all__ = ["gradient_norms", "gate_stats", "GATE_NAMES"]

# Gate blocks of each cell's cached activations, in the gate order of docs/spec.md §Cells; the
# candidate c~ is not a gate and is not reported.
GATE_NAMES = {"gru": ("gamma_r", "gamma_u"), "lstm": ("gamma_u", "gamma_f", None, "gamma_o"),
              "rnn": ()}


def gradient_norms(layer, of="a"):
    """The norm of ``dC/da⟨t⟩`` at every step, recorded by the layer's last ``backward``.

    ``dC/da⟨t+1⟩`` is the total derivative backpropagation through time carries into
    step ``t+1`` (0-based ``t``): from the output at ``t``, from all later steps and
    from the layers above. Both backends record it. Steps past a sequence's length
    contribute 0.

    Parameters
    ----------
    layer : seqcore.RNN, seqcore.GRU or seqcore.LSTM
        A layer after ``forward`` and ``backward``.
    of : {"a", "c"}, default "a"
        The state, or the LSTM's memory cell ``c⟨t+1⟩``.

    Returns
    -------
    numpy.ndarray
        ``(T, L*dirs)``: entry ``[t, k]`` is ``‖dC/da⟨t+1⟩‖`` over batch and units, for
        layer and direction ``k``.

    Raises
    ------
    ValueError
        No ``backward`` has run, or ``of="c"`` for a cell without a memory cell.
    """
    sq = getattr(layer, "last_grad_sq", None)
    if sq is None:
        raise ValueError("gradient_norms: run forward() and backward() on the layer first")
    if of not in sq:
        raise ValueError(f"gradient_norms: of={of!r} is not available for "
                         f"{type(layer).__name__}; expected one of {sorted(sq)}")
    return np.sqrt(sq[of].sum(axis=2))


def gate_stats(layer, low=0.05, high=0.95):
    """Per-step gate activity of the layer's most recent ``forward``.

    Only active steps (``t < lengths[b]``) count; a step where no sequence is active
    reports NaN.

    Parameters
    ----------
    layer : seqcore.GRU or seqcore.LSTM
        A layer after ``forward`` (an RNN has no gates: an empty dict).
    low : float, default 0.05
        Activations below count as saturated.
    high : float, default 0.95
        Activations above count as saturated.

    Returns
    -------
    dict
        ``{gate: {"mean": (T, L*dirs), "saturated": (T, L*dirs)}}`` for each gate of
        the cell (GRU: ``gamma_r``, ``gamma_u``; LSTM: ``gamma_u``, ``gamma_f``,
        ``gamma_o``): the mean activation over batch and units, and the fraction of
        activations below ``low`` or above ``high``.

    Raises
    ------
    ValueError
        No ``forward`` has run.
    """
    cache = getattr(layer, "_cache", None)
    if cache is None:
        raise ValueError("gate_stats: run forward() on the layer first")
    names = GATE_NAMES[layer._cell]
    T, B, H = cache["T"], cache["B"], layer.hidden_size
    dirs = layer.num_directions
    K = layer.num_layers * dirs
    active = np.arange(T)[:, None] < cache["lens"][None, :]           # (T, B)
    count = active.sum(axis=1) * H                                     # (T,)
    out = {n: {"mean": np.full((T, K), np.nan), "saturated": np.full((T, K), np.nan)}
           for n in names if n}
    if not names:
        return out
    for k, layer_cache in enumerate(cache["caches"]):
        gates = layer._gate_activations(layer_cache)                   # (T, B, G*H)
        if k % dirs == 1:
            gates = reverse_padded(gates, cache["rev"])                      # back to time order
        for g, name in enumerate(names):
            if not name:
                continue
            block = gates[:, :, g * H:(g + 1) * H].astype(np.float64)
            w = active[:, :, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name]["mean"][:, k] = (block * w).sum(axis=(1, 2)) / count
                sat = ((block < low) | (block > high)) & w
                out[name]["saturated"][:, k] = sat.sum(axis=(1, 2)) / count
    return out
