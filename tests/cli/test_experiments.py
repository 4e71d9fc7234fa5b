"""Long-range tasks, the adding model, the experiments and `seqcore experiment`: all fast."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import numeric_grad
import seqcore
from seqcore import experiments as E
from seqcore.cli import main
from seqcore.diagnostics import gradient_norms

EPS = 1e-6
PNG = b"\x89PNG\r\n\x1a\n"


# -------------------------------------------------------------------------- tasks

@pytest.mark.parametrize("lag", [2, 10, 25, 37])
def test_adding_batch_marks_two_steps_and_sums_their_values(lag, rng):
    x, y = E.adding_batch(lag, 200, rng, np.float64)
    assert x.shape == (lag, 200, 2) and y.shape == (200,) and x.dtype == np.float64
    assert ((x[:, :, 0] >= 0) & (x[:, :, 0] < 1)).all()
    for b in range(200):
        marked = np.flatnonzero(x[:, b, 1])
        assert len(marked) == 2 and set(x[:, b, 1]) <= {0.0, 1.0}
        first, second = marked
        assert first < math.ceil(lag / 10)                    # first 10% of the steps
        assert lag // 2 <= second < lag                       # second half
        assert y[b] == x[first, b, 0] + x[second, b, 0]


def test_adding_baseline_of_always_predicting_one_is_one_sixth():
    _, y = E.adding_batch(10, 200_000, np.random.default_rng(0), np.float64)
    assert np.mean((y - 1) ** 2) == pytest.approx(1 / 6, abs=0.003)
    assert E.ADDING_BASELINE == pytest.approx(0.1667, abs=1e-4)


def test_adding_batch_refuses_a_lag_below_two(rng):
    with pytest.raises(ValueError, match="lag"):
        E.adding_batch(1, 4, rng)


def test_copy_batch_layout(rng):
    A, K, N, B = 6, 4, 7, 50
    x, y, mask = E.copy_batch(N, B, rng, symbols=A, length=K, dtype=np.float64)
    T = 2 * K + N + 1
    assert x.shape == (T, B, A + 2) and y.shape == (T, B) and mask.shape == (T, B)
    assert (x.sum(axis=2) == 1).all()                         # 1-hot everywhere
    ids = x.argmax(axis=2)
    assert (ids[:K] < A).all()                                # the symbols
    assert (ids[K:K + N] == A).all() and (ids[K + N + 1:] == A).all()   # blanks
    assert (ids[K + N] == A + 1).all()                        # go
    np.testing.assert_array_equal(mask, np.r_[np.zeros(K + N + 1), np.ones(K)][:, None]
                                  * np.ones(B))
    np.testing.assert_array_equal(y[K + N + 1:], ids[:K])     # recall in order
    assert (y[:K + N + 1] == 0).all()


# -------------------------------------------------------------------------- model

CELLS = list(E.CELLS)


def _model(cell, backend="numpy", H=4):
    kind, opts = E.CELLS[cell]
    model = E.AddingRegressor(cell=kind, hidden_size=H, dtype=np.float64, backend=backend,
                              seed=3, **opts)
    rng = np.random.default_rng(7)
    for _, p, _ in model.parameters():                        # random biases too
        p[...] = rng.uniform(-0.6, 0.6, p.shape)
    return model


@pytest.mark.parametrize("cell", CELLS)
def test_regressor_gradients_against_finite_differences(cell, rng):
    model = _model(cell)
    x, y = E.adding_batch(6, 3, rng, np.float64)
    batch = {"x": x, "y": y}
    model.zero_grad()
    model.loss_and_grads(batch)
    worst = 0.0
    for name, p, g in model.parameters():
        nums = numeric_grad(lambda: model.loss_and_grads(batch, backward=False)[0], p, EPS)
        for i, num in enumerate(nums.reshape(-1)):
            analytic = g.reshape(-1)[i]
            worst = max(worst, abs(analytic - num) / max(abs(num), 1e-6))
            assert analytic == pytest.approx(num, rel=1e-6, abs=1e-9), f"{name}[{i}]"
    print(f"{cell}: max rel err {worst:.2e}")


@pytest.mark.parametrize("cell", CELLS)
def test_regressor_gradient_flow_ends_with_the_upstream_gradient(cell, rng):
    """Loss at the last step only: ||dC/da<T>|| = ||dC/dy_hat * W_y||, and both backends agree."""
    x, y = E.adding_batch(12, 5, rng, np.float64)
    norms = {}
    for backend in ("numpy", "cython"):
        model = _model(cell, backend)
        model.zero_grad()
        model.loss_and_grads({"x": x, "y": y})
        y_hat = model.forward(x)
        dh = (2 / len(y)) * (y_hat - y)[:, None] * model.out.params["W"]   # (B, H)
        norms[backend] = gradient_norms(model.rnn)[:, 0]
        assert norms[backend][-1] == pytest.approx(np.linalg.norm(dh), rel=1e-12)
        assert (norms[backend][:-1] > 0).all()
    np.testing.assert_allclose(norms["cython"], norms["numpy"], rtol=1e-10)


# ---------------------------------------------------------------------- experiments

def test_a_short_lstm_run_solves_the_adding_problem_at_lag_20():
    r = E.run_adding("lstm", 20, steps=1000, seed=0, eval_every=200, valid_size=500)
    assert r["final_mse"] < 0.2 * r["baseline_mse"] and r["solved"] and not r["diverged"]
    assert r["steps_done"] <= 1000 and r["curve"][-1] == (r["steps_done"], r["final_mse"])
    assert len(r["grad_norms_init"]["a"]) == 20 and len(r["grad_norms_end"]["c"]) == 20
    assert set(r["gates_end"]) == {"gamma_u", "gamma_f", "gamma_o"}
    # What BPTT carries back to the first marker: far more after training than at init.
    start, end = r["grad_norms_init"]["a"], r["grad_norms_end"]["a"]
    assert end[0] / end[-1] > 10 * start[0] / start[-1]


def test_the_rnn_gradient_vanishes_faster_than_the_lstm_at_initialization():
    flow = {}
    for cell in ("rnn", "lstm"):
        r = E.run_adding(cell, 30, steps=1, seed=0, valid_size=300)
        g = np.asarray(r["grad_norms_init"]["a"])
        flow[cell] = g[0] / g[-1]
    assert flow["rnn"] < flow["lstm"] < 1


def test_exploding_diverges_without_clipping_and_converges_with_it():
    res = E.run_exploding(20, steps=1500, seed=0)
    unclipped, clipped = res["unclipped"], res["clipped"]
    assert unclipped["diverged"].startswith("training diverged at step")
    assert unclipped["final_mse"] is None and not unclipped["solved"]
    assert clipped["diverged"] is None
    assert math.isfinite(clipped["final_mse"]) and clipped["final_mse"] < 0.5 * E.ADDING_BASELINE
    assert clipped["grad_norms_init"] == unclipped["grad_norms_init"]    # the same start


def test_copy_runs_and_reports_against_chance():
    r = E.run_copy("gru", 3, steps=40, hidden=8, eval_every=20, valid_size=64, length=3)
    assert r["task"] == "copy" and r["steps_done"] == 40 and len(r["curve"]) == 2
    assert 0 <= r["final_accuracy"] <= 1 and r["baseline_loss"] == pytest.approx(math.log(8))
    assert len(r["grad_norms_init"]["a"]) == 2 * 3 + 3 + 1


def test_markdown_table_counts_seeds():
    def run(cell, lag, solved, mse, steps=500, diverged=None):
        return {"cell": cell, "lag": lag, "solved": solved, "final_mse": mse,
                "steps_done": steps, "diverged": diverged}
    table = E.markdown_table([run("rnn", 10, True, 0.005, 750), run("rnn", 10, False, 0.16, 2000),
                              run("lstm", 10, True, 0.002, 250), run("lstm", 10, True, 0.004),
                              run("rnn", 50, False, None, 3, "training diverged at step 3")])
    lines = table.splitlines()
    assert lines[0] == "| cell | lag 10 | lag 50 |"
    assert lines[2] == "| rnn | 1/2 solved, MSE 0.0825, 750 steps | 0/1 solved, 1 diverged |"
    assert lines[3].startswith("| lstm | **2/2 solved**, MSE 0.0030, 250-500 steps |")


def test_experiments_check_their_arguments():
    with pytest.raises(ValueError, match="cell"):
        E.run_adding("transformer", 10)
    with pytest.raises(ValueError, match="nonlinearity"):
        E.run_adding("lstm", 10, nonlinearity="relu")
    with pytest.raises(ValueError, match="clip"):
        E.run_exploding(10, clip=0)


# ----------------------------------------------------------------------------- CLI

def test_cli_adding_prints_the_result_and_writes_plot_and_json(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png, js = tmp_path / "flow.png", tmp_path / "r.json"
    assert main(["experiment", "adding", "--cell", "gru", "--lag", "10", "--steps", "500",
                 "--plot", str(png), "--json", str(js)]) == 0
    out = capsys.readouterr()
    assert "adding lag 10, gru: held-out MSE" in out.out and "gradient reaching t = 1" in out.out
    assert "step 250: held-out MSE" in out.err
    assert png.read_bytes()[:8] == PNG
    r = json.loads(js.read_text())
    assert r["cell"] == "gru" and r["lag"] == 10 and len(r["grad_norms_end"]["a"]) == 10


def test_cli_exploding_reports_both_outcomes(tmp_path, capsys):
    png = tmp_path / "x.png"
    assert main(["experiment", "exploding", "--steps", "2000", "--quiet",
                 "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "without clipping: diverged at step" in out
    assert "with clipping at 1: converged, held-out MSE" in out
    assert png.read_bytes()[:8] == PNG


def test_cli_table_prints_markdown_and_plots_the_longest_lag(tmp_path, capsys):
    png, js = tmp_path / "t.png", tmp_path / "t.json"
    assert main(["experiment", "table", "--cells", "rnn,lstm", "--lags", "4,8", "--steps",
                 "50", "--seeds", "2", "--quiet", "--plot", str(png), "--json", str(js)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| cell | lag 4 | lag 8 |"
    assert out[2].startswith("| rnn | ") and out[3].startswith("| lstm | ")
    assert "8 runs in" in out[5]
    assert out[7].startswith("Gates after training, lag 8, seed 0")
    assert "Γf mean (saturated)" in out[9] and out[11].startswith("| lstm | 0.")
    runs = json.loads(js.read_text())["runs"]
    assert len(runs) == 8 and {r["seed"] for r in runs} == {0, 1}
    assert png.read_bytes()[:8] == PNG


def test_cli_copy(capsys):
    assert main(["experiment", "copy", "--cell", "rnn", "--lag", "2", "--length", "2",
                 "--steps", "20", "--hidden", "8", "--quiet"]) == 0
    assert "copy lag 2, rnn: held-out accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["experiment", "adding", "--lag", "1"], "lag"),
    (["experiment", "adding", "--json", "/nonexistent/dir/r.json"], "does not exist"),
    (["experiment", "exploding", "--clip", "0"], "--clip"),
])
def test_cli_errors_are_one_line(argv, match, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("seqcore: error:") and err.count("\n") == 1 and match in err


@pytest.mark.parametrize("argv", [
    ["experiment"], ["experiment", "adding", "--cell", "transformer"],
    ["experiment", "table", "--lags", "10,x"], ["experiment", "table", "--cells", "rnn,cnn"],
    ["experiment", "copy", "--steps", "0"],
])
def test_cli_bad_options_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err


def test_cli_plot_without_matplotlib_is_one_line_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)        # import fails
    assert main(["experiment", "adding", "--steps", "100000", "--plot",
                 str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matplotlib" in err and "seqcore[plot]" in err


def test_python_dash_m_seqcore_experiment(tmp_path):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(seqcore.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "seqcore", "experiment", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
    r = run("adding", "--lag", "5", "--steps", "20", "--quiet")
    assert r.returncode == 0 and "adding lag 5, lstm: held-out MSE" in r.stdout
    r = run("copy", "--lag", "-3")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    for sub in ("adding", "copy", "exploding", "table"):
        r = run(sub, "--help")
        assert r.returncode == 0 and f"usage: seqcore experiment {sub}" in r.stdout
