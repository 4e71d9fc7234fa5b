"""`seqcore ocr-demo` runs end to end on a short schedule, writes its plot, and refuses a
bad --plot path in one line. (Its full run, the defaults, is a documented figure.)"""
import os

from seqcore.cli import main


def test_a_short_run_prints_error_rates_and_writes_the_plot(tmp_path, capsys):
    plot = tmp_path / "ocr.png"
    rc = main(["ocr-demo", "--steps", "30", "--train-size", "200", "--test-size", "20",
               "--hidden", "16", "--examples", "2", "--quiet", "--plot", str(plot),
               "--save", str(tmp_path / "ocr.npz")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "held-out: character error rate" in out and "word error rate" in out
    assert out.count(" read as ") == 2
    assert plot.exists() and os.path.getsize(plot) > 1000
    assert (tmp_path / "ocr.npz").exists()


def test_a_bad_plot_folder_is_one_line(tmp_path, capsys):
    rc = main(["ocr-demo", "--steps", "1", "--plot", str(tmp_path / "no" / "x.png")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("seqcore: error: --plot") and err.count("\n") == 1
