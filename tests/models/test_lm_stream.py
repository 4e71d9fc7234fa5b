"""Language models on running text: streams, dropout and weight tying in the model,
train()/eval(), resuming a run exactly, Ctrl-C during `seqcore train`, `seqcore evaluate`."""
import copy
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import seqcore
from conftest import assert_close, numeric_grad
from seqcore.cli import main

TEXT = ("It was the best of times, it was the worst of times,\n"
        "it was the age of wisdom, it was the age of foolishness,\n"
        "it was the epoch of belief, it was the epoch of incredulity,\n") * 12


def lm(level="char", text=TEXT, **kw):
    vocab = seqcore.Vocab.build([text], level)
    opts = dict(hidden_size=12, num_layers=2, embedding_dim=12, seed=3)
    opts.update(kw)
    return seqcore.LanguageModel(vocab, **opts)


# --------------------------------------------------------------------- streams

def test_stream_batches_cut_the_text_into_parallel_streams_of_next_tokens():
    model = lm()
    ids = np.array(model.stream_ids(TEXT))
    B, S = 4, 7
    n = (len(ids) - 1) // B
    batches = list(model.batches(TEXT, B, None, train=False, seq_len=S, stream=True))
    x = np.concatenate([b["x"] for b in batches])              # (n, B)
    y = np.concatenate([b["y"] for b in batches])
    assert x.shape == (n, B)
    for b in range(B):                                          # stream b: tokens b*n ...
        assert np.array_equal(x[:, b], ids[b * n:(b + 1) * n])
        assert np.array_equal(y[:, b], ids[b * n + 1:(b + 1) * n + 1])
    assert [b["carry"] for b in batches] == [False] + [True] * (len(batches) - 1)
    assert sum(b["tokens"] for b in batches) == n * B


def test_word_level_streams_end_each_line_with_eos():
    model = lm("word", text="the cat sat\n\nthe dog\n")
    ids = model.stream_ids("the cat sat\n\nthe dog\n")
    eos = model.vocab.eos_id
    assert ids == model.vocab.encode("the cat sat") + [eos, eos] + model.vocab.encode("the dog") + [eos]


def test_a_stream_too_short_for_the_batch_is_one_clear_error():
    model = lm()
    with pytest.raises(ValueError, match="cannot be cut into 64 streams"):
        model.evaluate("abc", batch_size=64, stream=True)
    with pytest.raises(TypeError, match="one string"):
        model.fit(["a", "b"], steps=1, stream=True, progress=False)


def test_stream_training_lowers_the_held_out_loss_and_samples_running_text():
    model = lm(hidden_size=32, embedding_dim=None, num_layers=1)
    before = model.evaluate(TEXT[-600:], batch_size=4, stream=True)["token_loss"]
    model.fit(TEXT[:-600], steps=120, batch_size=8, seq_len=16, stream=True, seed=0,
              progress=False, lr=1e-2)
    after = model.evaluate(TEXT[-600:], batch_size=4, stream=True)["token_loss"]
    assert model.stream and after < 0.6 * before
    text, = model.sample(1, max_len=150, seed=1)
    assert len(text) == 150 and "\n" in text                   # running text, lines and all


# ---------------------------------------------------------- dropout in the model

def test_inference_never_drops_and_training_mode_is_restored():
    model = lm(dropout=0.5)
    ids = np.array(model.stream_ids(TEXT[:40]))[:, None]
    assert model.training
    a = model.evaluate(TEXT[:400], batch_size=2, stream=True)
    b = model.evaluate(TEXT[:400], batch_size=2, stream=True)
    assert a == b and model.training                            # no masks, mode restored
    assert model.sample(2, seed=4) == model.sample(2, seed=4)
    model.eval()
    y1, _ = model.forward(ids)
    y2, _ = model.forward(ids)
    assert np.array_equal(y1, y2) and not model.rnn.training and not model.drop_in.training
    model.train()
    y3, _ = model.forward(ids)
    assert not np.allclose(y1, y3)


@pytest.mark.parametrize("tie", [False, True])
def test_model_gradients_with_dropout_and_tied_weights_match_finite_differences(tie):
    """dC/dparam through input, inter-layer and output dropout (masks replayed), float64."""
    model = lm(dropout=0.3, tie_weights=tie, dtype=np.float64, hidden_size=6, embedding_dim=6)
    batch = next(model.batches(TEXT[:200], 3, None, train=False, seq_len=5, stream=True))
    g0 = copy.deepcopy(model.generator)

    def cost():
        model.generator.bit_generator.state = g0.bit_generator.state   # the same masks
        return model.loss_and_grads(batch, backward=False)[0]

    cost()
    model.zero_grad()
    model.generator.bit_generator.state = g0.bit_generator.state
    model.loss_and_grads(batch)
    names = [n for n, _, _ in model.parameters()]
    assert ("out.W" in names) == (not tie)
    for name, p, g in model.parameters():
        if name in ("inputs.W", "out.W", "rnn.W_l1", "out.b"):
            assert_close(g, numeric_grad(cost, p), np.float64, name, rtol=1e-6, atol=1e-8)


