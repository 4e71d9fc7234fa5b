"""The `seqcore experiment` commands: long-range tasks, gradient flow and exploding gradients, measured.

`seqcore experiment adding|copy` trains one cell on a task generated on the fly and
reports the held-out error; `exploding` runs the same training without and with
gradient clipping; `table` runs every cell at several lags and prints the
Markdown table of docs/why-gated-cells.md. `--plot PNG` writes the gradient-flow plot (needs matplotlib),
`--json PATH` every number of the run. The tasks are defined in
``seqcore.experiments``.
"""

import json
import os
import sys
import time

from .args import (CommandError, check_output_folder, nonnegative_int, number, positive_int,
                   require_matplotlib)

CELL_NAMES = ("rnn", "gru", "gru-reset-after", "lstm", "lstm-peephole")


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 2:
        import argparse
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers >= 2 (e.g. 10,25,50), got {text!r}")
    return values


def _cell_list(text):
    import argparse
    if text == "all":
        return list(CELL_NAMES)
    cells = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELL_NAMES]
    if bad or not cells:
        raise argparse.ArgumentTypeError(
            f"expected 'all' or a comma-separated list of {', '.join(CELL_NAMES)}, got {text!r}")
    return cells


def _common(p, *, lag, steps, hidden, lr, clip, cell=True):
    if cell:
        p.add_argument("--cell", choices=CELL_NAMES, default="lstm",
                       help="recurrent cell: rnn (tanh), gru (the notes' form), "
                       "gru-reset-after (PyTorch's), lstm, lstm-peephole (default: lstm)")
    p.add_argument("--lag", type=positive_int, default=lag, metavar="N",
                   help=f"how long the first input must be remembered (default: {lag})")
    p.add_argument("--steps", type=positive_int, default=steps, metavar="N",
                   help=f"at most N optimizer updates (default: {steps})")
    p.add_argument("--hidden", type=positive_int, default=hidden, metavar="N",
                   help=f"hidden units (default: {hidden})")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                   help="sequences per mini-batch, fresh ones every step (default: 32)")
    p.add_argument("--lr", type=number(0, True), default=lr, metavar="X",
                   help=f"learning rate (default: {lr:g})")
    p.add_argument("--clip", type=number(0, False), default=clip, metavar="X",
                   help=f"clip the gradients' global norm to X; 0 turns clipping off "
                   f"(default: {clip:g})")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                   help="random seed for the weights and the data (default: 0)")
    p.add_argument("--plot", metavar="PNG",
                   help="write the gradient-flow plot to PNG (needs matplotlib: "
                   "pip install 'seqcore[plot]')")
    p.add_argument("--json", metavar="PATH", help="write every number of the run to PATH")
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="threads for BLAS and the compiled core; these small models run fastest "
                   "on one (default: 1)")
    p.add_argument("--quiet", action="store_true",
                   help="print only the result, not the held-out error as training goes")


