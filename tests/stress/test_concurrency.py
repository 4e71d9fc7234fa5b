"""Threads sharing one layer or model: each call gives bitwise what it gives alone.

The kernels run without the GIL over scratch the layer owns (its workspaces, forward
cache and one-token stepper), so before the layers and models locked themselves,
four threads calling ``forward`` on one LSTM got wrong outputs in about half of the
calls, and the stepper could crash. Every test here makes the same calls first one
after another (the expected results), then from several threads at once over one
shared object, and compares with ``np.array_equal`` / ``==``. Each runs with the
core on one thread (as in the report) and with its default threads.
"""
import copy
import pickle
import sys
import threading

import numpy as np
import pytest

import seqcore

THREADS = 4
STEPS = 500         # one-token steps per thread
LETTERS = seqcore.Vocab.build(["abcdefghijklmnopqrstuvwxyz"])    # 28 tokens: long samples
DIGITS = seqcore.Vocab.build(["0123456789"])


@pytest.fixture(params=[1, None], ids=["core1", "coredefault"], autouse=True)
def core_threads(request):
    """The core on one thread, or on its default threads; a short GIL switch interval
    so the threads interleave often."""
    old = seqcore.get_num_threads()
    if request.param is not None:
        seqcore.set_num_threads(request.param)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        yield request.param
    finally:
        sys.setswitchinterval(interval)
        seqcore.set_num_threads(old)


def run_threads(work, n=THREADS):
    """work(t) in n threads started together; the results by t, or the first error raised."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def target(t):
        try:
            barrier.wait()
            results[t] = work(t)
        except BaseException as exc:          # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return results


def as_list(out):
    """forward's (y, state) as a flat list of arrays."""
    y, state = out
    return [y] + (list(state) if isinstance(state, tuple) else [state])


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def count_wrong(calls, expected, results):
    """How many of the threads' calls differ from the sequential result of that call."""
    return sum(not same(got, expected[j])
               for t, outs in enumerate(results) for j, got in zip(calls[t], outs))


def randomize(model, seed, scale=0.6):
    rng = np.random.default_rng(seed)
    for _, p, _ in model.parameters():
        p[...] = rng.uniform(-scale, scale, p.shape)


# -------------------------------------------------------------------------- layers

LAYERS = [("rnn", 1, False), ("gru", 1, False), ("lstm", 1, False),
          ("rnn", 2, False), ("gru", 2, False), ("lstm", 2, False),
          ("rnn", 2, True), ("gru", 1, True), ("lstm", 2, True)]


@pytest.mark.parametrize("cell,num_layers,bidirectional", LAYERS)
def test_forward_from_threads_matches_sequential_calls(cell, num_layers, bidirectional):
    layer = getattr(seqcore, cell.upper())(16, 32, num_layers=num_layers,
                                           bidirectional=bidirectional, seed=1)
    rng = np.random.default_rng(2)
    T, B = 20, 8
    S = num_layers * layer.num_directions
    # Eight distinct calls: full length or with lengths, zero or a given initial state.
    args = []
    for i in range(8):
        x = rng.standard_normal((T, B, 16)).astype(np.float32)
        lengths = rng.integers(1, T + 1, B) if i % 2 else None
        state = None
        if i % 4 >= 2:
            s = [rng.standard_normal((S, B, 32)).astype(np.float32) for _ in range(2)]
            state = tuple(s) if cell == "lstm" else s[0]
        args.append((x, state, lengths))
    expected = [as_list(layer.forward(*a)) for a in args]
    calls = [[(3 * t + i) % len(args) for i in range(100)] for t in range(THREADS)]

    results = run_threads(lambda t: [as_list(layer.forward(*args[j])) for j in calls[t]])
    assert count_wrong(calls, expected, results) == 0


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_one_token_steps_from_threads_match_sequential_generation(cell, num_layers):
    """T = B = 1 runs on the compiled stepper: each thread feeds its state back for STEPS
    steps, as generation does."""
    layer = getattr(seqcore, cell.upper())(32, 128, num_layers=num_layers, seed=3)
    assert layer._stepper is not None
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal((STEPS, 1, 1, 32)).astype(np.float32) for _ in range(THREADS)]

    def generate(t):
        outs, state = [], None
        for x in inputs[t]:
            y, state = layer.forward(x, state)
            outs.append(as_list((y, state)))
        return outs

    expected = [generate(t) for t in range(THREADS)]
    results = run_threads(generate)
    for t in range(THREADS):
        wrong = sum(not same(g, e) for g, e in zip(results[t], expected[t]))
        assert wrong == 0, f"thread {t}: {wrong} of {STEPS} steps differ"


