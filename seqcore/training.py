"""The training loop: mini-batches, clipping, the optimizer step, a divergence guard, held-out loss, a tqdm bar.

Plain Python over the models' ``loss_and_grads``. Batches come from a model's
``_batches`` generator as dicts (``x``, ``y``, ``lengths``, ``mask``, ``carry``,
``size``, ``tokens``). A batch with ``carry=True`` continues the sequences of the one
before it: the final state of the previous chunk becomes its initial state
(truncated BPTT with carried state, "stateful" training); gradients stop at the
chunk boundary.
"""

import math
import sys
import time

import numpy as np
from tqdm.auto import tqdm

from .optim import clip_grad_norm, clip_grad_value, global_norm

__all__ = ["train", "TrainingDiverged"]


class TrainingDiverged(FloatingPointError, ValueError):
    """The loss or the gradients became NaN or infinite: training stopped before the update."""


def _diverged_message(step, what):
    return (f"training diverged at step {step}: {what} - the gradients exploded. "
            "Clip them (--clip N, or clip_norm= / clip_value=) or lower the learning rate "
            "(--lr); the model was not updated with this step")


def _finite(model):
    return all(np.isfinite(p).all() for _, p, _ in model.parameters())


def _loss_and_grads(model, batch, state, step):
    """model.loss_and_grads, with NaN or infinity anywhere on the way reported as divergence."""
    try:
        return model.loss_and_grads(batch, state)
    except ValueError as exc:
        # The layers refuse non-finite inputs (activations that overflowed on the way).
        if "NaN or infinity" in str(exc):
            raise TrainingDiverged(_diverged_message(
                step, f"NaN or infinity in the forward pass ({exc})")) from None
        raise


def train(model, batches, *, steps, optimizer, clip_norm=None, clip_value=None, valid=None,
          eval_every=None, progress=True, callback=None, valid_batch_size=64):
    """Run ``steps`` optimizer updates of ``model`` on ``batches``; return the history.

    history: "step", "loss" (per token, each step), "valid_step", "valid_loss" (per
    token), "valid_perplexity", "seconds", "tokens_per_second". ``callback(step,
    model, history)`` runs after every update (for printing samples); it may write
    with ``tqdm.write``. Raises ``TrainingDiverged`` on a NaN or infinite loss or
    gradient, before it can spoil the parameters.
    """
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    if eval_every is None:
        eval_every = max(steps // 5, 1)
    history = {"step": [], "loss": [], "valid_step": [], "valid_loss": [],
               "valid_perplexity": []}
    state = None
    tokens = 0.0
    smooth = None
    start_step = optimizer.t
    t0 = time.perf_counter()
    bar = tqdm(total=steps, desc="training", unit="step", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, leave=True)
    try:
        for i in range(steps):
            step = start_step + i + 1
            batch = next(batches)
            if not batch["carry"]:
                state = None                                   # new sequences: a<0> = 0
            model.zero_grad()
            loss, state = _loss_and_grads(model, batch, state, step)
            grads = model.grads()
            norm = clip_grad_norm(grads, clip_norm) if clip_norm else global_norm(grads)
            if not math.isfinite(loss):
                raise TrainingDiverged(_diverged_message(step, f"the loss is {loss}"))
            if not math.isfinite(norm):
                raise TrainingDiverged(_diverged_message(step, f"the gradient norm is {norm}"))
            if clip_value:
                clip_grad_value(grads, clip_value)
            optimizer.step(model.parameters())
            if not _finite(model):
                raise TrainingDiverged(
                    f"training diverged at step {step}: the update overflowed the weights to "
                    "infinity - the gradients exploded. Clip them (--clip N, or clip_norm= / "
                    "clip_value=) or lower the learning rate (--lr)")

            per_token = loss * batch["size"] / batch["tokens"]
            history["step"].append(step)
            history["loss"].append(per_token)
            tokens += batch["tokens"]
            smooth = per_token if smooth is None else 0.98 * smooth + 0.02 * per_token
            bar.update(1)
            if i % 10 == 0 or i == steps - 1:
                rate = tokens / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix_str(f"loss={smooth:.3f} tok/s={rate:,.0f}", refresh=False)
            if valid is not None and ((i + 1) % eval_every == 0 or i == steps - 1):
                held = model.evaluate(valid, batch_size=valid_batch_size)
                history["valid_step"].append(step)
                history["valid_loss"].append(held["token_loss"])
                history["valid_perplexity"].append(held["perplexity"])
                if progress:
                    tqdm.write(f"step {step}: held-out loss {held['token_loss']:.3f}/token, "
                               f"perplexity {held['perplexity']:.2f}", file=sys.stderr)
            if callback is not None:
                callback(step, model, history)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    history["seconds"] = seconds
    history["tokens_per_second"] = tokens / max(seconds, 1e-9)
    return history
