"""examples/budget_table.py: the combined table and the issue's targets, checked on a made-up record."""
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def budget_table():
    spec = importlib.util.spec_from_file_location("budget_table", os.path.join(ROOT, "examples", "budget_table.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(model, objective, rate, code):
    return dict(model=model, architecture="skip" if model.startswith("ride") else None,
                objective=None if model == "gaussian" else objective, density_rate=rate, code_length=code)


RECORD = {"sets": {
    "photos": {"held_out": {}, "codecs": {"JPEG-XL lossless": 3.80, "lzma": 4.9},
               "rows": [row("gaussian", None, 2.0, 5.6), row("mcgsm5", "density", 4.00, 3.90),
                        row("ride1", "density", 4.06, 3.85), row("ride2", "density", 4.03, 3.78)]},
    "flat_dead_leaves": {"held_out": {}, "codecs": {"lzma": 1.10},
                         "rows": [row("mcgsm5", "discrete", 5.0, 1.30), row("ride1", "discrete", 4.9, 1.20)]},
}}


def test_the_targets_are_checked_on_the_trained_for_score(budget_table):
    text = budget_table.combined_tables([json.loads(json.dumps(RECORD))])
    lines = {line.split(":")[0]: line for line in text.splitlines() if line.startswith("- ")}
    photos = lines["- photos (density)"]
    assert "RIDE 1 layer +0.060 bit/px of density rate over the MCGSM 5 px (met" in photos
    assert "RIDE 2 layers +0.030 bit/px of density rate over the MCGSM 5 px (NOT met" in photos
    assert "2 layers -0.030 against 1 (NOT met)" in photos
    assert "RIDE 2 layers code length 3.780 against JPEG-XL lossless 3.800 (met)" in photos
    flat = lines["- flat dead leaves (discrete)"]            # trained for the code length: compared on it
    assert "RIDE 1 layer +0.100 bit/px of code length over the MCGSM 5 px (met" in flat
    assert "code length 1.200 against lzma 1.100 (NOT met)" in flat
    assert "| photos | density | 5.600 | 3.900 | 3.850 | **3.780** | 3.800 | 4.900 |" in text


def test_render_refuses_missing_files(budget_table, tmp_path):
    with pytest.raises(SystemExit, match="cannot read"):
        budget_table.main(["--render", str(tmp_path / "missing.json")])
