"""Model files: exact round trips of every model, resumable optimizer state, atomic writes, refusal of bad files."""
import json
import os
import zipfile

import numpy as np
import pytest

import seqcore
from seqcore import io as sio

VOCAB = seqcore.Vocab.build(["hello world"])
TEXTS = ["hello", "world", "low", "dew", "held"]


def _lm(**kw):
    return seqcore.LanguageModel(VOCAB, hidden_size=8, seed=0, **kw)


def _models():
    src = seqcore.Vocab.build(["0123456789"])
    return [
        _lm(cell="gru", reset_after=True, embedding_dim=4),
        seqcore.SequenceClassifier(3, input_size=2, cell="lstm", peephole=True, hidden_size=5,
                                   bidirectional=True, num_layers=2, seed=1, dtype=np.float64),
        seqcore.SequenceTagger(4, vocab=VOCAB, cell="rnn", nonlinearity="relu", hidden_size=5,
                               seed=2),
        seqcore.Seq2Seq(src, VOCAB, hidden_size=6, embedding_dim=3, reverse_source=True, seed=3),
    ]


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.kind)
def test_every_model_survives_save_and_load_exactly(model, tmp_path):
    path = model.save(tmp_path / "m.npz")
    loaded = seqcore.load(path)
    assert type(loaded) is type(model) and loaded.config() == model.config()
    got = {n: p for n, p, _ in loaded.parameters()}
    for name, p, _ in model.parameters():
        assert got[name].dtype == p.dtype
        np.testing.assert_array_equal(got[name], p, err_msg=name)


def test_loaded_language_model_samples_the_same_lines(tmp_path):
    lm = _lm()
    lm.fit(TEXTS, steps=20, batch_size=2, progress=False, seed=0)
    lm.save(tmp_path / "lm.npz")
    loaded = seqcore.load(tmp_path / "lm.npz")
    assert loaded.vocab == lm.vocab
    assert loaded.sample(6, seed=11, temperature=0.9) == lm.sample(6, seed=11, temperature=0.9)


def test_optimizer_state_is_saved_so_training_resumes_exactly(tmp_path):
    straight = _lm()
    straight.fit(TEXTS, steps=10, batch_size=2, progress=False, seed=0)
    straight.save(tmp_path / "a.npz")
    resumed = seqcore.load(tmp_path / "a.npz")
    assert resumed.optimizer.t == 10 and resumed.optimizer.name == "adam"
    straight.fit(TEXTS, steps=5, batch_size=2, progress=False, seed=1)
    resumed.fit(TEXTS, steps=5, batch_size=2, progress=False, seed=1)
    for (name, a, _), (_, b, _) in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_file_holds_plain_arrays_with_a_format_version_and_json_config(tmp_path):
    _lm().save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert str(npz["format"]) == "seqcore-model"
        assert int(npz["format_version"]) == sio.FORMAT_VERSION
        config = json.loads(npz["config"].tobytes())
        assert config["kind"] == "LanguageModel"
        assert config["model"]["vocab"]["tokens"] == VOCAB.tokens
        assert all(npz[k].dtype != object for k in npz.files)


def _rewrite(path, change):
    """Rewrite a model file with ``change(arrays)`` applied and a fresh checksum."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    arrays.pop("sha256")
    arrays["sha256"] = np.array(sio._digest(arrays))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _refused(path, match):
    with pytest.raises(ValueError, match=match) as info:
        seqcore.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_truncated_file_is_refused(tmp_path):
    p = tmp_path / "m.npz"
    _lm().save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    _refused(p, "not a readable seqcore model")


def test_tampered_weights_are_refused(tmp_path):
    p = tmp_path / "m.npz"
    _lm().save(p)
    with np.load(p, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["param/out.b"] = arrays["param/out.b"] + 1        # checksum left as it was
    with open(p, "wb") as f:
        np.savez(f, **arrays)
    _refused(p, "checksum")


def test_newer_format_version_is_refused(tmp_path):
    p = tmp_path / "m.npz"
    _lm().save(p)
    _rewrite(p, lambda a: a.__setitem__("format_version", np.array(sio.FORMAT_VERSION + 1)))
    _refused(p, "newer seqcore")


def test_foreign_files_are_refused(tmp_path):
    npz = tmp_path / "other.npz"
    np.savez(npz, weights=np.ones(3))
    _refused(npz, "not a seqcore model")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    _refused(txt, "not a readable seqcore model")
    npy = tmp_path / "a.npy"
    np.save(npy, np.ones(2))
    _refused(npy, "not a readable seqcore model")
    with pytest.raises(FileNotFoundError):
        seqcore.load(tmp_path / "missing.npz")


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    p = tmp_path / "m.npz"
    _lm().save(p)
    _rewrite(p, lambda a: a.__setitem__("param/out.b", a["param/out.b"][:3]))
    _refused(p, "weight out.b")


def test_a_crash_while_saving_leaves_the_old_file_intact(tmp_path, monkeypatch):
    p = tmp_path / "m.npz"
    _lm().save(p)
    before = p.read_bytes()

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(sio.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        _lm(embedding_dim=3).save(p)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]              # no temporary file left behind
    monkeypatch.undo()
    assert zipfile.is_zipfile(p) and seqcore.load(p).config() == _lm().config()
