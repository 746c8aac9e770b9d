"""Size before allocation (issue 11): a few characters must not make the process eat all memory.

Oracles: Table 1's layer counts and ceil(layers * alpha^phi) for the number of blocks, B0's 5,288,548
parameters (torchvision's efficientnet_b0 and the paper's 5.3M) plus 1281 per extra class (a 1280 -> n FC layer
with bias), and the operating system's accounting of a child process's memory (RLIMIT_DATA).
"""

import json
import math
import os
import re
import resource
import subprocess
import sys

import pytest
import torch

import effnet_edu as ee
from effnet_edu.limits import MAX_BLOCKS, SizeError, size_limits
from effnet_edu.scaling import ScalingError
from effnet_edu.weights import from_file, save_weights

TABLE1_LAYERS = (1, 2, 2, 3, 3, 4, 1)
B0_PARAMS = 5_288_548
MEMORY_LIMIT = 1536 * 2**20  # a normal `info`/`predict` needs well under this (measured: ~0.9 GiB with torch)


CHILD = """
import contextlib, io, json, os, sys
from effnet_edu.cli import main
results = []
for argv, env in json.loads(sys.argv[1]):
    os.environ.update(env)  # the size limits are read from the environment at each check
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
    for key in env:
        del os.environ[key]
print(json.dumps(results))
"""


def run_limited(*commands):
    """Run CLI commands (lists of arguments, or (arguments, environment)) in one child process whose heap may not pass MEMORY_LIMIT
    (RLIMIT_DATA: what malloc and anonymous mmap can take; unlike RLIMIT_AS it does not count the CUDA
    libraries torch maps at import). One child for many commands: importing torch dominates the time."""
    def limit():
        resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))

    commands = [c if isinstance(c, tuple) else (c, {}) for c in commands]
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(commands)], capture_output=True, text=True,
                           timeout=600, preexec_fn=limit, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert child.returncode == 0, child.stderr[-2000:]  # a MemoryError or a kill would land here
    return json.loads(child.stdout)


def blocks_at(phi: float) -> int:
    return sum(math.ceil(layers * 1.2**phi) for layers in TABLE1_LAYERS)


HUGE = [
    (["info", "--phi", "1000"], f"phi1000 is too large: 2.42e80 MBConv blocks, the limit is {MAX_BLOCKS:,}"),
    (["info", "--phi", "50"], f"phi50 is too large: {blocks_at(50):,} MBConv blocks"),
    (["info", "b0", "--num-classes", "10000000"], "b0 is too large: 1.28e10 parameters"),  # 5,288,548 + 1281 x 9,999,000
    (["info", "b0", "--resolution", "100000"], r"b0 is too large: \S+ activations per image"),
    (["info", "--phi", "5000"], "phi 5000 overflows"),
    (["info", "--width", "1e308"], r"width 1e\+308 \(x 1280 head channels\) overflows"),
    (["info", "--depth", "1e308"], r"depth 1e\+308 \(x 4 layers of the deepest stage\) overflows"),
]


def test_info_refuses_huge_networks_in_bounded_memory_and_answers_the_rest():
    # 16,000 blocks at the smallest width and resolution: over the default bound, allowed by the variable.
    many = ["info", "--width", "0.0625", "--depth", "1000", "--resolution", "32", "--json"]
    allow = {"EFFNET_EDU_MAX_BLOCKS": "20000", "EFFNET_EDU_MAX_PARAMS": "inf"}
    results = run_limited(*[argv for argv, _ in HUGE], many, ["info", "b7"], (many, allow),
                          (["info", "b0", "--num-classes", "10000000"], allow),
                          (["info", "b0"], {"EFFNET_EDU_MAX_PARAMS": "lots"}))
    raised, bad = results[-3:-1], results[-1]
    results = results[:-3]
    for (argv, message), result in zip(HUGE, results):
        assert result["code"] == 2, (argv, result)
        assert re.match(f"effnet-edu info: error: {message}", result["err"]), (argv, result["err"])
        assert result["err"].count("\n") == 1 and result["out"] == ""
    assert results[-2]["code"] == 2 and "EFFNET_EDU_MAX_BLOCKS" in results[-2]["err"]
    assert results[-1]["code"] == 0 and "parameters: 66,347,960" in results[-1]["out"]  # B7: torchvision's count

    assert raised[0]["code"] == 0 and '"layers": 4000' in raised[0]["out"]  # stage 7: ceil(4 x 1000)
    assert raised[1]["code"] == 0 and f"parameters: {B0_PARAMS + 1281 * (10_000_000 - 1000):,}" in raised[1]["out"]
    assert bad["code"] == 2 and "EFFNET_EDU_MAX_PARAMS must be a number" in bad["err"]


def test_build_refuses_before_allocating_and_takes_the_limits_as_arguments():
    with pytest.raises(SizeError, match=f"phi50 is too large: {blocks_at(50):,} MBConv blocks"):
        ee.build(phi=50)
    with pytest.raises(SizeError, match=f"{B0_PARAMS:,} parameters .* the limit is 1,000,000 .*max_params"):
        ee.build("b0", max_params=1e6)  # the keyword lowers the bound as well as raising it
    with size_limits(params=1e6), pytest.raises(SizeError):
        ee.build("b0")
    assert ee.build("lite0", max_params=B0_PARAMS).config.name == "lite0"  # 4.65M: allowed
    with pytest.raises(SizeError, match="too large"):
        ee.count(phi=1000)  # counting itself lists blocks: the depth bound guards it too


