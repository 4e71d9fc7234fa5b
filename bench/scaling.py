"""Data-parallel scaling: measured on this machine for 1 and 2 ranks, modelled for 4-64.

    python bench/scaling.py [--steps 30] [--json out.json]

For each language-model configuration of the training benchmark (char level V=100
one-hot, H 256/512, 1/2 LSTM layers, B 64, S 64; word level V 10,000, E = H = 256,
B 32, S 35) it runs `LanguageModel.fit(..., stream=True, distributed=True)` on a
synthetic token stream, each launch in its own processes:

* 1 rank, batch B, 1 thread: the compute of one step (t_step);
* 2 ranks (mpiexec -n 2), batch B per rank, 1 thread each: the same per-rank work,
  plus the all-reduce of the gradients (weak scaling: 2B sequences per step);

and reports step time, tokens/s, the Allreduce time per step and the gradient bytes.
The model then takes the measured latency a (8-byte Allreduce) and bandwidth b (the
largest buffer's bytes / time, from bench/mpi_allreduce.py's method) and the ring
all-reduce cost 2(N-1)/N * bytes / b + 2(N-1) a: efficiency(N) = t_step / (t_step +
t_allreduce(N)) with B sequences per rank, and the smallest B per rank that keeps
it above 80% (t_step grows linearly with B: t_step(B) = B * t_step / B_measured).
A second column does the same for a 10 Gb/s network (b = 1.25 GB/s, a = 20 us), a
typical cluster interconnect of CPU nodes.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

# (label, level, V, E (None: one-hot), H, L, B, S)
CONFIGS = [
    ("char H256 L1", "char", 100, None, 256, 1, 64, 64),
    ("char H256 L2", "char", 100, None, 256, 2, 64, 64),
    ("char H512 L1", "char", 100, None, 512, 1, 64, 64),
    ("char H512 L2", "char", 100, None, 512, 2, 64, 64),
    ("word V10k E=H=256", "word", 10_000, 256, 256, 1, 32, 35),
]
NETWORK = {"b": 1.25e9, "a": 20e-6}      # 10 Gb/s Ethernet


def worker(index, steps):
    """One launch's side (every rank runs it): fit, then rank 0 prints the figures as JSON."""
    import seqcore
    from seqcore import distributed as dist
    from seqcore.text import EOS, UNK
    label, level, V, E, H, L, B, S = CONFIGS[index]
    tokens = [EOS, UNK] + sorted(f"t{i:05d}" for i in range(V - 2))
    model = seqcore.LanguageModel(seqcore.Vocab(tokens, level), hidden_size=H, num_layers=L,
                                  embedding_dim=E, seed=0)
    dist.init()
    need = (steps + 2) * S * B * dist.size() + 1
    ids = np.random.default_rng(0).integers(2, V, size=need)
    model.fit(ids, steps=2, batch_size=B, seq_len=S, stream=True, seed=0, progress=False,
              distributed=True)                                        # warm-up
    history = model.fit(ids, steps=steps, batch_size=B, seq_len=S, stream=True, seed=0,
                        progress=False, distributed=True)
    if dist.is_root():
        n = len(history["step"])
        print(json.dumps({"seconds_per_step": history["seconds"] / n,
                          "tokens_per_second": history["tokens_per_second"],
                          "allreduce_ms": history["allreduce_seconds"] / n * 1e3,
                          "bytes": history["allreduce_bytes"] / n,
                          "parameters": model.num_parameters()}))


def launch(index, steps, ranks):
    env = dict(os.environ, SEQCORE_NUM_THREADS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--worker", str(index), "--steps", str(steps)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=os.pathsep.join(
            [os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
        cmd = [mpiexec, "-n", str(ranks)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def allreduce_model(nbytes, n, b, a):
    """Ring all-reduce of nbytes over n ranks: 2(n-1)/n * bytes / b + 2(n-1) a."""
    return 0.0 if n == 1 else 2 * (n - 1) / n * nbytes / b + 2 * (n - 1) * a


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--worker", type=int)
    parser.add_argument("--latency", type=float, default=1.0e-6,
                        help="measured 8-byte Allreduce time in s (bench/mpi_allreduce.py)")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.steps)
        return
    import seqcore
    info = seqcore.cpu_info()
    print(f"CPU: {info['cpu']}, kernel path {info['kernels']}, 1 thread per rank")
    rows = []
    print("| config | params | grad MB | 1 rank ms/step | 2 ranks ms/step | 1 rank tok/s | "
          "2 ranks tok/s | Allreduce ms/step | share |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, cfg in enumerate(CONFIGS):
        one, two = launch(i, args.steps, 1), launch(i, args.steps, 2)
        share = two["allreduce_ms"] / (two["seconds_per_step"] * 1e3)
        rows.append({"config": cfg[0], "B": cfg[6], "one": one, "two": two})
        print(f"| {cfg[0]} | {one['parameters']:,} | {two['bytes'] / 1e6:.2f} | "
              f"{one['seconds_per_step'] * 1e3:.1f} | {two['seconds_per_step'] * 1e3:.1f} | "
              f"{one['tokens_per_second']:,.0f} | {two['tokens_per_second']:,.0f} | "
              f"{two['allreduce_ms']:.2f} | {share:.1%} |", flush=True)
    # Bandwidth seen by the largest buffer on loopback (its Allreduce includes waiting
    # for the slower rank, so this is a lower bound of the link's).
    big = max(rows, key=lambda r: r["two"]["bytes"])
    b_local = big["two"]["bytes"] / (big["two"]["allreduce_ms"] / 1e3)
    print(f"\nloopback: {b_local / 1e9:.2f} GB/s (from {big['config']}), latency "
          f"{args.latency * 1e6:.1f} us; network model: {NETWORK['b'] / 1e9:.2f} GB/s, "
          f"{NETWORK['a'] * 1e6:.0f} us")
    print("\n| config | B/rank | " + " | ".join(f"N={n}" for n in (4, 8, 16, 32, 64))
          + " | B/rank for 80% at N=64 |")
    print("|---|---|" + "---|" * 6)
    for r in rows:
        t_step, nbytes, B = r["one"]["seconds_per_step"], r["two"]["bytes"], r["B"]
        for name, b, a in (("loopback", b_local, args.latency),
                           ("10 GbE", NETWORK["b"], NETWORK["a"])):
            eff = [t_step / (t_step + allreduce_model(nbytes, n, b, a)) for n in (4, 8, 16, 32, 64)]
            need = int(np.ceil(4 * allreduce_model(nbytes, 64, b, a) / (t_step / B)))
            r.setdefault("model", {})[name] = {"efficiency": eff, "batch_for_80": need}
            print(f"| {r['config']} ({name}) | {B} | " + " | ".join(f"{e:.0%}" for e in eff)
                  + f" | {need} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": info, "rows": rows, "loopback_bandwidth": b_local,
                       "latency": args.latency, "network": NETWORK}, f, indent=1)


if __name__ == "__main__":
    main()
