"""`python -m seqcore`: the command line (seqcore.cli)."""

import sys

from seqcore.cli import build_parser, main  # noqa: F401  (build_parser: the parser, for tests)

if __name__ == "__main__":
    sys.exit(main())
