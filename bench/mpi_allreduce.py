"""Micro-benchmark of the gradient all-reduce of data-parallel training: `mpiexec -n 2 python bench/mpi_allreduce.py`.

For the language models of `seqcore train` (float32), it times, per step:

* ``Allreduce``: MPI's sum of one flat float32 buffer the size of the model's
  gradients (+ the weight and loss), in place;
* ``allreduce_gradients``: seqcore.distributed's whole call on the model's own
  gradient arrays (packing, the Allreduce, the division, unpacking);
* optionally (``--step``) one forward and backward pass of a batch on each rank, to
  set the communication against the compute it is added to.

Latency is the time of an 8-byte Allreduce; bandwidth is bytes / time of one rank's
buffer (the "algorithm bandwidth"). Every repeat starts after a Barrier; a repeat's
time is the slowest rank's; the table gives the median over the repeats.

Legend: V vocabulary, E embedding width (one-hot: E = V), H hidden units, L layers.
An LSTM layer has 4H(H + E_in) + 4H parameters (E_in = E for the first, H above it);
the output layer V*H + V; an embedding V*E.
"""
import argparse
import json
import sys
import time

import numpy as np

import seqcore
from seqcore import distributed as dist
from seqcore.text import EOS, UNK

# (label, level, V, E (None: one-hot), H, L)
CONFIGS = [
    ("char H256 L1", "char", 100, None, 256, 1),
    ("char H256 L2", "char", 100, None, 256, 2),
    ("char H512 L1", "char", 100, None, 512, 1),
    ("char H512 L2", "char", 100, None, 512, 2),
    ("word V10k E=H=256 L1", "word", 10_000, 256, 256, 1),
]


def expected_parameters(V, E, H, L):
    """The parameter count of the formula in the module notes."""
    width = V if E is None else E
    count = V * H + V + (0 if E is None else V * E)
    for layer in range(L):
        d_in = width if layer == 0 else H
        count += 4 * H * (H + d_in) + 4 * H
    return count


def make_model(level, V, E, H, L):
    tokens = [EOS, UNK] + sorted(f"t{i:05d}" for i in range(V - 2))
    vocab = seqcore.Vocab(tokens, level)
    return seqcore.LanguageModel(vocab, hidden_size=H, num_layers=L, embedding_dim=E,
                                 dtype=np.float32, seed=0)


def timed(fn, repeats, comm):
    """Median over ``repeats`` of the slowest rank's time of fn(), each started after a Barrier."""
    from mpi4py import MPI              # imported by dist.init()
    times = np.empty(repeats)
    for i in range(repeats):
        comm.Barrier()
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    slowest = np.empty_like(times)
    comm.Allreduce(times, slowest, op=MPI.MAX)
    return float(np.median(slowest))


def repeats_for(nbytes, budget):
    """Enough repeats for a median, fewer for big buffers (about ``budget`` bytes in all)."""
    return int(min(1000, max(20, budget // max(nbytes, 1))))


def validate(model, comm):
    """allreduce_gradients on made-up gradients: the mean of the ranks' (weights 1 and 2, ...)."""
    from mpi4py import MPI
    r, n = comm.Get_rank(), comm.Get_size()
    grads = [g for _, _, g in model.parameters()]
    for g in grads:
        g[...] = r + 1
    dist.allreduce_gradients(grads, r + 1)
    want = sum((k + 1) ** 2 for k in range(n)) / sum(k + 1 for k in range(n))
    worst = max(float(np.abs(g - want).max()) for g in grads)
    if comm.allreduce(worst, op=MPI.MAX) > 1e-5 * want:
        raise AssertionError(f"allreduce_gradients: max error {worst} (expected {want})")


def step_seconds(model, batch, seq_len, repeats=3):
    """Median time of one forward + backward pass (the compute a step adds the all-reduce to)."""
    rng = np.random.default_rng(dist.rank())
    V = len(model.vocab)
    ids = rng.integers(0, V, size=(seq_len, batch))
    targets = rng.integers(0, V, size=(seq_len, batch))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.zero_grad()
        logits, _ = model.forward(ids)                        # (T, B, V)
        _, dlogits = seqcore.softmax_cross_entropy(logits, targets)
        dx, _ = model.rnn.backward(model.out.backward(dlogits))
        model.inputs.backward(dx)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-mb", type=float, default=400,
                   help="bytes all-reduced per configuration, in MB (sets the repeats; default 400)")
    p.add_argument("--step", action="store_true",
                   help="also time one forward+backward pass per rank (batch x seq-len)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--json", metavar="PATH", help="write the results as JSON (rank 0)")
    args = p.parse_args(argv)

    dist.init()
    seqcore.set_num_threads(dist.default_threads())
    from mpi4py import MPI
    comm = dist.communicator()
    root = dist.is_root()
    budget = int(args.budget_mb * 1e6)

    tiny = np.zeros(1, np.float64)
    latency = timed(lambda: comm.Allreduce(MPI.IN_PLACE, tiny, op=MPI.SUM), 2000, comm)
    results = {"ranks": dist.size(), "threads_per_rank": seqcore.get_num_threads(),
               "mpi": MPI.Get_library_version().splitlines()[0].strip(),
               "latency_seconds": latency, "configs": []}
    if root:
        print(f"{results['mpi']}; {results['ranks']} ranks, "
              f"{results['threads_per_rank']} core thread(s) each")
        print(f"latency (8-byte Allreduce, median of 2000): {latency * 1e6:.1f} us\n")
        head = (f"{'configuration':<22} {'params':>10} {'MB':>7} {'reps':>5} "
                f"{'Allreduce ms':>13} {'GB/s':>6} {'allreduce_gradients ms':>23}")
        if args.step:
            head += f" {'fwd+bwd ms':>11} {'comm/step':>9}"
        print(head)
    for label, level, V, E, H, L in CONFIGS:
        model = make_model(level, V, E, H, L)
        n = model.num_parameters()
        if n != expected_parameters(V, E, H, L):
            raise AssertionError(f"{label}: {n} parameters, the formula says "
                                 f"{expected_parameters(V, E, H, L)}")
        validate(model, comm)
        buf = np.zeros(n + 2, np.float32)
        nbytes = buf.nbytes
        reps = repeats_for(nbytes, budget)
        raw = timed(lambda: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM), reps, comm)
        grads = [g for _, _, g in model.parameters()]
        full = timed(lambda: dist.allreduce_gradients(grads, 1.0), reps, comm)
        row = {"config": label, "parameters": n, "bytes": nbytes, "repeats": reps,
               "allreduce_seconds": raw, "gbytes_per_second": nbytes / raw / 1e9,
               "allreduce_gradients_seconds": full}
        line = (f"{label:<22} {n:>10,} {nbytes / 1e6:>7.2f} {reps:>5} {raw * 1e3:>13.3f} "
                f"{nbytes / raw / 1e9:>6.2f} {full * 1e3:>23.3f}")
        if args.step:
            step = comm.allreduce(step_seconds(model, args.batch, args.seq_len), op=MPI.MAX)
            row["step_seconds"] = step
            line += f" {step * 1e3:>11.1f} {full / step:>9.1%}"
        results["configs"].append(row)
        if root:
            print(line, flush=True)
    if root and args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    with dist.abort_on_error():
        sys.exit(main())
