"""The graded assignments in course/ and the lecturer's commands (course/README.md), end to end.

Every command runs as the README shows it (``python -m course ...`` from the repository root, in a subprocess).
The assignments are built once per session, without otter's own solution run (``--no-check``): the tests below
grade the solution themselves. For each assignment: the solution scores full marks; the untouched student version
runs top to bottom without an error and scores about 0; a plausible wrong answer scores partial credit; the two
obvious cheats gain nothing; the student version holds no solution and no hidden test. Grading times are printed
(never asserted)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
MASTERS = sorted((ROOT / "course" / "assignments").glob("a[0-9]*_*.py"))
NAMES = [p.stem for p in MASTERS]

# One plausible mistake per assignment, applied to the solution notebook as (old text, new text).
WRONG = {
    "a1_scaling_rules": ("    if rounded < 0.9 * scaled:\n        rounded += divisor\n", ""),  # no 10% guard
    "a2_mbconv_se": ("conv_bn(hidden, out_channels, act=False)", "conv_bn(hidden, out_channels, act=True)"),
    "a3_counting": ("out_channels * (in_channels // groups) * kernel_size**2 * out_resolution**2",
                    "out_channels * in_channels * kernel_size**2 * out_resolution**2"),  # MACs ignore groups
    "a4_cam": ("raw.clamp(min=0)[:, None]", "raw[:, None]"),  # CAM without the ReLU
    "a5_grid_search": ("abs(flops_factor(*point) - target) <= tolerance", "flops_factor(*point) <= target"),
    "a6_training_recipe": ("lr * g / torch.sqrt(ms + eps)", "lr * g / (torch.sqrt(ms) + eps)"),  # torch's eps
}

# The two obvious cheats: replace the grader's check object (and otter's own check method) with one that always
# passes, and write a results file with full marks where a grader might read it.
CHEAT = '''\
class AlwaysPasses:
    def check(self, *args, **kwargs):
        return "All tests passed!"
    def check_all(self, *args, **kwargs):
        return "All tests passed!"
grader = AlwaysPasses()
import otter
otter.Notebook.check = lambda self, *args, **kwargs: None
import json
full = {"score": 1000, "tests": [{"name": "q1", "score": 1000, "max_score": 1000}]}
for path in ("results.json", "../results/results.json", "../results/results.pkl"):
    try:
        with open(path, "w") as f:
            json.dump(full, f)
    except OSError:
        pass
'''


def course(*args, timeout=900):
    """Run ``python -m course ARGS`` from the repository root, as the README does."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, "-m", "course", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def dist(tmp_path_factory):
    """All assignments built once (about 15 s on 2 cores)."""
    out = tmp_path_factory.mktemp("course-dist")
    start = time.perf_counter()
    done = course("build", "--no-check", "--jobs", "2", "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"\nbuilt {len(NAMES)} assignments in {time.perf_counter() - start:.1f} s")
    return out


def student_notebook(dist, name):
    return dist / "student" / name / f"{name}.ipynb"


def solution_notebook(dist, name):
    return dist / "autograder" / name / f"{name}-solution.ipynb"


def edited(source: Path, target: Path, replace=None, append=None) -> Path:
    nb = nbformat.read(source, as_version=4)
    if replace:
        old, new = replace
        hits = [c for c in nb.cells if old in c.source]
        assert hits, f"{source.name}: the wrong answer's text {old!r} is not in the solution any more"
        for c in hits:
            c.source = c.source.replace(old, new)
    if append:
        nb.cells.append(nbformat.v4.new_code_cell(append))
    nbformat.write(nb, target)
    return target


def grade(dist, name, *submissions, options=()):
    done = course("grade", name, *submissions, "--json", "--dist", dist, *options)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), done.stderr


def test_every_assignment_has_a_wrong_answer():
    assert len(NAMES) >= 6 and set(NAMES) <= set(WRONG), f"add a plausible wrong answer for {set(NAMES) - set(WRONG)}"


