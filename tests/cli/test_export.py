"""`seqcore export MODEL.npz OUT.onnx`: writes the graph(s), prints their inputs and
outputs, and gives one line for a bad file."""
import numpy as np
import pytest

import seqcore
from seqcore.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def test_export_writes_the_graph_and_prints_its_signature(tmp_path, capsys):
    vocab = seqcore.Vocab.build(["abcd"])
    lm = seqcore.LanguageModel(vocab, cell="gru", hidden_size=8, seed=0)
    lm.save(tmp_path / "lm.npz")
    assert main(["export", str(tmp_path / "lm.npz"), str(tmp_path / "lm.onnx")]) == 0
    out = capsys.readouterr().out
    assert "LanguageModel" in out and "ids" in out and "logits" in out and "(T, B, 6)" in out
    sess = ort.InferenceSession(str(tmp_path / "lm.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array([[-1, 2], [3, 4]], np.int64)
    logits = sess.run(["logits"], {"ids": ids, "lengths": np.array([2, 2])})[0]
    want, _ = lm.forward(ids)
    assert np.abs(logits - want).max() <= 1e-5 * np.abs(want).max()


def test_a_seq2seq_becomes_two_graphs(tmp_path, capsys):
    v = seqcore.Vocab.build(["0123"])
    seqcore.Seq2Seq(v, v, hidden_size=8, attention="luong", seed=0).save(tmp_path / "s.npz")
    assert main(["export", str(tmp_path / "s.npz"), str(tmp_path / "s.onnx")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "s.encoder.onnx").exists() and (tmp_path / "s.decoder.onnx").exists()
    assert "Seq2Seq encoder" in out and "Seq2Seq decoder" in out and "alpha" in out


def test_bad_files_are_one_line(tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    for path in (tmp_path / "junk.npz", tmp_path / "missing.npz"):
        assert main(["export", str(path), str(tmp_path / "o.onnx")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("seqcore: error: ") and err.count("\n") == 1
        assert "Traceback" not in err
    v = seqcore.Vocab.build(["ab"])
    seqcore.LanguageModel(v, hidden_size=4, dtype=np.float64, seed=0).save(tmp_path / "d.npz")
    assert main(["export", str(tmp_path / "d.npz"), str(tmp_path / "o.onnx")]) == 1
    err = capsys.readouterr().err
    assert "float32 only" in err and err.count("\n") == 1
    assert not (tmp_path / "o.onnx").exists()