def test_training_a_shared_layer_under_its_lock_matches_sequential_steps():
    """forward + backward pairs from several threads, each pair under ``layer.lock``:
    the gradients are those of the same pairs made one after another."""
    layer = seqcore.LSTM(8, 16, num_layers=2, dtype=np.float64, seed=5)
    rng = np.random.default_rng(6)
    xs = [rng.standard_normal((10, 4, 8)) for _ in range(THREADS)]
    dys = [rng.standard_normal((10, 4, 16)) for _ in range(THREADS)]

    def step(t):
        with layer.lock:
            layer.forward(xs[t])
            return layer.backward(dys[t])[0]

    layer.zero_grad()
    expected_dx = [step(t) for t in range(THREADS)] * 10
    expected_grads = {k: 10 * g for k, g in layer.grads.items()}
    layer.zero_grad()
    results = run_threads(lambda t: [step(t) for _ in range(10)])
    for t in range(THREADS):
        assert all(np.array_equal(dx, expected_dx[t]) for dx in results[t])
    for k, g in layer.grads.items():        # sums in another order: equal up to rounding
        np.testing.assert_allclose(g, expected_grads[k], rtol=1e-12, atol=1e-12, err_msg=k)


# -------------------------------------------------------------------------- models

def test_language_model_sample_from_threads():
    lm = seqcore.LanguageModel(LETTERS, cell="lstm", hidden_size=32, num_layers=2,
                               embedding_dim=8, seed=0)
    randomize(lm, 1)
    seeds = [5, 6, 7]
    expected = {s: lm.sample(3, seed=s, max_len=40) for s in seeds}
    assert len({tuple(v) for v in expected.values()}) == len(seeds)
    assert sum(len(text) for text in expected[5]) > 30          # long enough to race

    calls = [[seeds[(t + i) % 3] for i in range(50)] for t in range(THREADS)]
    results = run_threads(lambda t: [lm.sample(3, seed=s, max_len=40) for s in calls[t]])
    wrong = sum(got != expected[s] for t in range(THREADS) for s, got in zip(calls[t], results[t]))
    assert wrong == 0, f"{wrong} of {50 * THREADS} samples differ"


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_classifier_predict_from_threads(cell):
    clf = seqcore.SequenceClassifier(5, vocab=LETTERS, embedding_dim=8, cell=cell,
                                     hidden_size=24, num_layers=2, bidirectional=True, seed=2)
    randomize(clf, 3)
    rng = np.random.default_rng(4)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    batches = [["".join(rng.choice(letters, rng.integers(1, 30))) for _ in range(6)]
               for _ in range(6)]
    expected = [(clf.predict(b), clf.predict_proba(b)) for b in batches]
    calls = [[(t + 2 * i) % len(batches) for i in range(50)] for t in range(THREADS)]

    def work(t):
        return [(clf.predict(batches[j]), clf.predict_proba(batches[j])) for j in calls[t]]

    results = run_threads(work)
    assert count_wrong(calls, expected, results) == 0


def test_tagger_predict_and_evaluate_from_threads():
    tagger = seqcore.SequenceTagger(3, vocab=LETTERS, cell="lstm", hidden_size=32,
                                    num_layers=2, bidirectional=True, seed=5)
    randomize(tagger, 6)
    texts = ["hello", "threads", "a", "shared", "model", "xyz", "abcdefghijklmnopqrstuvwxyz"]
    tags = [[len(w) % 3] * len(w) for w in texts]
    expected_pred = tagger.predict(texts)
    expected_eval = tagger.evaluate((texts, tags), batch_size=4)

    def work(t):
        return [(tagger.predict(texts), tagger.evaluate((texts, tags), batch_size=4))
                for _ in range(30)]

    for outs in run_threads(work):
        for pred, ev in outs:
            assert same(pred, expected_pred) and ev == expected_eval


def test_seq2seq_translate_from_threads():
    s2s = seqcore.Seq2Seq(DIGITS, LETTERS, cell="gru", hidden_size=24, num_layers=2,
                          embedding_dim=8, seed=7)
    randomize(s2s, 8)
    sources = ["12", "3456", "7", "890123"]
    variants = [dict(), dict(greedy=False, seed=1), dict(greedy=False, seed=2)]
    expected = [s2s.translate(sources, max_len=30, **kw) for kw in variants]
    assert sum(len(t) for t in expected[1]) > 20
    calls = [[(t + i) % 3 for i in range(40)] for t in range(THREADS)]

    results = run_threads(lambda t: [s2s.translate(sources, max_len=30, **variants[j])
                                     for j in calls[t]])
    wrong = sum(got != expected[j] for t in range(THREADS) for j, got in zip(calls[t], results[t]))
    assert wrong == 0, f"{wrong} of {40 * THREADS} translations differ"


