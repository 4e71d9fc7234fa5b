"""One-token steps with int8 weights (seqcore.quantize) against float32, and against
PyTorch's dynamically quantized LSTM with the same int8 weights (the table of
docs/performance.md, "int8 weights: speed").

    python bench/quantize_speed.py [--paths avx512,avx2,generic] [--sizes 256,512,1024]
                                   [--threads 1,2] [--rounds 3] [--steps 400] [--lm]
                                   [--batched] [--memory DIR]

An LSTM layer with D = H, batch 1, fed one token at a time (x of shape (1, 1, H),
the state carried): the inner loop of generation. Sides, each in its own process,
one after the other, the order turned every round:
  float32  seqcore's LSTM
  int8     seqcore.quantize of the same LSTM
  torch-q  torch.ao.nn.quantized.dynamic.LSTM from the same float weights
           (quantize_dynamic, per-channel qint8: one scale per row; activations
           quantized per step), called the same way
--lm times a word language model's greedy generation instead (V = 10,000,
E = H = 512, LSTM): each step is the embedding of the last token, the LSTM step, the
output layer and the argmax, in tokens/s; torch-q is nn.Embedding + the dynamic
quantized LSTM and Linear of the same float weights, the same loop.
--batched times the medium configuration's forward instead (B 64, T 100, D 256,
H 512, LSTM): a quantized layer computes it with the weights the int8 values stand
for, so it should run at float32's speed (torch-q is not run: PyTorch's dynamic
LSTM quantizes per call).
--memory DIR saves the --lm model in float32 and int8 to DIR and reports, for each,
the file's size and the memory a fresh process allocates (held and at its peak) to
load it and then to generate 50 tokens, and its resident memory at the end.
A visit times --steps steps and keeps the median; the table shows the median over
rounds, and the ratios of the sides' medians within a round (the median of those).
Below the CPU's best path PyTorch is held to the same instruction set
(seqcore.bench.ISA_LIMITS). Unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE in the
command that runs it.
"""
import argparse
import os
import statistics
import subprocess
import sys

WORKER = r"""
import statistics, sys, time
import numpy as np
side, H, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
import seqcore
lstm = seqcore.LSTM(H, H, seed=0)
rng = np.random.default_rng(0)
xs = rng.standard_normal((steps + 20, 1, 1, H)).astype(np.float32)
if side == "torch-q":
    import torch
    torch.set_num_threads(threads)
    fl = torch.nn.LSTM(H, H)
    W, b = lstm.params["W_l0"], lstm.params["b_l0"]
    # seqcore's gate order u, f, c~, o is PyTorch's i, f, g, o; W = [W_aa, W_ax]
    with torch.no_grad():
        fl.weight_hh_l0.copy_(torch.from_numpy(W[:, :H]))
        fl.weight_ih_l0.copy_(torch.from_numpy(W[:, H:]))
        fl.bias_ih_l0.copy_(torch.from_numpy(b))
        fl.bias_hh_l0.zero_()
    fl.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    qm = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(fl), {torch.nn.LSTM},
                                                dtype=torch.qint8)[0]
    state = None
    xt = torch.from_numpy(xs)
    def step(i):
        global state
        with torch.no_grad():
            _, state = qm(xt[i], state)
else:
    seqcore.set_num_threads(threads)
    layer = seqcore.quantize(lstm) if side == "int8" else lstm
    state = None
    def step(i):
        global state
        _, state = layer.forward(xs[i], state)
for i in range(20):
    step(i)
times = []
for i in range(20, steps + 20):
    t = time.perf_counter()
    step(i)
    times.append(time.perf_counter() - t)
print(statistics.median(times))
"""

