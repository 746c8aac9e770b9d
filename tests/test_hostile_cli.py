"""A careless user at the command line (issue 11): every mistake is one line on stderr and exit status 2, an
unforeseen error is one line, exit status 1 and a way to see the traceback, and nothing is written on failure."""

import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from effnet_edu import cli
from effnet_edu.cli import main


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit:  # argparse's errors leave through SystemExit
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("careless")
    (root / "notes.txt").write_text("hello")
    (root / "folder").mkdir()
    (root / "truncated.pt").write_bytes(b"PK\x03\x04" + bytes(100))
    import torch

    torch.save({"weights": torch.zeros(3), "note": "x"}, root / "odd.pt")
    return root


# Mistakes caught before any model is loaded (argparse types and early checks): fast.
@pytest.mark.parametrize("argv, message", [
    (["predict", "chelsea", "--top", "0"], "argument --top: must be >= 1, got 0"),
    (["predict", "chelsea", "--top", "-3"], "argument --top: must be >= 1, got -3"),
    (["predict", "chelsea", "--top", "five"], "argument --top: expected a whole number >= 1, got 'five'"),
    (["cam", "chelsea", "--alpha", "1.5"], "argument --alpha: must be between 0 and 1, got 1.5"),
    (["cam", "chelsea", "--alpha", "nan"], "argument --alpha: must be between 0 and 1, got nan"),
    (["cam", "chelsea", "--class", "-1"], "argument --class: a class index is >= 0, got -1"),
    (["info", "b0", "--num-classes", "0"], "argument --num-classes: must be >= 1, got 0"),
    (["info", "b0", "--resolution", "0"], "resolution 0 is too small"),
    (["info", "--phi", "1", "--alpha", "0.5"], "alpha must be >= 1, got 0.5"),
    (["info", "bo"], "did you mean b0?"),
    (["predict", "{root}/photo.jpg"], "photo.jpg: no such file (or use a bundled photo: astronaut, chelsea"),
    (["predict", "{root}/folder"], "folder: is a folder, not an image file"),
    (["predict", "{root}/notes.txt"], "notes.txt: not an image file"),
    (["predict", "sample:dog"], "no bundled photo 'dog'"),
    (["predict", "chelsea", "--weights", "{root}/folder"], "argument --weights: {root}/folder is a folder"),
    (["predict", "chelsea", "--weights", "{root}/none.pt"], "argument --weights: {root}/none.pt: no such file"),
    (["cam", "chelsea", "--out", "{root}/folder"], "argument --out: {root}/folder is a folder"),
    (["cam", "chelsea", "--out", "{root}/missing/cam.png"], "the folder {root}/missing does not exist"),
    (["cam", "chelsea", "--out", "{root}/notes.txt/cam.png"], "the folder {root}/notes.txt does not exist"),
    (["cam", "chelsea", "--out", "{root}/cam.xyz"], "cannot tell the image format of {root}/cam.xyz"),
    (["cam", "chelsea", "--out", "/proc/1/cam.png"], "cannot write /proc/1/cam.png: permission denied"),  # root too
    (["cam", "chelsea", "--method", "nonsense"], "unknown CAM method 'nonsense'"),
    (["predict"], "the following arguments are required: IMAGE"),
])
def test_mistakes_before_any_model_is_loaded(capsys, files, argv, message):
    code, out, err = run(capsys, *[a.format(root=files) for a in argv])
    assert code == 2 and message.format(root=files) in err, err
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""


# Mistakes that need the model (a class or layer it does not have, weights that do not fit it).
@pytest.mark.parametrize("argv, message", [
    (["cam", "chelsea", "--class", "5000", "--out", "{root}/never.png"], "target class 5000 is out of range"),
    (["cam", "chelsea", "--layer", "nonsense", "--out", "{root}/never.png"], "unknown layer 'nonsense'"),
    (["predict", "chelsea", "--top", "2000"], "--top 2000 is more than the model's 1000 classes"),
    (["predict", "chelsea", "--weights", "{root}/truncated.pt"], "truncated.pt is not a readable PyTorch checkpoint"),
    (["predict", "chelsea", "--weights", "{root}/odd.pt"], "odd.pt holds no state dict of tensors"),
    (["predict", "chelsea", "--model", "b1", "--weights", "{root}/b0.pt"], "do not fit b1"),
])
def test_mistakes_found_with_the_model_write_nothing(capsys, files, argv, message):
    import effnet_edu as ee
    from effnet_edu.weights import save_weights

    if not (files / "b0.pt").exists():
        save_weights(ee.build("b0"), files / "b0.pt")
    code, out, err = run(capsys, *[a.format(root=files) for a in argv])
    assert code == 2 and message.format(root=files) in err, err
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""
    assert not (files / "never.png").exists()


