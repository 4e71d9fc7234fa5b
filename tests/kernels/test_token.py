"""forward_token: a language model's token in one compiled call (the embedding's row,
every layer's step, the output layer's product), the loop of generation.

Held to the three forwards it stands for (the same kernels: the same numbers with
int8 weights), to the NumPy reference layers, and to the errors those forwards raise.
"""
import numpy as np
import pytest

import seqcore
from _cases import CELL_IDS, copy_params, make_layer, random_state, state_list
from conftest import DTYPES, assert_close

pytestmark = pytest.mark.usefixtures("kernel_path")    # every kernel path the CPU runs

V_IN, D, H, V = 23, 40, 36, 257                      # partial blocks of rows and columns


def lm_layers(cell, dtype, backend, num_layers=2, seed=0):
    """(embedding, recurrent layer, output layer) of a small language model."""
    emb = seqcore.Embedding(V_IN, D, dtype=dtype, backend=backend, seed=seed)
    rnn = make_layer(cell, D, H, dtype=dtype, backend=backend, seed=seed + 1,
                     num_layers=num_layers)
    out = seqcore.Dense(H, V, dtype=dtype, backend=backend, seed=seed + 2)
    out.params["b"][:] = np.linspace(-0.5, 0.5, V)
    return emb, rnn, out


def same_weights(dst, src):
    for d, s in zip(dst, src):
        copy_params(d, s)


def by_forwards(emb, rnn, out, ids, state):
    a, state = rnn.forward(emb.forward(ids), state)
    return out.forward(a), state


def run(step, tokens, state=None):
    """The logits and final states of feeding tokens one at a time."""
    logits, states = [], []
    for t in tokens:
        y, state = step(np.array([[t]], np.int64), state)
        logits.append(y)
        states.append(state_list(state))
    return np.concatenate(logits), states


TOKENS = [-1, 0, 22, 5, 5, 11]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cell", CELL_IDS)
@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8"])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_token_in_one_call_is_the_three_forwards(cell, dtype, int8, threads, rng):
    """Every cell, two layers, float and int8 weights, one and two threads: the
    logits and states of a generation loop against the three forwards (the same
    numbers with int8 weights; with float weights the output layer's one-row product
    differs from the batched one in rounding only), and against the NumPy reference
    layers."""
    layers = lm_layers(cell, dtype, "cython")
    twins = lm_layers(cell, dtype, "numpy")
    same_weights(twins, layers)
    if int8:
        layers = tuple(seqcore.quantize(layer) for layer in layers)
        twins = tuple(seqcore.quantize(layer) for layer in twins)
    emb, rnn, out = layers
    state0 = random_state(rnn, 1, rng)
    with seqcore.limit_threads(threads):
        assert rnn._stepper.token(np.array([[3]]), state0, emb, out, threads) is not None
        got, got_states = run(lambda i, s: rnn.forward_token(i, emb, out, s), TOKENS, state0)
        want, want_states = run(lambda i, s: by_forwards(emb, rnn, out, i, s), TOKENS, state0)
    ref, ref_states = run(lambda i, s: by_forwards(*twins, i, s), TOKENS, state0)
    if int8:
        np.testing.assert_array_equal(got, want)
        for g, w in zip(got_states, want_states):
            for a, b in zip(g, w):
                np.testing.assert_array_equal(a, b)
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got, ref, **tol)          # the int8 x int8 twin
    else:
        assert_close(got, want, dtype, "logits vs the three forwards")
        assert_close(got, ref, dtype, "logits vs the reference")
        for g, r in zip(got_states, ref_states):
            for a, b in zip(g, r):
                assert_close(a, b, dtype, "state vs the reference")


def test_the_layers_backward_runs_after_it_and_the_others_refuse(rng):
    """The recurrent layer keeps its cache (its backward is the reference's); the
    embedding and the output layer kept nothing, so theirs raise as before any
    forward instead of using an older call's inputs."""
    emb, rnn, out = lm_layers("lstm", np.float64, "cython", num_layers=1)
    ref = make_layer("lstm", D, H, dtype=np.float64, backend="numpy", seed=1)
    copy_params(ref, rnn)
    state = random_state(rnn, 1, rng)
    out.forward(np.zeros((1, 1, H)))                  # an older forward of each
    emb.forward(np.array([[1]]))
    rnn.forward_token(np.array([[4]]), emb, out, state)
    assert rnn._cache is rnn._stepper.cache
    dy = rng.standard_normal((1, 1, H))
    rnn.zero_grad()
    dx, _ = rnn.backward(dy)
    ref.forward(emb.params["W"][4][None, None], state)
    dx_ref, _ = ref.backward(dy)
    assert_close(dx, dx_ref, np.float64, "dx")
    with pytest.raises(ValueError, match="before forward"):
        out.backward(np.zeros((1, 1, V)))
    with pytest.raises(ValueError, match="before forward"):
        emb.backward(np.zeros((1, 1, D)))


