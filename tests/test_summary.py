from support import run_script

from ssd.cli.main import main


def test_seed_test_8mp_figures(capsys):
    assert main(["summary", "--config", "test_8MP", "--num-classes", "10", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "[4, 4, 788144]" in out
    assert "Total params: 14,059,236" in out
    assert "Feature sizes: (270, 480), (135, 240), (68, 120), (34, 60), (32, 58), (30, 56)" in out
    assert "Default boxes: 788,144" in out and "Mult-adds: 5.56 T" in out


def test_seed_script_and_bad_config(capsys):
    assert run_script("model_summary.py", ["--config", "coco_300x300", "--num-classes", "81"]) == 0
    assert "Default boxes: 8,732" in capsys.readouterr().out
    assert run_script("model_summary.py", ["--config", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: config 'nope' not found")
