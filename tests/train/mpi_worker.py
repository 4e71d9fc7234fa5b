"""One rank of a seqcore.distributed test: `mpiexec -n 2 python mpi_worker.py MODE OUTDIR`.

Each rank writes what it saw to OUTDIR/rank<r>.json or .npz; tests/train/test_distributed.py
reads the files and checks them against NumPy. The inputs of every rank come from
the functions below, which the test imports to recompute them.
"""
import json
import os
import sys
import time

import numpy as np

# (shape, dtype) of the gradient arrays of the weighted-mean check: float32 and
# float64 together make two Allreduces, one per dtype.
GRAD_SHAPES = [((4, 3), np.float32), ((3,), np.float32), ((2, 5), np.float64), ((7,), np.float32)]
# A second, smaller call reuses the buffers: nothing of the first call may leak into it.
GRAD_SHAPES_SMALL = [((2,), np.float32), ((3,), np.float64)]
T, D, H, V = 5, 4, 6, 7                 # the LSTM -> Dense check of the union batch


def weight(rank):
    return 3.0 + 2.0 * rank


def gradients(rank, shapes, salt=0):
    rng = np.random.default_rng([rank, salt])
    return [rng.standard_normal(shape).astype(dtype) for shape, dtype in shapes]


def loss_of(rank):
    return 1.25 + rank


def union_batch_part(rank):
    """Rank r's share of the batch: B_r = 3 + 2r sequences (x (T, B_r, D), targets (T, B_r))."""
    rng = np.random.default_rng([100, rank])
    b = 3 + 2 * rank
    return rng.standard_normal((T, b, D)), rng.integers(0, V, size=(T, b))


def lstm_gradients(x, targets):
    """Loss and gradients (LSTM then Dense, float64, fixed seeds) of one batch."""
    import seqcore
    lstm = seqcore.LSTM(D, H, dtype=np.float64, seed=1)
    out = seqcore.Dense(H, V, dtype=np.float64, seed=2)
    a, _ = lstm.forward(x)                                  # (T, B, H)
    loss, dlogits = seqcore.softmax_cross_entropy(out.forward(a), targets)
    lstm.backward(out.backward(dlogits))
    return loss, [lstm.grads, out.grads]


def language_model(seed, hidden_size=8):
    import seqcore
    vocab = seqcore.Vocab.build(["the cat sat on the mat"], level="char")
    return seqcore.LanguageModel(vocab, hidden_size=hidden_size, embedding_dim=5, seed=seed)


def adam_steps(model, optimizer, n, salt):
    """n Adam steps with made-up gradients (the same on every rank for the same salt)."""
    rng = np.random.default_rng(salt)
    for _ in range(n):
        for _, _, g in model.parameters():
            g[...] = rng.standard_normal(g.shape)
        optimizer.step(model.parameters())


def write_json(outdir, rank, data):
    with open(os.path.join(outdir, f"rank{rank}.json"), "w") as f:
        json.dump(data, f)


def collectives(dist, outdir):
    import seqcore
    seqcore.set_num_threads(dist.default_threads())
    r = dist.rank()
    write_json(outdir, r, {
        "rank": r, "size": dist.size(), "is_root": dist.is_root(), "launched": dist.launched(),
        "local_size": dist.local_size(), "default_threads": dist.default_threads(),
        "core_threads": seqcore.get_num_threads(),
        "shard_n": list(dist.shard(11)), "shard_text": dist.shard("abcdefg"),
        "sum_list": dist.allreduce_sum([r + 1, 0.5]).tolist(),
        "sum_scalar": dist.allreduce_sum(r + 0.25),
        "object": dist.broadcast_object({"from": r} if r == 0 else None),
        "gathered": dist.gather_object(r * 10),
        "rank_seed": dist.rank_seed(7),
    })