def test_anything_else_takes_the_three_forwards_and_their_errors(rng):
    emb, rnn, out = lm_layers("gru", np.float32, "cython", num_layers=1)
    state = random_state(rnn, 1, rng)
    ids = np.array([[7]])
    want, _ = by_forwards(emb, rnn, out, ids, state)
    # int32 ids, a list of ids: not the compiled call, the same logits
    assert rnn._stepper.token(ids.astype(np.int32), state, emb, out, 1) is None
    for other in (ids.astype(np.int32), [[7]]):
        got, _ = rnn.forward_token(other, emb, out, state)
        assert_close(got, want, np.float32, "logits")
    with pytest.raises(ValueError, match=r"ids: expected ids in \[0, 23\)"):
        rnn.forward_token(np.array([[23]]), emb, out, state)
    with pytest.raises(ValueError, match=r"ids: expected ids in \[0, 23\)"):
        rnn.forward_token(np.array([[-2]]), emb, out, state)
    bad = state.copy()
    bad[0, 0, 3] = np.nan
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        rnn.forward_token(ids, emb, out, bad)
    with pytest.raises(TypeError, match="embedding: expected an Embedding"):
        rnn.forward_token(ids, out, out, state)
    with pytest.raises(TypeError, match="out: expected a Dense layer"):
        rnn.forward_token(ids, emb, emb, state)
    wide = seqcore.Dense(H + 1, V, dtype=np.float32, seed=0)   # does not read H values
    assert rnn._stepper.token(ids, state, emb, wide, 1) is None
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., \.\.\., 37\)"):
        rnn.forward_token(ids, emb, wide, state)
    saved = out.params["b"]
    out.params["b"] = saved.astype(np.float64)
    with pytest.raises(TypeError, match=r"params\['b'\]: expected dtype float32"):
        rnn.forward_token(ids, emb, out, state)
    out.params["b"] = saved
    got, _ = rnn.forward_token(ids, emb, out, state)          # and it works afterwards
    assert_close(got, want, np.float32, "logits")


def test_a_language_model_generates_through_it(rng):
    """LanguageModel.forward of one token in evaluation mode is the compiled call:
    the same logits and states as the layer by layer path of training mode."""
    vocab = seqcore.Vocab.build(["the cat sat on the mat", "a dog ran"], level="word")
    lm = seqcore.LanguageModel(vocab, hidden_size=24, embedding_dim=16, num_layers=2,
                               cell="lstm", seed=0)
    for model in (lm, seqcore.quantize(lm)):
        model.eval()
        state, evals = None, []
        for t in (1, 4, 2):
            logits, state = model.forward(np.array([[t]]), state)
            evals.append((logits, state))
        assert model.rnn._cache is model.rnn._stepper.cache
        model.train()
        state = None
        for t, (logits_eval, state_eval) in zip((1, 4, 2), evals):
            logits, state = model.forward(np.array([[t]]), state)
            assert_close(logits_eval, logits, np.float32, "logits")
            for a, b in zip(state_eval, state):
                assert_close(a, b, np.float32, "state")


def test_two_threads_on_one_layer_get_what_each_gets_alone(rng):
    """Two Python threads feed their own tokens through the same three layers at once:
    the layer's lock runs the compiled calls one at a time (the stepper's buffers
    and the call's state pointers are the layer's), so each thread's logits and
    states are those of its loop run alone."""
    import threading
    layers = tuple(seqcore.quantize(layer) for layer in lm_layers("lstm", np.float32, "cython"))
    emb, rnn, out = layers
    streams = [list(rng.integers(-1, V_IN, size=40)) for _ in range(2)]
    step = lambda i, s: rnn.forward_token(i, emb, out, s)          # noqa: E731
    alone = [run(step, tokens) for tokens in streams]
    got, errors = [None, None], []

    def work(k):
        try:
            for _ in range(5):
                got[k] = run(step, streams[k])
                np.testing.assert_array_equal(got[k][0], alone[k][0])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (logits, states), (want, want_states) in zip(got, alone):
        np.testing.assert_array_equal(logits, want)
        for g, w in zip(states, want_states):
            for a, b in zip(g, w):
                np.testing.assert_array_equal(a, b)
