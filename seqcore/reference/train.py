"""The NumPy twins of the compiled training kernels (csrc/_train.pyx): the readable
statement of the output map, the cost, the embedding's scatter and Adam's update.

Each function here is the oracle its compiled namesake in
``seqcore._kernels.{path}.train`` is tested against, and what runs instead of it
with ``backend="numpy"``.

Legend: N rows (all positions of x flattened), K = in_features, V = out_features
(the vocabulary of a language model), E embedding width, T time steps, B batch.
"""

import numpy as np

__all__ = ["dense_forward", "dense_backward", "softmax_cross_entropy",
           "embedding_backward", "adam_update", "sum_squares"]


def dense_forward(x, W, b):
    """y (N, V) = x (N, K) @ W (V, K)^T + b (V,)."""
    return x @ W.T + b


def dense_backward(dy, x, W, dW, db):
    """dW (V, K) += dy (N, V)^T @ x (N, K); db (V,) += column sums of dy; returns
    dx (N, K) = dy @ W."""
    dW += dy.T @ x
    db += dy.sum(axis=0)
    return dy @ W


def softmax_cross_entropy(logits, targets, w):
    """loss = sum_t,b w[t, b] * L(softmax(logits[t, b]), targets[t, b]), and dloss/dlogits.

    logits (T, B, V), targets (T, B) in [0, V), w (T, B) the weight of each position
    (mask / B). L is the cross-entropy -log p[target].
    """
    shifted = logits - logits.max(axis=2, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=2, keepdims=True))
    log_p = shifted - log_z                                        # log softmax
    nll = -np.take_along_axis(log_p, targets[:, :, None], axis=2)[:, :, 0]
    loss = float((nll * w).sum())
    dlogits = np.exp(log_p)                                        # softmax
    np.put_along_axis(dlogits, targets[:, :, None],
                      np.take_along_axis(dlogits, targets[:, :, None], axis=2) - 1, axis=2)
    dlogits *= w[:, :, None]                                       # d(w L)/dlogits
    return loss, dlogits


def embedding_backward(dW, ids, dx):
    """dW (V, E) += dx (..., E) at the rows ids (...) name; ids of -1 add nothing.
    A token seen at several positions collects the sum of their gradients."""
    has_token = ids >= 0
    np.add.at(dW, ids[has_token], dx[has_token])


def adam_update(p, g, m, v, beta1, beta2, alpha, eps_hat, decay=1.0):
    """One Adam update of p in place (the oracle of the compiled adam_update).

    decay = 1 - lr * weight_decay is AdamW's decoupled weight decay (1: plain Adam);
    alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t) and eps_hat = eps * sqrt(1 - beta2^t)
    fold the bias corrections into the step (Kingma & Ba's "efficient version"):
    alpha * m / (sqrt(v) + eps_hat) = lr * m_hat / (sqrt(v_hat) + eps).
    """
    if decay != 1.0:
        p *= decay                                  # p <- p - lr * wd * p (AdamW)
    m *= beta1
    m += (1 - beta1) * g                            # m = b1 m + (1 - b1) g
    v *= beta2
    v += (1 - beta2) * (g * g)                      # v = b2 v + (1 - b2) g^2
    p -= alpha * m / (np.sqrt(v) + eps_hat)


def sum_squares(g):
    """sum(g ** 2) of a flat float array, accumulated in float64."""
    g = np.asarray(g, dtype=np.float64).ravel()
    return float(np.dot(g, g))
