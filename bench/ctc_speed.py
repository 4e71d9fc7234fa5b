"""seqcore.ctc_loss against PyTorch's CPU ctc_loss: forward and backward, from the
logits, on every kernel path (the table of docs/performance.md, "CTC loss").

    python bench/ctc_speed.py [--paths avx512,avx2,generic] [--threads 1,2]
                              [--rounds 3] [--calls 30] [--also PATH]

The shape is the issue's: B 32, T 200, C 80, targets of 35-45 labels, float32 logits.
Each side runs in its own process, one after the other, the order turned every
round; a visit times `--calls` calls and keeps their median; the table shows the
median over rounds and the ratio of the sides' medians within a round (the median of
those ratios). Below the CPU's best path PyTorch is held to the same instruction set
(seqcore.bench.ISA_LIMITS). --also PATH times a second seqcore (a source tree built
in place) as another side: before and after a change in one run. Unset
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE in the command that runs it.
"""
import argparse
import os
import statistics
import subprocess
import sys

WORKER = r"""
import statistics, sys, time
import numpy as np
side, threads, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
B, T, C = 32, 200, 80
rng = np.random.default_rng(0)
x = rng.standard_normal((T, B, C)).astype(np.float32)
target_lengths = rng.integers(35, 46, B)
targets = np.zeros((B, 45), np.int64)
for b, n in enumerate(target_lengths):
    targets[b, :n] = rng.integers(1, C, n)
lengths = np.full(B, T, np.int64)
if side == "torch":
    import torch
    torch.set_num_threads(threads)
    F = torch.nn.functional
    xt = torch.from_numpy(x).requires_grad_(True)
    tt, lt, tlt = (torch.from_numpy(v) for v in (targets, lengths, target_lengths))
    def call():
        xt.grad = None
        loss = F.ctc_loss(F.log_softmax(xt, -1), tt, lt, tlt, reduction="mean")
        loss.backward()
else:
    import seqcore
    seqcore.set_num_threads(threads)
    def call():
        seqcore.ctc_loss(x, targets, lengths, target_lengths, reduction="mean")
for _ in range(3):
    call()
times = []
for _ in range(calls):
    t = time.perf_counter()
    call()
    times.append(time.perf_counter() - t)
print(statistics.median(times))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paths", default=None, help="kernel paths (default: all this CPU runs)")
    p.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calls", type=int, default=30, help="timed calls a visit (default 30)")
    p.add_argument("--also", metavar="PATH", help="another seqcore to time beside this one")
    args = p.parse_args(argv)
    from seqcore.bench import cpu_name, path_envs
    paths = path_envs(args.paths)
    sides = [("seqcore", None)]
    if args.also:
        sides.append((f"seqcore@{args.also}", os.path.abspath(args.also)))
    sides.append(("torch", None))
    print(f"ctc_loss forward+backward, B 32, T 200, C 80, targets of 35-45 labels, "
          f"float32; {cpu_name()}, {os.cpu_count()} CPUs; median of {args.calls} calls "
          f"a visit, {args.rounds} rounds, each side in its own process")
    head = ["path", "threads"] + [s for s, _ in sides] + [f"{s} / torch" for s, _ in sides[:-1]]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for path, env in paths:
        for threads in (int(t) for t in args.threads.split(",")):
            times = {s: [] for s, _ in sides}
            for r in range(args.rounds):
                order = sides[r % len(sides):] + sides[:r % len(sides)]
                for side, tree in order:
                    e = dict(env)
                    if tree:
                        e["PYTHONPATH"] = os.pathsep.join(
                            v for v in (tree, env.get("PYTHONPATH")) if v)
                    proc = subprocess.run(
                        [sys.executable, "-c", WORKER, "torch" if side == "torch" else "seqcore",
                         str(threads), str(args.calls)],
                        capture_output=True, text=True, env=e, timeout=600,
                        cwd=tree)   # `python -c` puts the working directory first
                    if proc.returncode != 0:
                        raise SystemExit(f"{side} failed: {proc.stderr.strip()[-500:]}")
                    times[side].append(float(proc.stdout))
            med = {s: statistics.median(v) for s, v in times.items()}
            ratios = [statistics.median(a / b for a, b in zip(times[s], times["torch"]))
                      for s, _ in sides[:-1]]
            print("| " + " | ".join([path, str(threads)]
                                    + [f"{med[s] * 1e3:.1f} ms" for s, _ in sides]
                                    + [f"{v:.2f}" for v in ratios]) + " |", flush=True)


if __name__ == "__main__":
    main()