# ------------------------------------------------------------------------------------------------ static checks
def _solution_and_hidden_text(master: Path) -> tuple[list[str], list[str]]:
    """Lines of the master that students must never see: solution lines and hidden tests' names and lines."""
    cells = jupytext.read(master).cells
    secret, public, hidden_names = [], [], []
    in_solution = False
    for cell in cells:
        lines = cell.source.splitlines()
        first = lines[0].strip() if lines else ""
        if cell.cell_type == "raw" and re.match(r"#\s*BEGIN SOLUTION", first):
            in_solution = True
            continue
        if cell.cell_type == "raw" and re.match(r"#\s*END SOLUTION", first):
            in_solution = False
            continue
        if cell.cell_type == "code" and "BEGIN TEST CONFIG" in cell.source and "hidden: true" in cell.source:
            body = cell.source.split("END TEST CONFIG", 1)[1]
            hidden_names += re.findall(r"def (test_\w+)", body)
            secret += [l.strip() for l in body.splitlines()[2:]]  # the lines after the def
            continue
        if in_solution and cell.cell_type == "markdown":
            secret += [l.strip() for l in lines]
            continue
        inside = False
        for line in lines:
            if line.strip() == "# BEGIN SOLUTION":
                inside = True
            elif line.strip() == "# END SOLUTION":
                inside = False
            elif inside or line.rstrip().endswith("# SOLUTION"):
                secret.append(line.split("# SOLUTION")[0].strip())
            else:
                public.append(line.strip())
    shared = "\n".join(public)  # prompts, visible tests and given code may repeat a line on purpose
    # Short or generic lines ("return out", "import torch") may legitimately appear elsewhere.
    secret = [l for l in secret if len(l) >= 24 and l not in shared and not l.startswith(("import ", "from "))]
    return secret, hidden_names


@pytest.mark.parametrize("name", NAMES)
def test_student_version_has_no_solution_and_no_hidden_test(dist, name):
    master = ROOT / "course" / "assignments" / f"{name}.py"
    secret, hidden_names = _solution_and_hidden_text(master)
    assert secret and hidden_names, f"{name}: found no solution lines or hidden tests in the master"
    files = [p for p in (dist / "student" / name).rglob("*") if p.is_file()]
    assert [p.name for p in files] == [f"{name}.ipynb"], f"the student folder holds only the notebook: {files}"
    text = files[0].read_text()
    nb = nbformat.reads(text, as_version=4)
    shown = "\n".join(c.source for c in nb.cells) + "\n" + json.dumps(nb.metadata)
    leaked = [l for l in secret if l in shown]
    assert not leaked, f"{name}: solution or hidden-test lines in the student version: {leaked[:3]}"
    assert not [n for n in hidden_names if n in text], f"{name}: hidden test names in the student version"
    assert "hidden=True" not in text and "Rubric" not in text
    # ... while the autograder has them all
    solution = solution_notebook(dist, name).read_text()
    assert "Rubric" in solution, f"{name}: the instructor version keeps the written question's rubric"


@pytest.mark.parametrize("name", NAMES)
def test_assignment_declares_objectives_points_and_a_written_question(dist, name):
    manifest = json.loads((dist / "autograder" / name / "manifest.json").read_text())
    assert manifest["manual_points"] > 0, f"{name} needs a written question graded with a rubric"
    text = (ROOT / "course" / "assignments" / f"{name}.py").read_text()
    assert "Learning objectives" in text
    for q in manifest["questions"]:  # the points a student reads are the points the grader gives
        assert re.search(rf"\*\*{q['name'].upper()} \({q['points']} points", text), f"{name}: {q['name']} points"


