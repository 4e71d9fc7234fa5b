"""A layer's speed beside busy processes: the median time per call of one forward (or
forward + backward) with 0, 1, ... busy processes, for seqcore and PyTorch on 1 thread
and on all, each measurement in its own process (the table of docs/performance.md,
"Under load").

    python bench/under_load.py [--loads 0,1,2] [--seconds 3] [--shape B,T,D,H]
                               [--cell lstm] [--backward] [--also PATH]

--also PATH times a second seqcore (a source tree built in place, or a site-packages
folder) beside the installed one, as "seqcore@PATH": a before/after comparison in one
run. Unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE in the command that runs it.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

WORKER = r"""
import statistics, sys, time
import numpy as np
side, threads, seconds, cell, backward = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
B, T, D, H = (int(v) for v in sys.argv[6].split(","))
x = np.random.default_rng(0).standard_normal((T, B, D)).astype(np.float32)
if side == "torch":
    import torch
    torch.set_num_threads(threads)
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](D, H)
    xt = torch.from_numpy(x).requires_grad_(backward)
    def call():
        if backward:
            y, _ = layer(xt)
            y.sum().backward()
        else:
            with torch.no_grad():
                layer(xt)
else:
    import seqcore
    seqcore.set_num_threads(threads)
    layer = {"lstm": seqcore.LSTM, "gru": seqcore.GRU, "rnn": seqcore.RNN}[cell](D, H, seed=0)
    dy = np.ones((T, B, H), np.float32)
    def call():
        layer.forward(x)
        if backward:
            layer.backward(dy)
for _ in range(3):
    call()
times, end = [], time.perf_counter() + seconds
while time.perf_counter() < end or len(times) < 5:
    t = time.perf_counter()
    call()
    times.append(time.perf_counter() - t)
print(statistics.median(times))
"""


def measure(side, threads, args, pythonpath=None):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, side, str(threads), str(args.seconds), args.cell,
         "1" if args.backward else "0", args.shape],
        capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{side} worker failed: {proc.stderr.strip()[-500:]}")
    return float(proc.stdout)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loads", default="0,1,2", help="busy processes per row (default 0,1,2)")
    p.add_argument("--seconds", type=float, default=3.0, help="timing per cell (default 3)")
    p.add_argument("--shape", default="32,64,64,128", help="B,T,D,H (default 32,64,64,128)")
    p.add_argument("--cell", default="lstm", choices=("lstm", "gru", "rnn"))
    p.add_argument("--backward", action="store_true", help="time forward + backward")
    p.add_argument("--also", metavar="PATH", help="another seqcore to time beside this one")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--load-kind", choices=("bursty", "spin"), default="bursty",
                   help="the busy processes of seqcore bench --load (default bursty: "
                        "compute 5 ms, pause 1 ms)")
    args = p.parse_args(argv)
    from seqcore.bench import busy_processes, cpu_name
    all_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    sides = [("seqcore", None)]
    if args.also:
        sides.append((f"seqcore@{args.also}", os.path.abspath(args.also)))
    if not args.no_torch:
        sides.append(("torch", None))
    threads = sorted({1, all_threads})
    op = "forward + backward" if args.backward else "forward"
    print(f"{args.cell.upper()} {op}, B,T,D,H = {args.shape}, float32, median per call; "
          f"{cpu_name()}, {os.cpu_count()} CPUs; each cell in its own process; "
          f"{args.load_kind} busy processes")
    header = ["busy processes"] + [f"{s}, {t} thread{'s' if t > 1 else ''}"
                                   for s, _ in sides for t in threads]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for load in (int(v) for v in args.loads.split(",")):
        with busy_processes(load, args.load_kind):
            time.sleep(0.5)                    # the scheduler spreads the busy loops
            row = [str(load)]
            for side, path in sides:
                for t in threads:
                    name = "torch" if side == "torch" else "seqcore"
                    row.append(f"{measure(name, t, args, path) * 1e3:.2f} ms")
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