@pytest.mark.parametrize("kwargs, message", [
    (dict(phi=5000), "phi 5000 overflows"),
    (dict(width=1e308), "overflows"),
    (dict(depth=1e308), "overflows"),
    (dict(phi=1100, gamma=2.0), "overflows"),
])
def test_overflowing_numbers_are_scaling_errors(kwargs, message):
    with pytest.raises(ScalingError, match=message):
        ee.resolve(**kwargs)


def test_weights_file_metadata_is_checked_before_building(tmp_path):
    path = save_weights(ee.build("b0", num_classes=10), tmp_path / "small.pt")  # ~16 MB
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["effnet_edu"]["num_classes"] = 500_000  # 640M parameters claimed by a 4M-number file
    torch.save(checkpoint, tmp_path / "liar.pt")
    with pytest.raises(ee.WeightsError, match="liar.pt is inconsistent: its settings say 500,000 classes but its "
                                              "classifier has 10"):
        from_file(None, tmp_path / "liar.pt")
    checkpoint["effnet_edu"].update(width=40.0, num_classes=10)  # 3.2e9 parameters claimed: over the limit
    torch.save(checkpoint, tmp_path / "wide.pt")
    with pytest.raises(SizeError, match="parameters"):
        from_file(None, tmp_path / "wide.pt")
    checkpoint["effnet_edu"].update(width=4.0)  # 0.1e9 parameters claimed by a 4M-number file
    torch.save(checkpoint, tmp_path / "wide.pt")
    with pytest.raises(ee.WeightsError, match="wide.pt is inconsistent: .* parameters but it holds only 4,062,423"):
        from_file(None, tmp_path / "wide.pt")
    checkpoint["effnet_edu"]["width"] = 1.0
    checkpoint["effnet_edu"].update(num_classes=10, depth=1e6)
    torch.save(checkpoint, tmp_path / "deep.pt")
    with pytest.raises(SizeError, match="MBConv blocks"):
        from_file(None, tmp_path / "deep.pt")
    out = run_limited(["predict", "--model", "b0", "--weights", str(tmp_path / "liar.pt"), "chelsea"])[0]
    assert out["code"] == 2 and "liar.pt is inconsistent" in out["err"] and out["err"].count("\n") == 1
    with pytest.raises(SizeError, match="parameters"):
        ee.pretrained("lite0", num_classes=10**9)  # a fresh FC layer of 1.28e12 weights


@pytest.mark.parametrize("override, message", [
    (dict(bn_eps=0), "bn_eps must be a positive number"),
    (dict(bn_eps=-1e-3), "bn_eps must be a positive number"),
    (dict(bn_eps=float("nan")), "bn_eps must be a positive number"),
    (dict(bn_eps="1e-3"), "bn_eps must be a positive number"),
    (dict(bn_momentum=0), r"bn_momentum must be a number in \(0, 1\)"),
    (dict(bn_momentum=1.0), r"bn_momentum must be a number in \(0, 1\)"),
    (dict(bn_momentum="0.01"), r"bn_momentum must be a number in \(0, 1\)"),
    (dict(bn_momentum=None), r"bn_momentum must be a number in \(0, 1\)"),
    (dict(same_padding="yes"), "same_padding must be True or False"),
    (dict(lite=1), "lite must be True or False"),
    (dict(num_classes=0), "num_classes must be a positive whole number"),
    (dict(num_classes=2.5), "num_classes must be a positive whole number"),
    (dict(dropout=1.0), r"dropout must be a probability in \[0, 1\)"),
    (dict(colour="red"), "unknown setting"),
])
def test_config_overrides_are_validated(override, message):
    with pytest.raises(ScalingError, match=message):
        ee.build("b0", **override)


@pytest.mark.parametrize("typed, meant", [
    ("B0", "b0"), ("efficientnet-b0", "b0"), ("EfficientNet_B3", "b3"), ("lite-0", "lite0"),
    ("EfficientNet-Lite2", "lite2"), (" b7 ", "b7"),
])
def test_what_users_type_for_a_model_name(typed, meant):
    assert ee.resolve(typed).name == meant


@pytest.mark.parametrize("typed, suggestion", [
    ("bo", "did you mean b0?"),  # the letter o for the digit 0: the closest name, and only that one
    ("b10", "did you mean b0 or b1?"),  # one digit too many
    ("b9", "did you mean b7?"),  # past the end of the family: the nearest member
    ("lite5", "did you mean lite4?"),
    ("llte0", "did you mean lite0?"),
    ("tf_efficientnet_b0", "did you mean b0?"),
])
def test_model_name_suggestions_rank_by_similarity(typed, suggestion):
    with pytest.raises(ScalingError) as error:
        ee.resolve(typed)
    assert str(error.value).endswith(suggestion)


def test_no_suggestion_when_nothing_is_alike():
    with pytest.raises(ScalingError) as error:
        ee.resolve("resnet50")
    assert "did you mean" not in str(error.value) and "choose one of b0" in str(error.value)
