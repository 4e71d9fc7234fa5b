"""The `seqcore train`, `seqcore sample` and `seqcore evaluate --json` commands, in-process and once through `python -m seqcore`."""
import json
import math
import os
import struct
import subprocess
import sys
import zipfile

import pytest

import seqcore
from seqcore.cli import main

SMALL = ["--steps", "15", "--hidden", "8", "--batch-size", "8", "--seed", "0"]


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(["anna", "bob", "carla", "dave", "eve", "frank", "gina"] * 3) + "\n",
                 encoding="utf-8")
    return p


def test_train_then_sample_with_a_seed_repeats_the_lines(corpus, tmp_path, capsys):
    out = tmp_path / "names.npz"
    assert main(["train", str(corpus), "--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr()
    assert out.exists() and f"model saved to {out}" in printed.out
    assert "training" in printed.err and "15/15" in printed.err          # the progress bar
    assert main(["sample", str(out), "--n", "4", "--seed", "3"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert main(["sample", str(out), "--n", "4", "--seed", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == first and len(first) == 4
    assert main(["sample", str(out), "--n", "3", "--prime", "an", "--temperature", "0.5",
                 "--top-k", "3", "--max-len", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(s.startswith("an") and len(s) <= 6 for s in lines)


def test_word_level_training_on_a_text_file(tmp_path, capsys):
    p = tmp_path / "words.txt"
    p.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 5, encoding="utf-8")
    out = tmp_path / "w.npz"
    assert main(["train", str(p), "--level", "word", "--out", str(out), "--no-progress",
                 *SMALL]) == 0
    capsys.readouterr()
    model = seqcore.load(out)
    assert model.vocab.level == "word" and "cat" in model.vocab
    assert main(["sample", str(out), "--n", "2", "--seed", "1", "--greedy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]


def test_train_without_corpus_uses_the_builtin_names_and_the_default_path(tmp_path, monkeypatch,
                                                                           capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--steps", "3", "--hidden", "8", "--no-progress", "--samples",
                 "2"]) == 0
    printed = capsys.readouterr().out
    assert "names defined in the Python standard library" in printed
    assert (tmp_path / "seqcore-lm.npz").exists()
    assert "seqcore sample seqcore-lm.npz" in printed


def test_plot_writes_the_loss_curve(corpus, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "loss.png"
    assert main(["train", str(corpus), "--out", str(tmp_path / "m.npz"), "--plot", str(png),
                 "--no-progress", *SMALL]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_one_clear_line(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)        # import fails
    assert main(["train", str(corpus), "--plot", str(tmp_path / "x.png"), *SMALL]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matplotlib" in err and "seqcore[plot]" in err


@pytest.mark.parametrize("argv,match", [
    (["sample", "missing.npz"], "no such file"),
    (["train", "missing.txt"], "missing.txt"),
])
def test_missing_files_are_one_line_errors(argv, match, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("seqcore: error:") and err.count("\n") == 1 and match in err


def test_bad_model_files_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    assert main(["sample", str(bad)]) == 1
    clf = tmp_path / "clf.npz"
    seqcore.SequenceClassifier(2, input_size=2, hidden_size=3, seed=0).save(clf)
    assert main(["sample", str(clf)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "not a readable seqcore model" in err[0]
    assert "not a language model" in err[1]


@pytest.mark.parametrize("argv", [
    ["train", "--steps", "0"], ["train", "--cell", "transformer"], ["train", "--lr", "-1"],
    ["sample", "m.npz", "--temperature", "hot"], ["sample"], ["fly"],
])
def test_bad_options_are_one_line_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err


def _run(args, cwd):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(seqcore.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "seqcore", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_python_dash_m_exit_codes_and_no_traceback(tmp_path):
    r = _run(["sample", "missing.npz"], tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("seqcore: error: missing.npz")
    r = _run(["train", "--batch-size", "many"], tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    for sub in ("train", "sample"):
        r = _run([sub, "--help"], tmp_path)
        assert r.returncode == 0 and f"usage: seqcore {sub}" in r.stdout and "--seed" in r.stdout
    r = _run(["--help"], tmp_path)
    assert r.returncode == 0 and "train" in r.stdout and "sample" in r.stdout


def test_sample_on_corrupted_model_files_is_one_line_without_traceback(tmp_path):
    """Damage that zipfile reports as NotImplementedError or RuntimeError (an unsupported
    compression method, an "encrypted" entry), a flipped byte, a cut file: each is the
    loader's one-line refusal, exit status 1."""
    good = tmp_path / "lm.npz"
    seqcore.LanguageModel(seqcore.Vocab.build(["abc"]), hidden_size=4, seed=0).save(good)
    data = good.read_bytes()
    central = data.index(b"PK\x01\x02")
    method = bytearray(data)
    struct.pack_into("<H", method, central + 10, 99)        # compression method 99
    encrypted = bytearray(data)
    encrypted[central + 8] |= 1                              # flag bit 0: encrypted
    flipped = bytearray(data)          # a byte of the weights (not of a header's extra
    with zipfile.ZipFile(good) as z:    # field, which the reader never looks at)
        info = z.getinfo("param/rnn.W_l0.npy")
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    flipped[start + info.compress_size - 3] ^= 0x5A
    files = {"method.npz": method, "encrypted.npz": encrypted, "flipped.npz": flipped,
             "cut.npz": data[: len(data) - 30]}
    for name, blob in files.items():
        (tmp_path / name).write_bytes(bytes(blob))
        r = _run(["sample", name], tmp_path)
        assert r.returncode == 1 and r.stdout == "", (name, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, (name, r.stderr)
        assert r.stderr.startswith(f"seqcore: error: {name}: "), (name, r.stderr)
        assert "seqcore model file" in r.stderr, (name, r.stderr)


# ---------------------------------------------------------------- --json

def _json_stdout(capsys):
    """stdout, which must be one JSON object and nothing else; and stderr."""
    printed = capsys.readouterr()
    return json.loads(printed.out), printed.err


def test_train_json_prints_only_the_figures_on_stdout(corpus, tmp_path, capsys):
    out = tmp_path / "names.npz"
    assert main(["train", str(corpus), "--out", str(out), "--valid-frac", "0.2",
                 "--eval-every", "5", "--json", *SMALL]) == 0
    result, err = _json_stdout(capsys)
    assert f"model saved to {out}" in err and "samples:" in err     # the prose, on stderr
    assert result["steps"] == result["steps_this_call"] == 15 and not result["interrupted"]
    assert result["level"] == "char" and result["parameters"] == seqcore.load(out).num_parameters()
    assert result["model"] == str(out) and result["last"] == str(tmp_path / "names.last.npz")
    assert os.path.exists(result["model"]) and os.path.exists(result["last"])
    assert result["held_out"]["step"] == 15
    run = seqcore.load(out).run
    assert result["best"]["step"] == run["best_step"]
    assert result["best"]["loss_per_token"] == pytest.approx(run["best_valid"], rel=1e-15)
    for figures in (result["held_out"], result["best"]):
        loss = figures["loss_per_token"]
        assert 0 < loss < math.log(result["vocabulary"]) + 1
        assert figures["perplexity"] == pytest.approx(math.exp(loss), rel=1e-12)
        assert figures["bits_per_char"] == pytest.approx(loss / math.log(2), rel=1e-12)
    assert result["tokens_per_second"] > 0 and result["seconds"] > 0


def test_train_json_without_held_out_text(corpus, tmp_path, capsys):
    out = tmp_path / "all.npz"
    assert main(["train", str(corpus), "--out", str(out), "--valid-frac", "0", "--json",
                 "--no-progress", *SMALL]) == 0
    result, _ = _json_stdout(capsys)
    assert result["held_out"] is None and result["best"] is None
    assert result["model"] == result["last"] == str(out)


@pytest.mark.parametrize("level", ["char", "word"])
def test_evaluate_json_gives_evaluates_figures(level, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\nthe dog sat on the log\na cat\n" * 4,
                    encoding="utf-8")
    out = tmp_path / "m.npz"
    assert main(["train", str(text), "--level", level, "--out", str(out), "--no-progress",
                 "--valid-frac", "0", *SMALL]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), str(text), "--json"]) == 0
    result, _ = _json_stdout(capsys)
    model = seqcore.load(out)
    lines = seqcore.text.read_corpus(text)
    want = model.evaluate(lines, batch_size=64, seq_len=64)
    assert result["loss_per_token"] == pytest.approx(want["token_loss"], rel=1e-12)
    assert result["perplexity"] == pytest.approx(want["perplexity"], rel=1e-12)
    assert result["tokens"] == want["tokens"] == sum(len(model.vocab.encode(t)) + 1
                                                     for t in lines)
    assert result["unknown"] == 0.0 and result["read_as"] == "lines"
    if level == "char":
        assert result["bits_per_char"] == pytest.approx(want["token_loss"] / math.log(2))
    else:
        assert result["bits_per_char"] is None
    # The same figures as the text output prints.
    assert main(["evaluate", str(out), str(text)]) == 0
    assert f"loss {result['loss_per_token']:.4f} nats/token" in capsys.readouterr().out
