"""Import every module of the installed seqcore, as pkgutil.walk_packages, pydoc or a
documentation generator would, and check that each one imports or is refused with an
ImportError: never a signal (an instruction the CPU lacks kills the process).

    python tests/kernels/import_every_module.py [--refused PATH ...] [--best PATH]

--refused names the kernel paths this CPU lacks: their packages and every compiled
module in them must raise ImportError, and nothing else may. --best is the path
seqcore.cpu_info() must report in use. Run natively by
tests/kernels/test_build.py and under `qemu-x86_64 -cpu Haswell` / `-cpu Nehalem` by .ci/run.
Exit status 0 when all is as expected, 1 otherwise; a crash is the signal's status.
"""
import argparse
import importlib
import importlib.machinery
import os
import pkgutil
import sys


def module_names(package):
    """Every module pkgutil finds in `package`, and every compiled module on disk in
    it (walk_packages does not enter a package whose import fails)."""
    names = {package.__name__}
    errors = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".",
                                      onerror=errors.append):
        names.add(info.name)
    root = package.__path__[0]
    for folder, _, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        prefix = package.__name__ + ("" if rel == "." else "." + rel.replace(os.sep, "."))
        for file in files:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                if file.endswith(suffix):      # the longest suffix comes first
                    names.add(f"{prefix}.{file[:-len(suffix)]}")
                    break
    return sorted(names)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refused", nargs="*", default=[],
                        help="kernel paths whose modules must raise ImportError")
    parser.add_argument("--best", help="the kernel path cpu_info() must report")
    args = parser.parse_args(argv)
    import seqcore
    refused_prefixes = tuple(f"seqcore._kernels.{p}" for p in args.refused)
    imported, refused, wrong = [], [], []
    for name in module_names(seqcore):
        if name == "seqcore.__main__":
            continue                        # running it is the command line's job
        expect_refusal = name.startswith(refused_prefixes)
        try:
            importlib.import_module(name)
        except ImportError as exc:
            (refused if expect_refusal else wrong).append(f"{name}: ImportError: {exc}")
        else:
            (wrong if expect_refusal else imported).append(f"{name}: imported")
    info = seqcore.cpu_info()
    if args.best and info["kernels"] != args.best:
        wrong.append(f"cpu_info(): kernels {info['kernels']!r}, expected {args.best!r}")
    for line in wrong:
        print("UNEXPECTED", line)
    print(f"{len(imported)} modules imported, {len(refused)} refused with ImportError "
          f"(kernel paths {', '.join(args.refused) or 'none'}), {len(wrong)} unexpected; "
          f"cpu_info(): {info}")
    for line in refused:
        print("  refused", line)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
