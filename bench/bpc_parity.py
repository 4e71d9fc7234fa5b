"""Quality parity with PyTorch: the same character-level language model trained by both
libraries on the same running English text, compared on held-out bits per character.

The text is ``seqcore.text.default_text()`` (the docstrings of the standard library of
the Python running this script, ~0.7 MB; nothing is downloaded); its last 5% is held
out. Both sides start from the same initial weights (seqcore's, carried into PyTorch
with ``seqcore.interop.to_torch``), read the same windows in the same order (seqcore's
stream batches), and use the same recipe: embedding -> LSTM (dropout between layers) ->
dropout -> linear, cross-entropy summed over time and averaged over the batch,
global-norm clipping at 5, Adam at 1e-2 decayed by a cosine to a tenth over the run
(the recipe and model of the `seqcore train --stream` example of docs/language-models.md). Only the
dropout masks and the arithmetic differ. Each side runs in its own process, one seed after another:

    python bench/bpc_parity.py --seeds 0 1 2 [--steps 1500] [--json out.json]

``--lines``: the line-mode variant, each library with its own defaults. The corpus is
one docstring paragraph of the standard library per line (``line_corpus``: paragraphs
of at least 200 characters, 300 of them held out); one-hot inputs, an LSTM of 256,
batches of 64 lines, truncated BPTT of 64, Adam 3e-3, clipping at 5, no schedule, no
dropout, the same initial weights. seqcore runs ``fit`` with its default batching;
PyTorch a plain loop over random batches of 64 lines (drawn by seqcore's
``batching="random"``, so its batches are the ones seqcore's random batching reads).
seqcore also runs with the other batching, which gives the kernel-level ratio on
identical batches and what the default batching adds. The held-out loss is measured
every ``--every`` steps. One thread per side; training time is the process's CPU time
(``time.process_time``, the held-out measurements left out), which a shared machine
distorts far less than the wall clock:

    python bench/bpc_parity.py --lines --seeds 0 1 2 --steps 1500 [--json out.json]
    python bench/bpc_parity.py --lines --report out.json    # its summary again
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

CONFIG = dict(hidden=128, layers=2, embedding=64, dropout=0.2, batch=64, seq_len=64,
              lr=1e-2, clip=5.0)


def _data():
    import seqcore
    from seqcore.text import default_text
    text = default_text()
    cut = int(len(text) * 0.95)
    train, valid = text[:cut], text[cut:]
    vocab = seqcore.Vocab.build([train], "char")
    return vocab, train, valid


def _model(vocab, seed):
    import seqcore
    return seqcore.LanguageModel(vocab, hidden_size=CONFIG["hidden"], num_layers=CONFIG["layers"],
                                 embedding_dim=CONFIG["embedding"], dropout=CONFIG["dropout"],
                                 seed=seed)


def run_seqcore(seed, steps):
    import seqcore
    vocab, train, valid = _data()
    model = _model(vocab, seed)
    t0 = time.perf_counter()
    model.fit(train, steps=steps, batch_size=CONFIG["batch"], seq_len=CONFIG["seq_len"],
              stream=True, clip_norm=CONFIG["clip"],
              optimizer=seqcore.optim.Adam(CONFIG["lr"],
                                           schedule=seqcore.optim.Cosine(steps, final=0.1)),
              seed=seed, progress=False)
    seconds = time.perf_counter() - t0
    held = model.evaluate(valid, batch_size=CONFIG["batch"], seq_len=CONFIG["seq_len"])
    return {"bpc": held["token_loss"] / math.log(2), "seconds": seconds}


def run_torch(seed, steps):
    import torch
    from torch import nn
    import seqcore
    from seqcore.interop import to_torch
    torch.manual_seed(seed)
    vocab, train, valid = _data()
    ref = _model(vocab, seed)                      # the initial weights, as seqcore's
    V, E, H = len(vocab), CONFIG["embedding"], CONFIG["hidden"]

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, E)
            self.rnn = to_torch(ref.rnn)
            self.rnn.dropout = CONFIG["dropout"]
            self.drop = nn.Dropout(CONFIG["dropout"])
            self.out = nn.Linear(H, V)

        def forward(self, x, state):
            a, state = self.rnn(self.drop(self.emb(x)), state)
            return self.out(self.drop(a)), state

    net = LM()
    with torch.no_grad():
        net.emb.weight.copy_(torch.from_numpy(ref.inputs.params["W"]))
        net.out.weight.copy_(torch.from_numpy(ref.out.params["W"]))
        net.out.bias.copy_(torch.from_numpy(ref.out.params["b"]))
    opt = torch.optim.Adam(net.parameters(), lr=CONFIG["lr"])
    cosine = seqcore.optim.Cosine(steps, final=0.1)              # the same multiplier
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    batches = ref.batches(train, CONFIG["batch"], None, train=True, seq_len=CONFIG["seq_len"],
                           stream=True)
    B = CONFIG["batch"]
    state = None
    net.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        if not batch["carry"]:
            state = None
        elif state is not None:
            state = tuple(s.detach() for s in state)
        x = torch.from_numpy(batch["x"])
        y = torch.from_numpy(batch["y"])
        logits, state = net(x, state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1),
                                           reduction="sum") / B
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), CONFIG["clip"])
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    net.eval()
    total = tokens = 0.0
    state = None
    with torch.no_grad():
        for batch in ref.batches(valid, B, None, train=False, seq_len=CONFIG["seq_len"],
                                  stream=True):
            if not batch["carry"]:
                state = None
            logits, state = net(torch.from_numpy(batch["x"]), state)
            total += float(nn.functional.cross_entropy(
                logits.reshape(-1, V), torch.from_numpy(batch["y"]).reshape(-1),
                reduction="sum"))
            tokens += batch["tokens"]
    return {"bpc": total / tokens / math.log(2), "seconds": seconds}


# ---------------------------------------------------------------- line mode

LINES = dict(hidden=256, batch=64, seq_len=64, lr=3e-3, clip=5.0, min_chars=200, held_out=300)


def line_corpus():
    """(vocab, training lines, held-out lines): one docstring paragraph per line."""
    import re
    import seqcore
    from seqcore.text import default_text
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", default_text())]
    lines = [p for p in paras if len(p) >= LINES["min_chars"]]
    order = np.random.default_rng(0).permutation(len(lines))
    lines = [lines[i] for i in order]
    train, valid = lines[LINES["held_out"]:], lines[:LINES["held_out"]]
    return seqcore.Vocab.build(train, "char"), train, valid


def _line_model(vocab, seed):
    import seqcore
    return seqcore.LanguageModel(vocab, hidden_size=LINES["hidden"], seed=seed)


def run_lines_seqcore(seed, steps, every, batching):
    """seqcore's fit (``batching`` None: its default); the held-out loss every ``every`` steps."""
    import seqcore
    from seqcore.data.batching import DEFAULT_BATCHING
    seqcore.set_num_threads(1)
    vocab, train, valid = line_corpus()
    model = _line_model(vocab, seed)
    curve, paused = [], [0.0]

    def measure(step, model, history):
        if step % every == 0 or step == steps:
            t = time.process_time()
            trained = t - t0 - paused[0]               # CPU time without the measurements
            held = model.evaluate(valid, batch_size=LINES["batch"], seq_len=LINES["seq_len"])
            paused[0] += time.process_time() - t
            curve.append((step, trained, held["token_loss"]))

    options = {} if batching is None else {"batching": batching}
    t0 = time.process_time()
    history = model.fit(train, steps=steps, batch_size=LINES["batch"], seq_len=LINES["seq_len"],
                        optimizer=seqcore.optim.Adam(LINES["lr"]), clip_norm=LINES["clip"],
                        seed=seed, progress=False, callback=measure, **options)
    cpu = time.process_time() - t0 - paused[0]
    tokens = history["tokens_per_second"] * history["seconds"]
    return {"curve": curve, "cpu_seconds": cpu, "tokens": tokens,
            "batching": batching or DEFAULT_BATCHING}


