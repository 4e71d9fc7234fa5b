"""The `seqcore export` command: a saved model as ONNX (seqcore.onnx), for onnxruntime
and the other runtimes that read ONNX.

``seqcore export MODEL.npz OUT.onnx`` writes the graph (a Seq2Seq: two graphs,
``OUT.encoder.onnx`` and ``OUT.decoder.onnx``) and prints each graph's inputs and
outputs with their shapes. A file that is not a seqcore model, or a model ONNX
cannot hold, is one line on stderr.
"""

from .args import CommandError

__all__ = ["register"]


def register(subparsers):
    p = subparsers.add_parser(
        "export", help="write a saved model as ONNX (needs the onnx extra)",
        description="Write a model saved by seqcore (seqcore train, model.save) as an ONNX "
                    "graph, and print its inputs and outputs. A Seq2Seq becomes two graphs, "
                    "OUT.encoder.onnx and OUT.decoder.onnx.")
    p.add_argument("model", metavar="MODEL", help="a model file (.npz) written by seqcore")
    p.add_argument("out", metavar="OUT", help="the ONNX file to write (.onnx)")
    p.set_defaults(func=cmd_export)


def _dims(value):
    return "(" + ", ".join(str(d.dim_param or d.dim_value)
                           for d in value.type.tensor_type.shape.dim) + ")"


def _types(onnx):
    return {v: k.lower() for k, v in onnx.TensorProto.DataType.items()}


def cmd_export(args):
    from .. import onnx as sonnx
    from ..models import load

    model = load(args.model)
    try:
        written = sonnx.export(model, args.out)
    except TypeError as exc:
        raise CommandError(f"{args.model}: {exc}") from None
    import onnx
    files = (sonnx.seq2seq_paths(args.out) if isinstance(written, dict)
             else {"model": args.out})
    graphs = written if isinstance(written, dict) else {"model": written}
    names = _types(onnx)
    for part, graph in graphs.items():
        print(f"{files[part]}: {model.kind}" + (f" {part}" if part != "model" else ""))
        for title, values in (("inputs", graph.graph.input), ("outputs", graph.graph.output)):
            print(f"  {title}:")
            for v in values:
                print(f"    {v.name:12s} {names[v.type.tensor_type.elem_type]:7s} {_dims(v)}")
    return 0
