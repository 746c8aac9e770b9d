"""The effnet-edu command: text and --json output, checked against the library and the reference numbers."""

import json
import subprocess
import sys

import pytest

from effnet_edu.cli import main

from reference import PARAMS


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_json_b0(capsys):
    code, out, _ = run(capsys, "info", "b0", "--json")
    assert code == 0
    info = json.loads(out)
    assert (info["name"], info["width"], info["depth"], info["resolution"]) == ("b0", 1.0, 1.0, 224)
    assert info["params"] == PARAMS["b0"]
    assert [s["out_channels"] for s in info["stages"]] == [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert [s["layers"] for s in info["stages"]] == [1, 1, 2, 2, 3, 3, 4, 1, 1]
    assert set(info["stages"][1]) >= {"operator", "kernel", "stride", "in_channels", "out_channels", "layers",
                                      "resolution"}


def test_info_text_b7(capsys):
    code, out, _ = run(capsys, "info", "b7")
    assert code == 0 and "parameters: 66,347,960" in out and "600x600" in out


def test_info_compound_and_explicit(capsys):
    _, out, _ = run(capsys, "info", "--phi", "1", "--json")
    info = json.loads(out)
    assert (info["width"], info["depth"], info["resolution"]) == (1.1, 1.2, 258)
    assert info["compound"]["flops_factor"] == pytest.approx(1.2 * 1.1**2 * 1.15**2)
    _, out, _ = run(capsys, "info", "--width", "1.2", "--depth", "1.4", "--resolution", "300", "--json")
    assert json.loads(out)["params"] == 12_233_232  # the same point as B3


@pytest.mark.parametrize("argv, message", [
    (["info", "b9"], "did you mean b7"),
    (["info", "--phi", "-1"], "phi must be >= 0"),
    (["info", "--phi", "nan"], "phi must be a finite number"),
    (["info", "--phi", "1", "--alpha", "0.5"], "alpha must be >= 1"),
    (["info", "--width", "0.01"], "rounds to nothing"),
    (["info", "--resolution", "8"], "too small"),
    (["info"], "give a model"),
])
def test_info_errors(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_predict_json_on_real_photo(capsys, tmp_path):
    from effnet_edu.images import sample_photos

    path = tmp_path / "cat.jpg"
    sample_photos()["chelsea"].save(path, quality=95)
    code, out, _ = run(capsys, "predict", "--model", "lite0", str(path), "--top", "5", "--json")
    assert code == 0
    result = json.loads(out)
    assert result[0]["image"] == str(path) and len(result[0]["top"]) == 5
    top = result[0]["top"][0]
    assert top["label"] in {"tabby", "tiger cat", "Egyptian cat"} and 0 < top["probability"] <= 1
    probs = [t["probability"] for t in result[0]["top"]]
    assert probs == sorted(probs, reverse=True)


def test_predict_bad_image_is_one_line(capsys, tmp_path):
    bad = tmp_path / "doc.png"
    bad.write_text("hello")
    code, _, err = run(capsys, "predict", str(bad))
    assert code == 2 and "doc.png: not an image file" in err and "Traceback" not in err


@pytest.mark.slow  # a fresh interpreter imports torch: ~10-30 s on 2 busy cores
def test_python_dash_m_is_the_same_command():
    out = subprocess.run([sys.executable, "-m", "effnet_edu", "info", "lite0", "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["params"] == 4_652_008
