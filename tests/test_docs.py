"""Guards for the corrections the teaching pass made to the prose: what the docs, README and notebooks say must
stay true of the paper, of torchvision and of the library.

Oracles: torchvision's EfficientNet implementations (exact parameter counts, built on the meta device), the
library's ``FAMILY`` table, ``constraints.txt`` (the pins every environment file must name), and the paper's
section structure (Sections 5.1-5.3, then 6 Discussion: Figure 7, Figure 8 and Table 7 are there)."""

import re
from pathlib import Path

import jupytext
import pytest
import torch
import torchvision
import yaml

import effnet_edu as ee

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "build", "dist", "node_modules", ".ipynb_checkpoints", "__pycache__"}
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".yml", ".yaml", ".toml", ".txt", ".cfg", ".json", ".sh", ""}
# the notebooks themselves (their jupytext sources, in notebooks/scripts/, hold the same cells: test_notebook_pairs)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _text_files():
    for path in ROOT.rglob("*"):
        if path.is_file() and not SKIP_DIRS & set(path.relative_to(ROOT).parts) and path.suffix in TEXT_SUFFIXES \
                and path != Path(__file__).resolve():
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def test_nothing_cites_files_users_do_not_have():
    # The project's working notes lived outside the repository; users see only what is in it.
    forbidden = ["reference" + ".md", "notebook" + "-testing", "shared" + "/paper"]
    hits = [f"{p.relative_to(ROOT)}: {word}" for p, text in _text_files() for word in forbidden if word in text]
    assert not hits, "cite docs/paper-facts.md or a public source instead: " + "; ".join(hits[:10])


def test_no_section_5_4():
    # The paper's Section 5 has 5.1-5.3; Figures 7/8 and Table 7 are in Section 6 (Discussion).
    hits = [str(p.relative_to(ROOT)) for p, text in _text_files() if "Section 5" + ".4" in text]
    assert not hits, f"Figure 7/8 and Table 7 are in Section 6 (Discussion), not 5.4: {hits}"


def _table_rows(markdown: str, heading: str) -> list[list[str]]:
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    return rows[1:]  # without the header


def test_paper_facts_table2_matches_torchvision_and_the_library():
    rows = _table_rows((ROOT / "docs/paper-facts.md").read_text(), "## Table 2")
    assert [r[0] for r in rows] == [f"B{n}" for n in range(8)]
    for name, width, depth, resolution, dropout, exact, *_ in rows:
        member = ee.FAMILY[name.lower()]
        assert (member.width, member.depth, member.resolution, member.dropout) == \
            (float(width), float(depth), int(resolution), float(dropout)), name
        with torch.device("meta"):
            tv = getattr(torchvision.models, f"efficientnet_{name.lower()}")()
        assert int(exact.replace(",", "")) == sum(p.numel() for p in tv.parameters()), name


def test_readme_never_offers_an_unpublished_pypi_package():
    pypi = re.compile(r"pip install\s+[\"']?effnet-edu(?![\w\[\],]*\s*@)")
    for path in [ROOT / "README.md", ROOT / "notebooks/README.md", *(ROOT / "docs").glob("*.md"), *NOTEBOOKS]:
        assert not pypi.search(path.read_text()), f"{path.name} offers `pip install effnet-edu` (not on PyPI)"


def test_readme_claims_match_what_landed():
    readme = (ROOT / "README.md").read_text()
    # CAMs come from the released Lite0-2 weights: no explorer yet computes CAMs for arbitrary phi/alpha/beta/gamma
    assert not re.search(r"class activation maps\s+that change live as phi", readme)
    for n, name in enumerate(p.stem for p in NOTEBOOKS):
        assert f"notebooks/{name}.ipynb" in readme, f"no Colab link for {name}"
    for link in re.findall(r"\]\(((?!https?:)[^)#]+)\)", readme + (ROOT / "docs/imagenet.md").read_text()):
        target = (ROOT / link) if (ROOT / link).exists() else ROOT / "docs" / link
        assert target.exists(), f"broken link {link}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_teaching_structure(path):
    nb = jupytext.read(path)
    text = "\n".join(c.source for c in nb.cells)
    for needed in ("**Learning objectives.**", "**Prerequisites.**", "**Time.**", "## Summary", "## Exercises", "★"):
        assert needed in text, f"{path.name} lacks {needed}"
    first_code = next(c.source for c in nb.cells if c.cell_type == "code")
    assert "EFFNET_EDU_REPO" in first_code and "except ImportError" in first_code, \
        f"{path.name}: the first code cell must install effnet-edu only when it is missing"
    assert "==" not in first_code, f"{path.name}: the Colab install cell must not pin versions (keeps Colab's torch)"
    if "Explorer(" in text:
        assert "**Predict first.**" in text, f"{path.name}: ask for a prediction before the explorer"


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==([^\s#]+)\s*(#.*)?", str(line))
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_environment_files_name_the_same_pins():
    constraints = _pins((ROOT / "constraints.txt").read_text().splitlines())
    assert {"torch", "torchvision"} <= set(constraints)

    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert conda["name"] and "conda-forge" in conda["channels"]
    deps = conda["dependencies"]
    assert any(str(d).startswith("python=") for d in deps) and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "-c constraints.txt" in pip, "environment.yml must install with the pins of constraints.txt"
    assert any(str(d).startswith("-e") for d in pip)

    binder = yaml.safe_load((ROOT / "binder/environment.yml").read_text())
    bdeps = binder["dependencies"]
    assert any(str(d).startswith("python=") for d in bdeps) and "pip" in bdeps
    bpip = next(d["pip"] for d in bdeps if isinstance(d, dict))
    named = _pins(bpip)
    assert {k: constraints[k] for k in ("torch", "torchvision")} == {k: named.get(k) for k in ("torch", "torchvision")}
    post = ROOT / "binder/postBuild"
    assert post.read_text().startswith("#!") and "-c constraints.txt" in post.read_text()
    assert post.stat().st_mode & 0o111, "binder/postBuild must be executable"


def test_diagrams_follow_the_library():
    from effnet_edu_widgets.diagrams import FIGURE2_POINTS, layer_bars, mbconv_parts

    spec = next(b for b in ee.blocks(ee.resolve("b0")) if b.name == "stage4/block1")
    parts = mbconv_parts(spec)
    assert [p[0] for p in parts] == ["input", "expand", "depthwise", "SE", "project", "output"]
    assert [p[2] for p in parts] == [40, 240, 240, 240, 40, 40]  # B0 stage 4: 40 -> x6 -> 40 (Table 1)
    first = ee.blocks(ee.resolve("b0"))[0]  # MBConv1: no expansion layer
    assert "expand" not in [p[0] for p in mbconv_parts(first)]
    # stem + 16 blocks + head for B0; depth 4 gives ceil(4 * layers) per stage
    assert len(layer_bars(ee.resolve("b0"))) == 18
    assert len(layer_bars(ee.resolve(width=1.0, depth=4.0))) == 2 + 4 * 16
    assert dict(FIGURE2_POINTS)["(e) compound"] == dict(width=1.2, depth=1.4, resolution=291)  # Table 7: r = 1.3