def run_lines_torch(seed, steps, every):
    """A plain PyTorch loop over random batches of 64 lines, from seqcore's initial weights."""
    import torch
    from torch import nn
    from seqcore.interop import to_torch
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    vocab, train, valid = line_corpus()
    ref = _line_model(vocab, seed)
    V = len(vocab)

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = to_torch(ref.rnn)
            self.out = nn.Linear(LINES["hidden"], V)

        def forward(self, x, state):
            onehot = nn.functional.one_hot(x.clamp(min=0), V).float() * (x >= 0)[..., None]
            a, state = self.rnn(onehot, state)      # x = -1 (before the first token): zeros
            return self.out(a), state

    net = LM()
    with torch.no_grad():
        net.out.weight.copy_(torch.from_numpy(ref.out.params["W"]))
        net.out.bias.copy_(torch.from_numpy(ref.out.params["b"]))
    opt = torch.optim.Adam(net.parameters(), lr=LINES["lr"])

    def loss_of(batch, state):
        logits, state = net(torch.from_numpy(batch["x"]), state)
        nll = nn.functional.cross_entropy(logits.reshape(-1, V),
                                          torch.from_numpy(batch["y"]).reshape(-1),
                                          reduction="none")
        return (nll * torch.from_numpy(batch["mask"]).reshape(-1).float()).sum(), state

    def held_out():
        total = tokens = 0.0
        state = None
        with torch.no_grad():
            for batch in ref.batches(valid, LINES["batch"], None, train=False,
                                      seq_len=LINES["seq_len"]):
                state = state if batch["carry"] else None
                loss, state = loss_of(batch, state)
                total += float(loss)
                tokens += batch["tokens"]
        return total / tokens

    batches = ref.batches(train, LINES["batch"], np.random.default_rng(seed), train=True,
                           seq_len=LINES["seq_len"], batching="random")
    curve, paused, tokens, state = [], 0.0, 0.0, None
    t0 = time.process_time()
    for step in range(1, steps + 1):
        batch = next(batches)
        state = tuple(s.detach() for s in state) if batch["carry"] else None
        loss, state = loss_of(batch, state)
        opt.zero_grad()
        (loss / batch["size"]).backward()           # summed over time, averaged over the batch
        nn.utils.clip_grad_norm_(net.parameters(), LINES["clip"])
        opt.step()
        tokens += batch["tokens"]
        if step % every == 0 or step == steps:
            t = time.process_time()
            curve.append((step, t - t0 - paused, held_out()))
            paused += time.process_time() - t
    return {"curve": curve, "cpu_seconds": time.process_time() - t0 - paused, "tokens": tokens,
            "batching": "random"}


