"""The output map and the cost: Dense (y_hat = W_y a + b_y at every step) and softmax cross-entropy.

Plain NumPy: both are one matrix product or one pass over the logits, already at
BLAS speed, so there is no compiled twin to keep in step.
"""

import numpy as np

from . import _validation as V

__all__ = ["Dense", "softmax_cross_entropy"]


class Dense:
    """y_hat<t> = W a<t> + b at every position of x (..., in_features).

    params: W (out_features, in_features), b (out_features,). Uniform init in
    +-1/sqrt(in_features). forward/backward/grads/zero_grad as the recurrent layers.
    """

    def __init__(self, in_features, out_features, *, dtype=np.float32, seed=None):
        self.in_features = V.check_int(in_features, "in_features")
        self.out_features = V.check_int(out_features, "out_features")
        self.dtype = V.check_dtype(dtype)
        if seed is not None:
            seed = V.check_int(seed, "seed", minimum=0)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.in_features)
        self.params = {
            "W": rng.uniform(-k, k, (self.out_features, self.in_features)).astype(self.dtype),
            "b": rng.uniform(-k, k, (self.out_features,)).astype(self.dtype),
        }
        self.zero_grad()
        self._x = None

    def zero_grad(self):
        self.grads = {k: np.zeros(v.shape, self.dtype) for k, v in self.params.items()}

    def _checked_params(self):
        W = V.check_array(self.params.get("W"), "params['W']",
                          (self.out_features, self.in_features), self.dtype, finite=False)
        b = V.check_array(self.params.get("b"), "params['b']", (self.out_features,),
                          self.dtype, finite=False)
        return W, b

    def forward(self, x):
        """x (..., in_features) -> y (..., out_features)."""
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x: expected a numpy array of shape (..., {self.in_features}), "
                            f"got {type(x).__name__}")
        shape = ("...",) * (x.ndim - 1) + (self.in_features,)
        x = V.check_array(x, "x", shape if x.ndim else (self.in_features,), self.dtype)
        W, b = self._checked_params()
        self._x = x
        return x @ W.T + b

    def backward(self, dy):
        """dy (..., out_features) -> dx (..., in_features); adds into grads['W'], grads['b']."""
        if self._x is None:
            raise ValueError("backward() called before forward(): run forward() first")
        x = self._x
        want = x.shape[:-1] + (self.out_features,)
        dy = V.check_array(dy, "dy", want, self.dtype)
        W, _ = self._checked_params()
        x2 = x.reshape(-1, self.in_features)
        dy2 = dy.reshape(-1, self.out_features)
        self.grads["W"] += dy2.T @ x2
        self.grads["b"] += dy2.sum(axis=0)
        return dy @ W


def softmax_cross_entropy(logits, targets, mask=None):
    """The notes' cost C = sum_t L(y<t>, y_hat<t>), averaged over the batch.

    logits (T, B, V) floating; targets (T, B) integers in [0, V); mask (T, B) of
    0/1 (or bool), None for all steps. L is the cross-entropy of the softmax of the
    logits. Returns (loss, dlogits), dlogits = dC/dlogits (T, B, V).
    """
    if not isinstance(logits, np.ndarray) or logits.dtype not in V.FLOAT_DTYPES:
        raise TypeError("logits: expected a float32 or float64 numpy array of shape (T, B, V)")
    logits = V.check_array(logits, "logits", ("T", "B", "V"), logits.dtype)
    T, B, Vsize = logits.shape
    targets = np.asarray(targets)
    if targets.shape != (T, B):
        raise ValueError(f"targets: expected shape ({T}, {B}), got {targets.shape}")
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets: expected integer token ids, got dtype {targets.dtype}")
    if targets.size and (targets.min() < 0 or targets.max() >= Vsize):
        raise ValueError(f"targets: expected ids in [0, {Vsize}), got min {targets.min()} "
                         f"and max {targets.max()}")
    if mask is None:
        w = np.ones((T, B), logits.dtype)
    else:
        mask = np.asarray(mask)
        if mask.shape != (T, B):
            raise ValueError(f"mask: expected shape ({T}, {B}), got {mask.shape}")
        if mask.dtype.kind not in "biuf" or not np.isfinite(mask).all():
            raise TypeError(f"mask: expected 0/1 or bool values, got dtype {mask.dtype}")
        w = mask.astype(logits.dtype)
    shifted = logits - logits.max(axis=2, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=2, keepdims=True))
    log_p = shifted - log_z                                        # log softmax
    nll = -np.take_along_axis(log_p, targets[:, :, None], axis=2)[:, :, 0]
    loss = float((nll * w).sum() / B)
    dlogits = np.exp(log_p)                                        # softmax
    np.put_along_axis(dlogits, targets[:, :, None],
                      np.take_along_axis(dlogits, targets[:, :, None], axis=2) - 1, axis=2)
    dlogits *= (w / B)[:, :, None]
    return loss, dlogits