def register(subparsers):
    e = subparsers.add_parser(
        "experiment", help="long-range tasks: vanishing and exploding gradients, measured",
        description="Train on long-range tasks generated on the fly and look at the "
        "gradient flow through time: what the course notes say about vanishing and "
        "exploding gradients and gated cells, measured on this machine.")
    sub = e.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    sub.required = True

    a = sub.add_parser(
        "adding", help="the adding problem (Hochreiter & Schmidhuber 1997)",
        description="The adding problem: sequences of LAG steps of [value, marker]; two "
        "values are marked, the first among the first 10% of the steps, the second in "
        "the second half; the target, read from the last state, is their sum. Always "
        "predicting 1 gives MSE 1/6 ~ 0.167; solved means a held-out MSE below 0.01. "
        "Training stops early once solved (checked every 250 steps).")
    _common(a, lag=50, steps=5000, hidden=32, lr=0.01, clip=1.0)
    a.add_argument("--no-early-stop", action="store_true",
                   help="train all --steps even once solved")
    a.set_defaults(func=cmd_adding)

    c = sub.add_parser(
        "copy", help="the copy/recall task",
        description="The copy task: K random symbols, LAG blanks, a go marker, then the "
        "model must output the K symbols in order. Guessing gives ln A nats per symbol "
        "and accuracy 1/A; solved means 99% of the symbols recalled on held-out "
        "sequences.")
    _common(c, lag=20, steps=6000, hidden=64, lr=0.003, clip=1.0)
    c.add_argument("--symbols", type=positive_int, default=8, metavar="A",
                   help="alphabet size A (default: 8)")
    c.add_argument("--length", type=positive_int, default=5, metavar="K",
                   help="symbols to recall K (default: 5)")
    c.add_argument("--no-early-stop", action="store_true",
                   help="train all --steps even once solved")
    c.set_defaults(func=cmd_copy)

    x = sub.add_parser(
        "exploding", help="exploding gradients: the same run without and with clipping",
        description="An IRNN (ReLU RNN whose recurrent weights start as the identity, Le "
        "et al. 2015) trained by plain SGD on the adding problem, twice with the same "
        "seed: without gradient clipping the gradients explode and training diverges "
        "(detected, reported); with --clip it converges.")
    _common(x, lag=20, steps=3000, hidden=32, lr=0.05, clip=1.0, cell=False)
    x.add_argument("--scale", type=number(0, True), default=1.0, metavar="X",
                   help="recurrent weights start as X times the identity (default: 1)")
    x.set_defaults(func=cmd_exploding)

    t = sub.add_parser(
        "table", help="every cell at every lag on the adding problem: a Markdown table",
        description="Run the adding problem for every cell at every lag (and seed) "
        "within a budget of steps, print a Markdown table of which cells solve it, and "
        "with --plot the gradient flow of every cell at the longest lag.")
    t.add_argument("--cells", type=_cell_list, default=list(CELL_NAMES), metavar="LIST",
                   help=f"comma-separated cells, or all (default: all = {','.join(CELL_NAMES)})")
    t.add_argument("--lags", type=_int_list, default=[10, 25, 50, 100], metavar="LIST",
                   help="comma-separated lags (default: 10,25,50,100)")
    t.add_argument("--steps", type=positive_int, default=10000, metavar="N",
                   help="budget: at most N optimizer updates per run (default: 10000)")
    t.add_argument("--seeds", type=positive_int, default=3, metavar="N",
                   help="runs per cell and lag, seeds S .. S+N-1 (default: 3)")
    t.add_argument("--hidden", type=positive_int, default=32, metavar="N",
                   help="hidden units (default: 32)")
    t.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                   help="sequences per mini-batch (default: 32)")
    t.add_argument("--lr", type=number(0, True), default=0.01, metavar="X",
                   help="Adam learning rate (default: 0.01)")
    t.add_argument("--clip", type=number(0, False), default=1.0, metavar="X",
                   help="clip the gradients' global norm to X; 0: off (default: 1)")
    t.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                   help="first seed (default: 0)")
    t.add_argument("--plot", metavar="PNG",
                   help="write the gradient flow of every cell at the longest lag (first "
                   "seed) to PNG (needs matplotlib)")
    t.add_argument("--json", metavar="PATH", help="write every run's numbers to PATH")
    t.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="threads for BLAS and the compiled core (default: 1)")
    t.add_argument("--quiet", action="store_true", help="print only the table")
    t.set_defaults(func=cmd_table)


# ----------------------------------------------------------------------- helpers

def _check_outputs(args):
    """Fail before training, not after: matplotlib present, output directories exist."""
    for opt in ("plot", "json"):
        path = getattr(args, opt, None)
        if path:
            check_output_folder(path, opt)
    if getattr(args, "plot", None):
        require_matplotlib()


def _write_json(path, payload):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)
    print(f"numbers written to {path}")


def _plot(results, path, title):
    from ..experiments import plot_gradient_flow
    plot_gradient_flow(results, path, title=title)
    print(f"gradient-flow plot written to {path}")


def _progress(args, what):
    if args.quiet:
        return None

    def log(step, value):
        print(f"  step {step}: held-out {what} {value:.4f}", file=sys.stderr, flush=True)
    return log


def _flow_line(r):
    """How much of the output's gradient reaches step 1, at init and at the end."""
    parts = []
    for key, when in (("grad_norms_init", "at init"), ("grad_norms_end", "after training")):
        flow = r.get(key)
        if flow and flow["a"][-1] > 0:
            parts.append(f"{flow['a'][0] / flow['a'][-1]:.1e} {when}")
    return "gradient reaching t = 1, relative to t = T: " + ", ".join(parts)


# ---------------------------------------------------------------------- commands

def cmd_adding(args):
    from ..experiments import describe, run_adding
    _check_outputs(args)
    print(f"adding problem, lag {args.lag}: {args.cell}, {args.hidden} units, at most "
          f"{args.steps} steps of {args.batch_size} sequences", flush=True)
    r = run_adding(args.cell, args.lag, steps=args.steps, hidden=args.hidden,
                   batch_size=args.batch_size, lr=args.lr, clip=args.clip or None,
                   seed=args.seed, stop_when_solved=not args.no_early_stop,
                   threads=args.threads, log=_progress(args, "MSE"))
    print(describe(r))
    print(_flow_line(r))
    if args.plot:
        _plot([r], args.plot, f"adding problem, lag {args.lag}: gradient flow")
    if args.json:
        _write_json(args.json, r)
    return 0