LM_WORKER = r"""
import statistics, sys, time
import numpy as np
side, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import seqcore
vocab = seqcore.Vocab.build([" ".join(f"w{i}" for i in range(9998))], level="word")
lm = seqcore.LanguageModel(vocab, hidden_size=512, embedding_dim=512, seed=0)
if side == "torch-q":
    import torch
    torch.set_num_threads(threads)
    H, V = 512, len(vocab)
    emb, fl, out = torch.nn.Embedding(V, 512), torch.nn.LSTM(512, H), torch.nn.Linear(H, V)
    W, b = lm.rnn.params["W_l0"], lm.rnn.params["b_l0"]
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(lm.inputs.params["W"]))
        fl.weight_hh_l0.copy_(torch.from_numpy(W[:, :H]))
        fl.weight_ih_l0.copy_(torch.from_numpy(W[:, H:]))
        fl.bias_ih_l0.copy_(torch.from_numpy(b))
        fl.bias_hh_l0.zero_()
        out.weight.copy_(torch.from_numpy(lm.out.params["W"]))
        out.bias.copy_(torch.from_numpy(lm.out.params["b"]))
    model = torch.ao.quantization.quantize_dynamic(
        torch.nn.ModuleDict({"rnn": fl, "out": out}), {torch.nn.LSTM, torch.nn.Linear},
        dtype=torch.qint8)
    state, tok = None, torch.tensor([[1]])
    def step():
        global state, tok
        with torch.no_grad():
            a, state = model["rnn"](emb(tok), state)
            tok = model["out"](a).argmax(-1)
else:
    seqcore.set_num_threads(threads)
    model = seqcore.quantize(lm) if side == "int8" else lm.eval()
    state, tok = None, np.array([[1]])
    def step():
        global state, tok
        logits, state = model.forward(tok, state)
        tok = logits.argmax(-1)
for _ in range(20):
    step()
times = []
for _ in range(steps):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
print(statistics.median(times))
"""

BATCHED_WORKER = r"""
import statistics, sys, time
import numpy as np
side, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import seqcore
seqcore.set_num_threads(threads)
lstm = seqcore.LSTM(256, 512, seed=0)
layer = seqcore.quantize(lstm) if side == "int8" else lstm
x = np.random.default_rng(0).standard_normal((100, 64, 256)).astype(np.float32)
for _ in range(3):
    layer.forward(x)
times = []
for _ in range(steps):
    t = time.perf_counter()
    layer.forward(x)
    times.append(time.perf_counter() - t)
print(statistics.median(times))
"""

MEMORY_WORKER = r"""
import gc
import sys
import tracemalloc
import numpy as np


def kib(key):                  # this process's resident memory now (VmRSS) or at peak (VmHWM)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


path = sys.argv[1]
import seqcore
before = kib("VmRSS")
tracemalloc.start()            # NumPy reports its arrays' data to tracemalloc
model = seqcore.load(path)
gc.collect()                   # what load left unreachable (a float model it quantized)
held_load, peak_load = tracemalloc.get_traced_memory()
tracemalloc.reset_peak()
state, tok = None, np.array([[1]])
for _ in range(50):                          # greedy generation, one token a call
    logits, state = model.forward(tok, state)
    tok = logits.argmax(-1)
held, peak_gen = tracemalloc.get_traced_memory()
print(held_load, peak_load, held, peak_gen, (kib("VmRSS") - before) * 1024)
"""

SIDES = ["float32", "int8", "torch-q"]