def test_tied_weights_are_one_array_saved_once(tmp_path):
    model = lm(tie_weights=True)
    assert model.out.params["W"] is model.inputs.params["W"]
    model.inputs.params["W"][0, 0] = 7.0
    path = model.save(tmp_path / "tied.npz")
    loaded = seqcore.load(path)
    assert loaded.out.params["W"] is loaded.inputs.params["W"]
    assert loaded.out.params["W"][0, 0] == 7.0
    with pytest.raises(ValueError, match="embedding_dim == hidden_size"):
        lm(tie_weights=True, embedding_dim=5)


# ---------------------------------------------------------------------- resuming

def _adamw_on_plateau():
    return seqcore.optim.AdamW(3e-2, weight_decay=0.1,
                               schedule=seqcore.optim.ReduceOnPlateau(factor=0.5, patience=0,
                                                                      threshold=0.5))


@pytest.mark.parametrize("stream, optimizer", [(True, "adam"), (False, "adam"),
                                               (True, "adamw+plateau")])
def test_resuming_a_saved_run_gives_the_uninterrupted_model(stream, optimizer, tmp_path):
    data = TEXT if stream else TEXT.splitlines()
    valid = TEXT[:300] if stream else TEXT.splitlines()[:6]
    kw = dict(batch_size=4, seq_len=9, seed=5, progress=False, valid=valid, eval_every=3,
              lr=1e-2, stream=stream)
    make = (lambda: "adam") if optimizer == "adam" else _adamw_on_plateau
    whole = lm(dropout=0.3, tie_weights=True)
    whole.fit(data, steps=11, optimizer=make(), **kw)
    part = lm(dropout=0.3, tie_weights=True)
    # A call ends with a held-out measurement, which a plateau schedule acts on: split
    # where the whole run measures too (a multiple of eval_every), or stop the call
    # with should_stop, as Ctrl-C in `seqcore train` does.
    first = 5 if optimizer == "adam" else 6
    part.fit(data, steps=first, optimizer=make(), **kw)
    resumed = seqcore.load(part.save(tmp_path / "run.npz"))
    assert resumed.run["batches"] == first and resumed.optimizer.t == first
    resumed.fit(data, steps=11 - first, resume=True, progress=False, valid=valid)
    for (name, a, _), (_, b, _) in zip(whole.parameters(), resumed.parameters()):
        assert np.array_equal(a, b), name
    assert whole.run["best_valid"] == resumed.run["best_valid"]
    if optimizer != "adam":                        # the plateau cut the rate, and resumed
        assert whole.optimizer.schedule.scale < 1
        assert resumed.optimizer.schedule.scale == whole.optimizer.schedule.scale
    with pytest.raises(ValueError, match="give seed=5 as saved"):
        resumed.fit(data, steps=1, resume=True, seed=6, progress=False)


def test_resume_needs_a_saved_run():
    with pytest.raises(ValueError, match="no training run to continue"):
        lm().fit(TEXT, steps=1, resume=True, stream=True)


# --------------------------------------------------------------- the command line

def _train_args(corpus, out, steps):
    return ["train", str(corpus), "--stream", "--layers", "2", "--dropout", "0.2",
            "--hidden", "48", "--embedding", "48", "--tie-weights", "--batch-size", "16",
            "--seq-len", "24", "--steps", str(steps), "--seed", "7", "--eval-every", "40",
            "--valid-frac", "0.1", "--samples", "0", "--out", str(out)]


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "book.txt"
    p.write_text(TEXT * 3, encoding="utf-8")
    return p


def _params(path):
    return {n: p.copy() for n, p, _ in seqcore.load(path).parameters()}