def test_build_is_deterministic(dist, tmp_path):
    done = course("build", "a1", "--no-check", "--out", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    for part in ("student", "autograder"):
        for path in (tmp_path / part / "a1_scaling_rules").iterdir():
            twin = dist / part / "a1_scaling_rules" / path.name
            assert path.read_bytes() == twin.read_bytes(), f"{part}/{path.name} differs between two builds"


@pytest.mark.slow
def test_build_refuses_a_solution_that_fails_its_own_tests(tmp_path):
    """otter assign runs the solution against every test: a broken master must not produce an autograder."""
    text = (ROOT / "course" / "assignments" / "a1_scaling_rules.py").read_text()
    broken = text.replace("    return int(math.ceil(layers * depth))  # SOLUTION",
                          "    return int(round(layers * depth))  # SOLUTION")
    assert broken != text
    master = tmp_path / "a9_broken.py"
    master.write_text(broken.replace("name: a1_scaling_rules", "name: a9_broken"))
    script = (f"import sys; from pathlib import Path; from course import autograde\n"
              f"try:\n    autograde.build_one('a9_broken', Path({str(master)!r}), Path({str(tmp_path / 'out')!r}))\n"
              f"except autograde.CourseError as e:\n    print(e); sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "q2" in done.stdout and "failed" in done.stdout
    assert not (tmp_path / "out" / "autograder" / "a9_broken").exists()


# ---------------------------------------------------------------------------------------------------- grading
def check_grades(name, solution, untouched, wrong, cheat):
    """The per-assignment grading checks, on the four results of one assignment."""
    possible = untouched["possible"]
    assert possible > 0 and all(g["possible"] == possible for g in (solution, wrong, cheat))
    assert solution["score"] == possible and solution["reason"] is None, solution
    assert all(q["score"] == q["possible"] for q in solution["questions"].values())
    assert not solution["errors"], solution["errors"]
    assert untouched["reason"] is None and not untouched["errors"], f"{name}: the student version must run cleanly"
    assert untouched["score"] <= 0.1 * possible, untouched
    assert 0 < wrong["score"] < possible, f"{name}: a plausible mistake earns partial credit: {wrong}"
    assert cheat["score"] == wrong["score"], f"{name}: cheating gained points: {cheat}"
    assert cheat["questions"] == wrong["questions"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n != "a1_scaling_rules"])  # a1: in the folder test
def test_grading(dist, name, tmp_path):
    solution = solution_notebook(dist, name)
    wrong = edited(solution, tmp_path / "wrong.ipynb", replace=WRONG[name])
    cheat = edited(solution, tmp_path / "cheat.ipynb", replace=WRONG[name], append=CHEAT)
    student = tmp_path / "untouched.ipynb"
    student.write_bytes(student_notebook(dist, name).read_bytes())
    grades, log = grade(dist, name, solution, student, wrong, cheat, options=("--jobs", "2"))
    by = {Path(g["submission"]).stem: g for g in grades}
    print(f"\n{name}: " + ", ".join(f"{k} {g['score']:g}/{g['possible']:g} in {g['seconds']:.1f} s"
                                   for k, g in by.items()) + f"\n{log.strip()}")
    check_grades(name, by[f"{name}-solution"], by["untouched"], by["wrong"], by["cheat"])


@pytest.mark.slow
def test_grade_a_folder_of_20(dist, tmp_path):
    """A class's folder, as hand-ins come: good, wrong and blank notebooks, a renamed one, one whose last cell
    raises, one that kills its kernel, a cheat, other assignments' notebooks and files that are not notebooks.
    Each gets a line; none stops the others. It also runs assignment 1's grading checks."""
    name = "a1_scaling_rules"
    folder = tmp_path / "submissions"
    folder.mkdir()
    solution, student = solution_notebook(dist, name), student_notebook(dist, name)
    for i in range(3):
        (folder / f"good{i}.ipynb").write_bytes(solution.read_bytes())
    (folder / "a1_scaling_rules (1).ipynb").write_bytes(solution.read_bytes())
    for i in range(2):
        edited(solution, folder / f"wrong{i}.ipynb", replace=WRONG[name])
    (folder / "blank.ipynb").write_bytes(student.read_bytes())
    edited(solution, folder / "raises.ipynb", append="raise RuntimeError('a bug at the end')")
    edited(solution, folder / "kills_kernel.ipynb", append="import os\nos._exit(1)")
    edited(solution, folder / "cheat.ipynb", replace=WRONG[name], append=CHEAT)
    for other in NAMES[1:6]:
        (folder / f"{other}.ipynb").write_bytes(student_notebook(dist, other).read_bytes())
    (folder / "notes.txt").write_text("not a notebook")
    (folder / "empty.ipynb").write_text("")
    (folder / "broken.ipynb").write_text('{"cells": [')
    (folder / "photo.png").write_bytes(bytes(range(256)) * 4)
    (folder / "everything.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    assert len(list(folder.iterdir())) == 20
    csv_path = tmp_path / "grades.csv"
    start = time.perf_counter()
    grades, log = grade(dist, "a1", folder, options=("--jobs", "2", "--csv", csv_path))
    elapsed = time.perf_counter() - start
    ran = [g for g in grades if g["seconds"] > 0.5]
    print(f"\ngraded a folder of {len(grades)} in {elapsed:.1f} s, 2 at a time; {len(ran)} ran a kernel, "
          f"{sum(g['seconds'] for g in ran) / len(ran):.1f} s each on average\n{log.strip()}")
    assert len(grades) == 20
    by = {Path(g["submission"]).name: g for g in grades}
    check_grades(name, by["good0.ipynb"], by["blank.ipynb"], by["wrong0.ipynb"], by["cheat.ipynb"])
    full = by["good0.ipynb"]["possible"]
    assert by["good1.ipynb"]["score"] == by["good2.ipynb"]["score"] == full
    assert by["a1_scaling_rules (1).ipynb"]["score"] == full, "a renamed notebook is graded all the same"
    assert by["wrong1.ipynb"]["score"] == by["wrong0.ipynb"]["score"]
    raises = by["raises.ipynb"]
    assert raises["score"] == full and any("a bug at the end" in e for e in raises["errors"]), raises
    bad = {"kills_kernel.ipynb": "could not grade", "notes.txt": "not a Jupyter notebook",
           "empty.ipynb": "not a Jupyter notebook", "broken.ipynb": "not a Jupyter notebook",
           "photo.png": "not a Jupyter notebook", "everything.zip": "not a Jupyter notebook",
           **{f"{other}.ipynb": f"assignment {other}, not {name}" for other in NAMES[1:6]}}
    for file, why in bad.items():
        assert by[file]["score"] == 0 and why in (by[file]["reason"] or ""), by[file]
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 21 and rows[0].startswith("submission,assignment,score,possible,q1")


@pytest.mark.slow
def test_endless_loop_is_stopped_and_its_kernel_killed(dist, tmp_path):
    import psutil

    pid_file = tmp_path / "kernel.pid"
    loop = edited(student_notebook(dist, "a1_scaling_rules"), tmp_path / "loop.ipynb",
                  append=f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                         f"while True:\n    time.sleep(0.05)")
    grades, _ = grade(dist, "a1", loop, options=("--timeout", "20"))
    (g,) = grades
    assert g["score"] == 0 and "did not finish within 20 s" in g["reason"], g
    if pid_file.exists():  # the kernel got as far as the loop (it may not on a very loaded machine)
        pid = int(pid_file.read_text())
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, \
            "the submission's kernel outlived its time limit"


def test_grade_command_errors(dist, tmp_path):
    done = course("grade", "a42", tmp_path, "--dist", dist)
    assert done.returncode == 2 and "unknown assignment 'a42'" in done.stderr and "a1_scaling_rules" in done.stderr
    done = course("grade", "a1", tmp_path / "x.ipynb", "--dist", tmp_path / "nowhere")
    assert done.returncode == 2 and "python -m course build" in done.stderr