def broadcast(dist, outdir):
    import seqcore
    r = dist.rank()
    model = language_model(seed=r)                      # different weights on each rank
    optimizer = seqcore.optim.Adam(1e-2)
    adam_steps(model, optimizer, 2 if r == 0 else 1, salt=10 + r)   # different states too
    dist.broadcast_parameters(model)
    dist.broadcast_optimizer_state(optimizer)
    arrays = {f"param/{name}": p.copy() for name, p, _ in model.parameters()}
    arrays.update({f"state/{k}": np.asarray(v) for k, v in optimizer.state_dict().items()})
    adam_steps(model, optimizer, 1, salt=99)            # the same step from the same state
    arrays.update({f"after/{name}": p.copy() for name, p, _ in model.parameters()})
    np.savez(os.path.join(outdir, f"rank{r}.npz"), **arrays)


def mismatch(dist, outdir):
    r = dist.rank()
    model = language_model(seed=0, hidden_size=8 if r == 0 else 9)
    try:
        dist.broadcast_parameters(model)
    except ValueError as exc:
        write_json(outdir, r, {"error": str(exc)})
    else:
        write_json(outdir, r, {"error": None})


def allreduce(dist, outdir):
    r = dist.rank()
    arrays = {}
    grads = gradients(r, GRAD_SHAPES)
    first = dist.allreduce_gradients(grads, weight(r), loss=loss_of(r), totals=(r + 1, 10 * r))
    arrays.update({f"first/{i}": g for i, g in enumerate(grads)})
    small = gradients(r, GRAD_SHAPES_SMALL, salt=1)
    second = dist.allreduce_gradients(small, weight(r))
    arrays.update({f"second/{i}": g for i, g in enumerate(small)})
    x, targets = union_batch_part(r)
    loss, lstm_grads = lstm_gradients(x, targets)
    third = dist.allreduce_gradients(lstm_grads, x.shape[1], loss=loss)
    arrays.update({f"lstm/{k}": g for i, d in enumerate(lstm_grads) for k, g in
                   ((f"{i}/{name}", g) for name, g in d.items())})
    arrays["first_result"] = np.array([first.weight, first.loss, first.nbytes, *first.totals])
    arrays["second_result"] = np.array([second.weight, second.nbytes, len(second.totals)])
    arrays["lstm_result"] = np.array([third.weight, third.loss])
    stats = dist.allreduce_stats()
    arrays["stats"] = np.array([stats["calls"], stats["bytes"]])
    np.savez(os.path.join(outdir, f"rank{r}.npz"), **arrays)


def abort(dist, outdir):
    with dist.abort_on_error():
        if dist.rank() == 1:
            time.sleep(0.3)                 # let rank 0 block in the collective first
            raise ValueError("made to fail on rank 1")
        dist.allreduce_sum([1.0])           # never completes: rank 1 is gone
        write_json(outdir, 0, {"finished": True})


def single(dist, outdir):
    """A plain `python mpi_worker.py single OUTDIR`, without a launcher."""
    grads = gradients(0, GRAD_SHAPES)
    before = [g.copy() for g in grads]
    result = dist.allreduce_gradients(grads, 4.0, loss=2.5, totals=(7,))
    model = language_model(seed=3)
    params = [p.copy() for _, p, _ in model.parameters()]
    dist.broadcast_parameters(model)
    caught = None
    try:
        with dist.abort_on_error():
            raise KeyError("propagates")
    except KeyError as exc:
        caught = repr(exc)
    write_json(outdir, 0, {
        "rank": dist.rank(), "size": dist.size(), "is_root": dist.is_root(),
        "launched": dist.launched(), "initialized": dist.is_initialized(),
        "grads_unchanged": all(np.array_equal(a, b) for a, b in zip(grads, before)),
        "result": [result.weight, result.loss, list(result.totals), result.seconds,
                   result.nbytes],
        "params_unchanged": all(np.array_equal(a, p) for a, (_, p, _) in
                                zip(params, model.parameters())),
        "sum": dist.allreduce_sum([1.5, 2.0]).tolist(), "shard": list(dist.shard(5)),
        "caught": caught, "rank_seed": dist.rank_seed(7),
    })


MODES = {f.__name__: f for f in (collectives, broadcast, mismatch, allreduce, abort, single)}

if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    from seqcore import distributed
    MODES[mode](distributed, out)
