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

from .. import _validation as V
from .optim import clip_grad_norm, clip_grad_value, global_norm

__all__ = ["train", "TrainingDiverged"]


class TrainingDiverged(FloatingPointError, ValueError):
    """The loss or the gradients became NaN or infinite: training stopped before the update.

    A ``FloatingPointError`` and a ``ValueError``. The message names exploding
    gradients and suggests clipping (``clip_norm=`` / ``clip_value=``, ``--clip``) or a
    lower learning rate; the model was not updated with the step that diverged.
    """


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


def new_run(seed, batch_size, batch_options):
    """The record of a training run that ``train`` keeps up to date (``model.run``)."""
    return {"seed": seed, "batch_size": batch_size, "batch_options": dict(batch_options),
            "batches": 0, "eval_every": None, "best_valid": None, "best_step": None,
            "carry": None}


def train(model, batches, *, steps, optimizer, clip_norm=None, clip_value=None, valid=None,
          eval_every=None, progress=True, callback=None, valid_batch_size=64,
          valid_options=None, on_best=None, should_stop=None, dist=None):
    """Run ``steps`` optimizer updates of ``model`` on ``batches``; return the history.

    history: "step", "loss" (per token, each step), "valid_step", "valid_loss" (per
    token), "valid_perplexity", "seconds", "tokens_per_second", "stopped".
    ``callback(step, model, history)`` runs after every update (for printing
    samples); it may write with ``tqdm.write``. Raises ``TrainingDiverged`` on a NaN
    or infinite loss or gradient, before it can spoil the parameters.

    The run's record ``model.run`` (see ``Model.fit``) follows every update: the
    batches done, the state carried into the next batch, the best held-out loss.
    Held-out loss is measured when the optimizer's step count is a multiple of
    ``eval_every`` (kept in the record, so a resumed run measures at the same
    steps) and after the last update; a schedule with ``observe`` is told it, and
    ``on_best(step, model)`` runs when it improves. ``should_stop()`` is asked after
    every update: when true, training ends there (no final measurement).

    ``dist`` (``seqcore.distributed``, in a data-parallel run): after each backward
    pass the ranks' gradients, losses and token counts are all-reduced (one
    ``Allreduce``), weighted by the ranks' batch sizes, before clipping, so every rank
    clips, checks and steps alike; stopping and held-out losses are agreed the same
    way. history then also has "allreduce_seconds" and "allreduce_bytes" (totals).
    """
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    run = model.run
    if run is None:                          # batches of the caller's own making
        run = model.run = new_run(None, None, {})
    if eval_every is not None:
        run["eval_every"] = V.check_int(eval_every, "eval_every")
    elif run.get("eval_every") is None:
        run["eval_every"] = max(steps // 5, 1)
    eval_every = run["eval_every"]
    history = {"step": [], "loss": [], "valid_step": [], "valid_loss": [],
               "valid_perplexity": [], "stopped": False, "allreduce_seconds": 0.0,
               "allreduce_bytes": 0}
    state = run.get("carry")
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
            size, step_tokens = batch["size"], batch["tokens"]
            if dist is not None:                               # the union of the ranks' batches
                red = dist.allreduce_gradients(grads, size, loss=loss, totals=(step_tokens,))
                loss, size, step_tokens = red.loss, red.weight, red.totals[0]
                history["allreduce_seconds"] += red.seconds
                history["allreduce_bytes"] += red.nbytes
            backend = getattr(model, "backend", "cython")        # the compiled core or its twin
            norm = (clip_grad_norm(grads, clip_norm, backend=backend) if clip_norm
                    else global_norm(grads, backend=backend))
            if not math.isfinite(loss):
                raise TrainingDiverged(_diverged_message(step, f"the loss is {loss}"))
            if not math.isfinite(norm):
                raise TrainingDiverged(_diverged_message(step, f"the gradient norm is {norm}"))
            if clip_value:
                clip_grad_value(grads, clip_value)
            optimizer.step(model.parameters(), backend=backend)
            if not _finite(model):
                raise TrainingDiverged(
                    f"training diverged at step {step}: the update overflowed the weights to "
                    "infinity - the gradients exploded. Clip them (--clip N, or clip_norm= / "
                    "clip_value=) or lower the learning rate (--lr)")
            run["batches"] += 1
            run["carry"] = state

            per_token = loss * size / step_tokens
            history["step"].append(step)
            history["loss"].append(per_token)
            tokens += step_tokens
            smooth = per_token if smooth is None else 0.98 * smooth + 0.02 * per_token
            bar.update(1)
            if i % 10 == 0 or i == steps - 1:
                rate = tokens / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix_str(f"loss={smooth:.3f} tok/s={rate:,.0f}", refresh=False)
            stop = should_stop is not None and bool(should_stop())
            if dist is not None and should_stop is not None:
                stop = dist.allreduce_sum(float(stop)) > 0     # any rank's stop stops all
            if valid is not None and not stop and (step % eval_every == 0 or i == steps - 1):
                _measure(model, valid, step, history, optimizer, progress, on_best,
                         valid_batch_size, valid_options or {}, dist)
            if callback is not None:
                callback(step, model, history)
            if stop:
                history["stopped"] = True
                break
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    history["seconds"] = seconds
    history["tokens_per_second"] = tokens / max(seconds, 1e-9)
    return history


def _measure(model, valid, step, history, optimizer, progress, on_best, batch_size, options,
             dist):
    """Held-out loss after ``step`` (over every rank's block of it): recorded, told to the
    schedule, the best kept."""
    held = model.evaluate(valid, batch_size=batch_size, **options)
    loss = held["token_loss"]
    if dist is not None:
        total, tokens = dist.allreduce_sum([held["total"], held["tokens"]])
        loss = total / tokens
    perplexity = float(np.exp(min(loss, 700.0)))
    history["valid_step"].append(step)
    history["valid_loss"].append(loss)
    history["valid_perplexity"].append(perplexity)
    observe = getattr(optimizer.schedule, "observe", None)
    if observe is not None:
        observe(loss)
    if progress:
        tqdm.write(f"step {step}: held-out loss {loss:.3f}/token, perplexity "
                   f"{perplexity:.2f}", file=sys.stderr)
    run = model.run
    if run["best_valid"] is None or loss < run["best_valid"]:
        run["best_valid"], run["best_step"] = loss, step
        if on_best is not None:
            on_best(step, model)
