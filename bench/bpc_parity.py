"""Quality parity with PyTorch: the same character-level language model trained by both
libraries on the same running English text, compared on held-out bits per character.

The text is ``seqcore.text.default_text()`` (the docstrings of the standard library of
the Python running this script, ~0.7 MB; nothing is downloaded); its last 5% is held
out. Both sides start from the same initial weights (seqcore's, carried into PyTorch
with ``seqcore.interop.to_torch``), read the same windows in the same order (seqcore's
stream batches), and use the same recipe: embedding -> LSTM (dropout between layers) ->
dropout -> linear, cross-entropy summed over time and averaged over the batch,
global-norm clipping at 5, Adam at 1e-2 decayed by a cosine to a tenth over the run
(the recipe and model of the README's `seqcore train --stream` example). Only the
dropout masks and the arithmetic differ. Each side runs in its own process, one seed after another:

    python bench/bpc_parity.py --seeds 0 1 2 [--steps 1500] [--json out.json]
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
    batches = ref._batches(train, CONFIG["batch"], None, train=True, seq_len=CONFIG["seq_len"],
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
        for batch in ref._batches(valid, B, None, train=False, seq_len=CONFIG["seq_len"],
                                  stream=True):
            if not batch["carry"]:
                state = None
            logits, state = net(torch.from_numpy(batch["x"]), state)
            total += float(nn.functional.cross_entropy(
                logits.reshape(-1, V), torch.from_numpy(batch["y"]).reshape(-1),
                reduction="sum"))
            tokens += batch["tokens"]
    return {"bpc": total / tokens / math.log(2), "seconds": seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--side", choices=("seqcore", "torch"))
    parser.add_argument("--json")
    args = parser.parse_args()
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