def memory(out_dir):
    """Resident memory of the word LM of --lm (V 10,000, E = H = 512), float32 and
    int8, each loaded from its file in a fresh process and generating 50 tokens."""
    import seqcore
    vocab = seqcore.Vocab.build([" ".join(f"w{i}" for i in range(9998))], level="word")
    lm = seqcore.LanguageModel(vocab, hidden_size=512, embedding_dim=512, seed=0)
    os.makedirs(out_dir, exist_ok=True)
    files = {"float32": os.path.join(out_dir, "lm.npz"),
             "int8": os.path.join(out_dir, "lm.int8.npz")}
    lm.save(files["float32"])
    seqcore.quantize(lm).save(files["int8"])
    weights = sum(p.nbytes for _, p, _ in lm.parameters())
    print(f"word LM, V 10,000, E = H = 512, float32 weights {weights / 2**20:.1f} MiB; each "
          f"side in a fresh process: `seqcore.load`, then 50 tokens of greedy generation; "
          f"memory allocated (tracemalloc, which NumPy's arrays report to) and resident")
    print("| model | file | held after load | peak while loading | held while generating "
          "| peak while generating | resident (RSS) added |")
    print("|---|---|---|---|---|---|---|")
    mib = lambda n: f"{n / 2**20:.1f} MiB"                                  # noqa: E731
    for side, path in files.items():
        proc = subprocess.run([sys.executable, "-c", MEMORY_WORKER, path], capture_output=True,
                              text=True, check=True, timeout=600)
        held_load, peak_load, held, peak_gen, rss = (int(v) for v in proc.stdout.split())
        print(f"| {side} | {mib(os.path.getsize(path))} | {mib(held_load)} | {mib(peak_load)} "
              f"| {mib(held)} | {mib(peak_gen)} | {mib(rss)} |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paths", default=None, help="kernel paths (default: all this CPU runs)")
    p.add_argument("--sizes", default="256,512,1024", help="H (= D) values")
    p.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=400, help="timed steps a visit")
    p.add_argument("--lm", action="store_true",
                   help="a word language model's generation (tokens/s) instead")
    p.add_argument("--batched", action="store_true",
                   help="the medium configuration's batched forward instead")
    p.add_argument("--memory", metavar="DIR",
                   help="the word LM's files and resident memory instead (models in DIR)")
    args = p.parse_args(argv)
    if args.memory:
        return memory(args.memory)
    import seqcore
    import torch
    from seqcore.bench import cpu_name, path_envs
    paths = path_envs(args.paths)
    what = ("word LM greedy generation (V 10,000, E = H = 512, LSTM), tokens/s"
            if args.lm else "LSTM forward, B 64, T 100, D 256, H 512" if args.batched
            else "LSTM one-token step (B 1, D = H)")
    sides = SIDES[:2] if args.batched else SIDES
    print(f"{what}, float32 / int8 weights; {cpu_name()}, "
          f"{os.cpu_count()} CPUs; seqcore {seqcore.__version__}, torch {torch.__version__}; "
          f"median of {args.steps} steps a visit, {args.rounds} rounds, each side in its "
          f"own process")
    print("| path | H | threads | float32 | int8 | torch-q | int8 speed-up | int8 / torch-q time |")
    print("|---|---|---|---|---|---|---|---|")
    sizes = ["512"] if args.lm or args.batched else args.sizes.split(",")
    for path, env in paths:
        for H in (int(h) for h in sizes):
            for threads in (int(t) for t in args.threads.split(",")):
                times = {s: [] for s in sides}
                for r in range(args.rounds):
                    k = r % len(sides)
                    for side in sides[k:] + sides[:k]:
                        if args.lm or args.batched:
                            cmd = [sys.executable, "-c", LM_WORKER if args.lm else BATCHED_WORKER,
                                   side, str(threads), str(args.steps)]
                        else:
                            cmd = [sys.executable, "-c", WORKER, side, str(H), str(threads),
                                   str(args.steps)]
                        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                              timeout=600)
                        if proc.returncode != 0:
                            raise SystemExit(f"{side} failed: {proc.stderr.strip()[-800:]}")
                        times[side].append(float(proc.stdout))
                med = {s: statistics.median(v) for s, v in times.items()}
                speedup = statistics.median(a / b for a, b in zip(times["float32"], times["int8"]))
                show = ((lambda t: f"{1 / t:,.0f} tok/s") if args.lm
                        else (lambda t: f"{t * 1e3:.2f} ms") if args.batched
                        else (lambda t: f"{t * 1e6:.1f} us"))
                if args.batched:
                    print(f"| {path} | {H} | {threads} | {show(med['float32'])} | "
                          f"{show(med['int8'])} | | {speedup:.2f}x | |", flush=True)
                    continue
                vs_torch = statistics.median(a / b for a, b in zip(times["int8"], times["torch-q"]))
                print(f"| {path} | {H} | {threads} | {show(med['float32'])} | "
                      f"{show(med['int8'])} | {show(med['torch-q'])} | "
                      f"**{speedup:.2f}x** | {vs_torch:.2f} |", flush=True)


if __name__ == "__main__":
    main()