def test_ctrl_c_saves_the_last_step_and_resume_finishes_the_same_run(corpus, tmp_path, capsys):
    steps = 3000
    # The uninterrupted run, in-process.
    ref = tmp_path / "ref.npz"
    assert main(_train_args(corpus, ref, steps) + ["--no-progress"]) == 0
    capsys.readouterr()
    # The same command in a subprocess, interrupted by SIGINT once training is under way.
    out = tmp_path / "run.npz"
    here = os.path.dirname(os.path.dirname(seqcore.__file__))   # the seqcore under test
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "seqcore", *_train_args(corpus, out, steps)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    for line in proc.stderr:                      # training is under way: step 40 measured
        if "held-out loss" in line:
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    last = tmp_path / "run.last.npz"
    message = [line for line in stderr.splitlines() if line.startswith("seqcore:")]
    assert proc.returncode == 130, stderr[-2000:]
    assert len(message) == 1 and str(last) in message[0] and "--resume" in message[0]
    assert "Traceback" not in stderr
    done = seqcore.load(last).optimizer.t
    assert 0 < done < steps
    # Re-running the command with --resume completes the run: the same model.
    assert main(_train_args(corpus, out, steps) + ["--no-progress", "--resume", str(last)]) == 0
    assert f"resuming after step {done}" in capsys.readouterr().out
    for name, p in _params(ref).items():
        assert np.array_equal(_params(out)[name], p), name            # the best
    for name, p in _params(tmp_path / "ref.last.npz").items():
        assert np.array_equal(_params(last)[name], p), name           # the last


def test_resume_refuses_a_changed_corpus_and_a_finished_run(corpus, tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(_train_args(corpus, out, 4) + ["--no-progress"]) == 0
    last = tmp_path / "m.last.npz"
    assert main(_train_args(corpus, out, 4) + ["--resume", str(last)]) == 1
    assert "already has 4 steps" in capsys.readouterr().err
    corpus.write_text(TEXT * 2, encoding="utf-8")
    assert main(_train_args(corpus, out, 8) + ["--resume", str(last)]) == 1
    assert "has changed since the run started" in capsys.readouterr().err


def test_evaluate_prints_loss_perplexity_and_bits_per_char(corpus, tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(_train_args(corpus, out, 6) + ["--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), str(corpus)]) == 0
    printed = capsys.readouterr().out
    model = seqcore.load(out)
    expected = model.evaluate(corpus.read_text(encoding="utf-8"), batch_size=64, seq_len=24)
    loss = expected["token_loss"]
    assert f"loss {loss:.4f} nats/token" in printed
    assert f"{loss / np.log(2):.4f} bits/char" in printed
    assert f"perplexity {np.exp(loss):.3f}" in printed


@pytest.mark.parametrize("content, match", [
    (b"", "no text"),
    (b"\xff\xfe\x00bad", "not UTF-8"),
    ("Ωμέγα θ ζ ξ ψ φ χ λ κ ι η".encode(), "not in the model's vocabulary"),
])
def test_evaluate_refuses_bad_files_in_one_line(content, match, corpus, tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(_train_args(corpus, out, 3) + ["--no-progress"]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    assert main(["evaluate", str(out), str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err


def test_stream_training_without_a_corpus_reads_the_standard_library_docstrings(tmp_path,
                                                                                 capsys):
    from seqcore.text import default_text
    text = default_text()
    assert len(text) > 100_000 and text == default_text()           # the same text each time
    assert text.count(" the ") > 1000                                # English prose
    out = tmp_path / "prose.npz"
    assert main(["train", "--stream", "--steps", "2", "--hidden", "8", "--samples", "1",
                 "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "docstrings (no CORPUS given)" in printed and "bits/char" in printed
    assert seqcore.load(out).stream


@pytest.mark.parametrize("option, value, error", [
    ("resume", "yes", TypeError), ("distributed", "no", TypeError),
    ("batch_size", 0, ValueError), ("stream", "x", TypeError), ("seq_len", 0, ValueError),
])
def test_fit_refuses_bad_options_in_one_clear_error(option, value, error):
    with pytest.raises(error, match=option):
        lm().fit(TEXT, steps=1, progress=False, **{"stream": True, option: value})


@pytest.mark.parametrize("value, error", [("x", TypeError), (float("nan"), ValueError),
                                          (-1.0, ValueError), (True, TypeError)])
def test_translate_checks_the_length_penalty_even_without_a_beam(value, error):
    vocab = seqcore.Vocab.build(["ab"])
    model = seqcore.Seq2Seq(vocab, vocab, hidden_size=4, attention="luong", seed=0)
    with pytest.raises(error, match="length_penalty"):
        model.translate(["ab"], length_penalty=value)


def test_command_line_mistakes_are_one_line_each(corpus, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none.npz"), str(corpus)]) == 1
    assert main(["train", str(corpus), "--tie-weights", "--hidden", "8", "--embedding", "4",
                 "--out", str(tmp_path / "m.npz")]) == 1
    assert main(["train", str(corpus), "--weight-decay", "0.1", "--out",
                 str(tmp_path / "m.npz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "none.npz: no such file" in err[0]
    assert "--embedding 8" in err[1] and "--optimizer adamw" in err[2]
