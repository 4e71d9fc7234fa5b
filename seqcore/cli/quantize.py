"""The `seqcore quantize` command: a saved model with int8 weights (seqcore.quantize).

``seqcore quantize MODEL.npz OUT.npz`` writes the inference-only copy and prints the
weights' size and the file's size before and after. ``seqcore sample``,
``seqcore evaluate`` (and the other commands that load a model) read the result as
they read any model file. A file that is not a seqcore model is one line on stderr.
"""

import os

__all__ = ["register"]


def register(subparsers):
    p = subparsers.add_parser(
        "quantize", help="write a saved model with int8 weights, for inference",
        description="Write an inference-only copy of a model saved by seqcore, its weight "
                    "matrices in int8 with one scale per row (seqcore.quantize), and print "
                    "the sizes before and after.")
    p.add_argument("model", metavar="MODEL", help="a model file (.npz) written by seqcore")
    p.add_argument("out", metavar="OUT", help="the model file to write (.npz)")
    p.set_defaults(func=cmd_quantize)


def _weight_bytes(model):
    """Bytes of the model's parameters as it holds them for a file: int8 weights
    with their scales where it has them."""
    return (sum(p.nbytes for _, p, _ in model.parameters())
            + sum(q.nbytes + scale.nbytes for _, q, scale in model.int8_weights()))


def _mb(n):
    return f"{n / 1e6:.2f} MB"


def cmd_quantize(args):
    from ..models import load, quantize

    model = load(args.model)
    small = quantize(model)
    small.save(args.out)
    before, after = _weight_bytes(model), _weight_bytes(small)
    print(f"{args.out}: {model.kind} with int8 weights")
    print(f"  weights: {_mb(before)} -> {_mb(after)} ({before / after:.2f}x smaller)")
    print(f"  file:    {_mb(os.path.getsize(args.model))} -> {_mb(os.path.getsize(args.out))}"
          + ("" if model.optimizer is None else " (the input holds its optimizer's state)"))
    return 0