def test_loaded_model_is_thread_safe(tmp_path):
    """seqcore.load builds models through their constructors: they have their locks."""
    lm = seqcore.LanguageModel(LETTERS, cell="gru", hidden_size=24, seed=9)
    randomize(lm, 10)
    loaded = seqcore.load(lm.save(tmp_path / "lm.npz"))
    assert loaded.lock is not lm.lock and loaded.rnn.lock is not lm.rnn.lock
    expected = lm.sample(4, seed=11, max_len=40)
    assert loaded.sample(4, seed=11, max_len=40) == expected
    results = run_threads(lambda t: [loaded.sample(4, seed=11, max_len=40) for _ in range(30)])
    assert all(got == expected for outs in results for got in outs)


# ------------------------------------------------------------------------ training

def _fitted(model, times=1):
    texts = ["the quick brown fox", "jumps over", "the lazy dog", "and again"]
    for _ in range(times):
        model.fit(texts, steps=15, batch_size=2, seed=3, progress=False)
    return {name: p.copy() for name, p, _ in model.parameters()}


def _lm():
    return seqcore.LanguageModel(LETTERS, cell="lstm", hidden_size=16, embedding_dim=6, seed=12)


def test_two_threads_training_one_model_run_one_after_the_other():
    """fit holds the model's lock: two identical fits from two threads give exactly the
    weights of the two fits made one after the other (never interleaved steps)."""
    expected = _fitted(_lm(), times=2)
    shared = _lm()
    run_threads(lambda t: shared.fit(["the quick brown fox", "jumps over", "the lazy dog",
                                      "and again"], steps=15, batch_size=2, seed=3,
                                     progress=False), n=2)
    got = {name: p for name, p, _ in shared.parameters()}
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    assert shared.optimizer.t == 30


def test_inference_during_training_neither_corrupts_it_nor_sees_half_a_step():
    """Threads sampling while another trains: the trained weights are those of training
    alone, and every sample is the model's before or after training."""
    expected = _fitted(_lm())
    shared = _lm()
    before = shared.sample(2, seed=1, max_len=20)

    def work(t):
        if t == 0:
            return _fitted(shared)
        return [shared.sample(2, seed=1, max_len=20) for _ in range(40)]

    results = run_threads(work)
    assert all(np.array_equal(results[0][k], expected[k]) for k in expected)
    after = shared.sample(2, seed=1, max_len=20)
    assert all(s in (before, after) for outs in results[1:] for s in outs)


def test_a_model_with_dropout_samples_and_evaluates_from_threads_while_one_trains():
    """sample and evaluate switch the model to evaluation mode for their call: from
    threads, each gives its sequential result and no dropout mask, and training in
    another thread, in training mode throughout, gives the weights it gives alone."""
    def make():
        lm = seqcore.LanguageModel(LETTERS, cell="gru", hidden_size=16, num_layers=2,
                                   embedding_dim=8, dropout=0.3, seed=0)
        randomize(lm, 3)
        return lm

    texts = ["the quick brown fox", "jumps over", "the lazy dog"] * 4

    def fitted(model):
        model.fit(texts, steps=8, batch_size=4, seed=2, progress=False)
        return {n: p.copy() for n, p, _ in model.parameters()}

    expected = fitted(make())
    shared = make()
    held = (shared.sample(2, seed=1, max_len=20), shared.evaluate(texts)["loss"])

    def work(t):
        if t == 0:
            return fitted(shared)
        return [(shared.sample(2, seed=1, max_len=20), shared.evaluate(texts)["loss"])
                for _ in range(10)]

    results = run_threads(work)
    assert all(np.array_equal(results[0][k], expected[k]) for k in expected)
    after = (shared.sample(2, seed=1, max_len=20), shared.evaluate(texts)["loss"])
    for outs in results[1:]:                # each call sees the model before or after training
        assert all(text in (held[0], after[0]) for text, _ in outs)
        assert all(loss in (held[1], after[1]) for _, loss in outs)
    assert held != after and shared.training and shared.rnn.training and shared.drop_in.training


# ------------------------------------------------------------------ copies, pickles

def test_copies_and_pickles_have_their_own_lock_and_scratch():
    layer = seqcore.LSTM(8, 16, num_layers=2, seed=13)
    x = np.random.default_rng(14).standard_normal((5, 3, 8)).astype(np.float32)
    x1 = x[:1, :1]
    want, want1 = as_list(layer.forward(x)), as_list(layer.forward(x1))
    for other in (copy.copy(layer), copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert other.lock is not layer.lock
        assert other._workspaces is not layer._workspaces
        assert other._stepper is not None and other._stepper is not layer._stepper
        assert same(as_list(other.forward(x)), want)
        assert same(as_list(other.forward(x1)), want1)

    clf = seqcore.SequenceClassifier(3, vocab=LETTERS, hidden_size=8, seed=15)
    for other in (copy.deepcopy(clf), pickle.loads(pickle.dumps(clf))):
        assert other.lock is not clf.lock and other.rnn.lock is not clf.rnn.lock
        assert np.array_equal(other.predict_proba(["abc", "de"]), clf.predict_proba(["abc", "de"]))
