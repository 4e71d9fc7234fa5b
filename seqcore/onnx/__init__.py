"""ONNX export and import: seqcore's recurrent layers as ONNX's RNN, GRU and LSTM
operators, one node per layer, for onnxruntime and the other runtimes that read ONNX.

``export(obj, path)`` writes a layer and ``layers(path)`` reads the recurrent nodes
of a graph back as seqcore layers; how each cell maps (gate order, biases,
peepholes) is ``seqcore.onnx.cells``. Needs the ``onnx`` extra
(``pip install 'seqcore[onnx]'``); onnx is imported when a function runs.
"""

from .export import INPUTS, OPSET, OUTPUTS, export, seq2seq_paths
from .load import layers

__all__ = ["export", "layers", "seq2seq_paths", "OPSET", "INPUTS", "OUTPUTS"]