def test_pickle_with_code_is_refused_without_running_it(capsys, tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "evil.pt").write_bytes(  # pickle protocol 0: os.system("touch <marker>") when unpickled
        f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    code, _, err = run(capsys, "predict", "chelsea", "--weights", str(tmp_path / "evil.pt"))
    assert code == 2 and "evil.pt is not a readable PyTorch checkpoint" in err and err.count("\n") == 1
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_out_into_a_read_only_folder(capsys, tmp_path):
    tmp_path.chmod(0o555)
    try:
        code, _, err = run(capsys, "cam", "chelsea", "--out", str(tmp_path / "cam.png"))
    finally:
        tmp_path.chmod(0o755)
    assert code == 2 and "permission denied" in err


def test_unforeseen_error_is_one_line_with_how_to_see_the_traceback(capsys, monkeypatch):
    def broken(args):
        raise KeyError("stage10")

    monkeypatch.setattr(cli, "cmd_info", broken)
    code, out, err = run(capsys, "info", "b0")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "internal error: KeyError: 'stage10'" in err and "--debug" in err and "EFFNET_EDU_DEBUG=1" in err
    with pytest.raises(KeyError):  # --debug (before or after the command) lets the traceback through
        main(["info", "b0", "--debug"])
    with pytest.raises(KeyError):
        main(["--debug", "info", "b0"])
    monkeypatch.setenv("EFFNET_EDU_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["info", "b0"])


def test_predict_takes_a_bundled_photo_by_name(capsys):
    code, out, _ = run(capsys, "predict", "--model", "lite0", "chelsea", "sample:chelsea", "--json", "--top", "1")
    assert code == 0
    by_name, by_prefix = json.loads(out)
    assert by_name["image"] == "chelsea" and by_name["top"] == by_prefix["top"]
    assert by_name["top"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}  # skimage's chelsea is a tabby


def jet_values(picture: np.ndarray) -> np.ndarray:
    """Invert matplotlib's jet colormap: the map value (0..1) whose colour is nearest to each pixel."""
    import matplotlib

    table = (matplotlib.colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)  # (256, 3)
    pixels = picture.reshape(-1, 3).astype(np.float32)
    nearest = ((pixels[:, None, :] - table[None]) ** 2).sum(-1).argmin(1)
    return (nearest / 255).reshape(picture.shape[:2])


def test_cam_out_is_drawn_on_the_original_image_where_peak_says(capsys, tmp_path):
    out_file = tmp_path / "cam.png"
    code, out, _ = run(capsys, "cam", "--model", "lite0", "chelsea", "--alpha", "1", "--out", str(out_file), "--json")
    assert code == 0
    result = json.loads(out)
    picture = np.asarray(Image.open(out_file).convert("RGB"))
    assert picture.shape == (300, 451, 3) and result["out_size"] == [451, 300]  # the original photo's size
    values = jet_values(picture)
    x, y = result["peak"]
    assert values[y, x] >= values.max() - 0.02  # the reported peak is where the picture is hottest
    # Outside the centre crop the model saw (a 300 x 300 crop of 451 x 300 after resizing) the map is 0.
    assert values[:, :40].max() < 0.05 and values[:, -40:].max() < 0.05


def test_dev_lab_allows_root():
    script = open(os.path.join(os.path.dirname(__file__), "..", "dev")).read()
    lab = script[script.index("  lab)"):script.index("  test)")]
    assert '"$(id -u)" = 0' in lab and "--allow-root" in lab
    check = subprocess.run(["bash", "-n", os.path.join(os.path.dirname(__file__), "..", "dev")])
    assert check.returncode == 0


def test_help_does_not_fail(capsys):
    for command in ("info", "predict", "cam"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and "--debug" in out
