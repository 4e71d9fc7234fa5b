"""The comparison script: `python bench/compare.py [options]` is `seqcore bench [options]`.

The logic lives in seqcore/bench.py so that it ships with the installed package
(`seqcore bench`, `python -m seqcore.bench`); see `seqcore bench --help`.
"""
import sys

from seqcore.bench import main

if __name__ == "__main__":
    sys.exit(main())