def _at(curve, key, value):
    """The held-out loss of ``curve`` [(step, cpu_seconds, loss)] at ``key`` (0: step, 1: CPU
    seconds) = ``value``, linear between measurements (None outside them)."""
    xs = [c[key] for c in curve]
    if not xs or value < xs[0] or value > xs[-1]:
        return None
    return float(np.interp(value, xs, [c[2] for c in curve]))


def main_lines(args):
    import seqcore
    from seqcore.data.batching import BATCHINGS, DEFAULT_BATCHING
    other = next(b for b in BATCHINGS if b != DEFAULT_BATCHING)
    sides = {"seqcore": ["--side", "seqcore"], f"seqcore-{other}": ["--side", "seqcore",
                                                                   "--batching", other],
             "torch": ["--side", "torch"]}
    print(f"CPU: {seqcore.cpu_info()['cpu']}, kernel path {seqcore.cpu_info()['kernels']}, "
          f"1 thread per side, CPU time; line mode {LINES}, {args.steps} steps, "
          f"seqcore's default batching {DEFAULT_BATCHING!r}", flush=True)
    rows = []
    for seed in args.seeds:
        row = {"seed": seed}
        for name, side in sides.items():
            out = subprocess.run([sys.executable, __file__, "--lines", *side, "--seeds", str(seed),
                                  "--steps", str(args.steps), "--every", str(args.every)],
                                 capture_output=True, text=True, check=True,
                                 env=dict(os.environ, OMP_NUM_THREADS="1",
                                          SEQCORE_NUM_THREADS="1"))
            row[name] = r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"seed {seed} {name:16s} {r['batching']:7s} {r['cpu_seconds']:7.1f} CPU s "
                  f"{r['tokens'] / r['cpu_seconds']:9,.0f} tok/CPU-s  held-out "
                  + " ".join(f"{s}:{loss:.4f}" for s, _, loss in r["curve"]), flush=True)
        rows.append(row)
    report_lines(rows, args.steps, DEFAULT_BATCHING, args.json)


