"""`python -m seqcore.bench.worker BENCH SIDE`: one worker process of a benchmark.

The benchmarks (``layers``: `seqcore bench`; ``training``: `seqcore bench --train`)
run each side in a process of its own, started with this module; it answers the
parent's commands, one JSON line each, on stdin and stdout (``layers.worker_main``).
"""

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("layers", "training"):
        sys.exit("usage: python -m seqcore.bench.worker layers|training SIDE "
                 "(started by `seqcore bench`)")
    from . import layers
    if argv[0] == "training":
        from . import training
        return layers.worker_main(argv[1], make=training.TrainWorker)
    return layers.worker_main(argv[1])


if __name__ == "__main__":
    sys.exit(main())
