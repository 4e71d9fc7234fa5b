"""`python -m seqcore.bench [options]` is `seqcore bench [options]`."""

import sys

from seqcore.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench"] + sys.argv[1:]))