def report_lines(rows, steps, default, json_path=None):
    """The summary of a line-mode run: parity ratios, speeds, the batchings at equal time."""
    import seqcore
    from seqcore.data.batching import BATCHINGS
    other = next(b for b in BATCHINGS if b != default)

    def stats(values):
        v = np.array(values)
        return f"{v.mean():.4f} (spread {v.min():.4f}-{v.max():.4f}, sd {v.std(ddof=1) if len(v) > 1 else 0:.4f})"

    summary = {}
    random_side = "seqcore" if default == "random" else f"seqcore-{other}"
    sorted_side = "seqcore" if default == "sorted" else f"seqcore-{other}"
    sides = ("seqcore", f"seqcore-{other}", "torch")
    for side, what in (("seqcore", "seqcore (own defaults) / PyTorch (random batches)"),
                       (random_side, "seqcore / PyTorch on identical random batches")):
        print(f"\nheld-out loss ratio {what}:")
        for step in sorted({600, steps} & set(range(1, steps + 1))):
            ratios = [_at(r[side]["curve"], 0, step) / _at(r["torch"]["curve"], 0, step)
                      for r in rows]
            summary[f"{side}_ratio_at_{step}"] = ratios
            print(f"  step {step}: " + ", ".join(f"{x:.3f}" for x in ratios)
                  + f"; mean {stats(ratios)}")
    rate = {name: [r[name]["tokens"] / r[name]["cpu_seconds"] for r in rows] for name in sides}
    kernel = [a / b for a, b in zip(rate[random_side], rate["torch"])]
    batching = [a / b for a, b in zip(rate[sorted_side], rate[random_side])]
    steps_rate = [(r[random_side]["cpu_seconds"] / r["torch"]["cpu_seconds"]) for r in rows]
    print("training tokens per CPU second: " + ", ".join(
        f"{name} {np.mean(v):,.0f}" for name, v in rate.items()))
    print(f"  seqcore / PyTorch on identical (random) batches: {stats(kernel)} "
          f"(CPU time per step {stats(steps_rate)})")
    print(f"  sorted / random batching in seqcore: {stats(batching)}")
    # Held-out loss per second of training: both batchings at equal CPU time, the end of
    # the shorter run of the two.
    equal = []
    for r in rows:
        t = min(r[sorted_side]["cpu_seconds"], r[random_side]["curve"][-1][1],
                r[sorted_side]["curve"][-1][1])
        equal.append((t, _at(r[sorted_side]["curve"], 1, t), _at(r[random_side]["curve"], 1, t)))
    print("held-out loss at equal CPU time, sorted vs random batching: " + "; ".join(
        f"{t:.1f} s: {a if a is None else round(a, 4)} vs {b if b is None else round(b, 4)}"
        for t, a, b in equal))
    summary.update(kernel_ratio=kernel, batching_gain=batching, equal_time=equal,
                   tokens_per_cpu_second=rate)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"config": LINES, "steps": steps, "default": default,
                       "cpu": seqcore.cpu_info()["cpu"], "rows": rows, "summary": summary},
                      f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--side", choices=("seqcore", "torch"))
    parser.add_argument("--lines", action="store_true", help="the line-mode variant")
    parser.add_argument("--every", type=int, default=300,
                        help="--lines: held-out loss every N steps")
    parser.add_argument("--batching", help="--lines --side seqcore: fit's batching")
    parser.add_argument("--report", metavar="JSON",
                        help="--lines: print the summary of a run saved by --json")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.lines and args.report:
        with open(args.report) as f:
            saved = json.load(f)
        report_lines(saved["rows"], saved["steps"], saved["default"], args.json)
        return
    if args.lines and args.side:                    # one side, one seed: the child process
        if args.side == "seqcore":
            out = run_lines_seqcore(args.seeds[0], args.steps, args.every, args.batching)
        else:
            out = run_lines_torch(args.seeds[0], args.steps, args.every)
        print(json.dumps(out))
        return
    if args.lines:
        main_lines(args)
        return
    if args.side:                                   # one side, one seed: the child process
        run = run_seqcore if args.side == "seqcore" else run_torch
        print(json.dumps(run(args.seeds[0], args.steps)))
        return
    import seqcore
    rows = []
    print(f"CPU: {seqcore.cpu_info()['cpu']}, kernel path {seqcore.cpu_info()['kernels']}; "
          f"config {CONFIG}, {args.steps} steps")
    for seed in args.seeds:
        row = {"seed": seed}
        for side in ("seqcore", "torch"):
            out = subprocess.run([sys.executable, __file__, "--side", side, "--seeds", str(seed),
                                  "--steps", str(args.steps)], capture_output=True, text=True,
                                 check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
            row[side] = json.loads(out.stdout.strip().splitlines()[-1])
        row["ratio"] = row["seqcore"]["bpc"] / row["torch"]["bpc"]
        rows.append(row)
        print(f"seed {seed}: seqcore {row['seqcore']['bpc']:.4f} bpc, torch "
              f"{row['torch']['bpc']:.4f} bpc, ratio {row['ratio']:.4f}", flush=True)
    s = np.array([r["seqcore"]["bpc"] for r in rows])
    t = np.array([r["torch"]["bpc"] for r in rows])
    print(f"mean seqcore {s.mean():.4f} (spread {s.min():.4f}-{s.max():.4f}), torch "
          f"{t.mean():.4f} (spread {t.min():.4f}-{t.max():.4f}), "
          f"seqcore/torch {s.mean() / t.mean():.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": CONFIG, "steps": args.steps, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