def cmd_copy(args):
    from ..experiments import describe, run_copy
    _check_outputs(args)
    print(f"copy task, lag {args.lag}: recall {args.length} of {args.symbols} symbols; "
          f"{args.cell}, {args.hidden} units, at most {args.steps} steps", flush=True)
    r = run_copy(args.cell, args.lag, steps=args.steps, hidden=args.hidden,
                 batch_size=args.batch_size, lr=args.lr, clip=args.clip or None,
                 symbols=args.symbols, length=args.length, seed=args.seed,
                 stop_when_solved=not args.no_early_stop, threads=args.threads,
                 log=_progress(args, "accuracy"))
    print(describe(r))
    print(_flow_line(r))
    if args.plot:
        _plot([r], args.plot, f"copy task, lag {args.lag}: gradient flow")
    if args.json:
        _write_json(args.json, r)
    return 0


def cmd_exploding(args):
    from ..experiments import run_exploding
    _check_outputs(args)
    if not args.clip:
        raise CommandError("--clip must be positive: the second run clips the gradients at it")
    log = None
    if not args.quiet:
        def log(name, step, value):
            print(f"  {name}: step {step}: held-out MSE {value:.4f}", file=sys.stderr,
                  flush=True)
    print(f"exploding gradients: IRNN (ReLU, W_aa = {args.scale:g} I), {args.hidden} units, "
          f"plain SGD lr {args.lr:g}, adding problem lag {args.lag}, {args.steps} steps, "
          f"seed {args.seed}", flush=True)
    res = run_exploding(args.lag, steps=args.steps, hidden=args.hidden,
                        batch_size=args.batch_size, lr=args.lr, clip=args.clip,
                        recurrent_scale=args.scale, seed=args.seed, threads=args.threads,
                        log=log)
    print(f"gradient norm at initialization: {res['unclipped']['grad_norms_init']['params']:.3g}"
          f" (the global norm of all parameter gradients, one batch)")
    for name, r in res.items():
        head = f"{'without' if name == 'unclipped' else 'with'} clipping"
        if name == "clipped":
            head += f" at {args.clip:g}"
        if r["diverged"]:
            msg = r["diverged"].replace("training diverged", "diverged", 1)
            print(f"{head}: {msg}")
        else:
            learned = r["final_mse"] < 0.5 * r["baseline_mse"]
            verdict = "converged" if learned else "stayed finite (try more --steps)"
            print(f"{head}: {verdict}, held-out MSE {r['final_mse']:.4f} after "
                  f"{r['steps_done']} steps (baseline {r['baseline_mse']:.3f}), "
                  f"{r['seconds']:.1f} s")
    if args.plot:
        _plot(list(res.values()), args.plot,
              "exploding gradients: the IRNN's gradient flow (no decay back in time)")
    if args.json:
        _write_json(args.json, res)
    return 0


def cmd_table(args):
    from ..experiments import gates_table, markdown_table, run_table
    _check_outputs(args)
    runs = len(args.cells) * len(args.lags) * args.seeds
    print(f"adding problem: {len(args.cells)} cells x lags {','.join(map(str, args.lags))} x "
          f"{args.seeds} seeds = {runs} runs, at most {args.steps} steps each "
          f"({args.hidden} units, batch {args.batch_size}, Adam lr {args.lr:g})",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()

    def log(r):
        if not args.quiet:
            verdict = "solved" if r["solved"] else "not solved"
            mse = "diverged" if r["diverged"] else f"MSE {r['final_mse']:.4f}"
            print(f"  {r['cell']} lag {r['lag']} seed {r['seed']}: {mse}, {verdict}, "
                  f"{r['steps_done']} steps, {r['seconds']:.1f} s", file=sys.stderr, flush=True)

    results = run_table(args.cells, args.lags, steps=args.steps, seeds=args.seeds,
                        hidden=args.hidden, batch_size=args.batch_size, lr=args.lr,
                        clip=args.clip or None, seed=args.seed, threads=args.threads, log=log)
    seconds = time.perf_counter() - t0
    print(markdown_table(results))
    print(f"\n{runs} runs in {seconds:.0f} s; solved = held-out MSE below 0.01 (always "
          f"predicting 1 gives 0.167) within {args.steps} steps; each entry: seeds solved, "
          "median held-out MSE, steps the solved runs took.")
    longest = max(args.lags)
    first = [r for r in results if r["lag"] == longest and r["seed"] == args.seed]
    if any(r["gates_end"] for r in first):
        print(f"\nGates after training, lag {longest}, seed {args.seed} (mean activation over "
              "steps, batch and units; saturated: below 0.05 or above 0.95):\n")
        print(gates_table(first))
    if args.plot:
        _plot(first, args.plot, f"adding problem, lag {longest}: gradient flow")
    if args.json:
        _write_json(args.json, {"seconds": seconds, "argv": sys.argv[1:], "runs": results})
    return 0
