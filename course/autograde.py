"""Build the assignments and grade a class, offline, with otter-grader.

    python -m course build                                   # course/dist/student/ and course/dist/autograder/
    python -m course grade a1 submissions/*.ipynb --csv grades.csv

``build`` turns each master notebook ``course/assignments/aN_*.py`` (jupytext py:percent in otter's assign
format: solutions and tests inside) into a student notebook (no solutions, only the visible tests) and an
autograder zip (all tests, hidden ones included). otter assign runs the solution against every test and refuses
to build an assignment whose own solution fails. Cell ids and zip timestamps are normalised, so two builds of the
same sources give the same files.

``grade`` runs ``otter run`` (otter's non-containerised grader) on each submission in its own process with a
time limit. A submission that is not a notebook, belongs to another assignment, kills its kernel or never
finishes scores 0 with the reason; the others are still graded. Student code runs with YOUR permissions: see
course/README.md, "What the autograder cannot protect against".
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ASSIGNMENTS = HERE / "assignments"
DIST = HERE / "dist"
DEFAULT_TIMEOUT = 600  # seconds per submission: the slowest solution takes well under a minute on 2 cores
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold: the same bytes on every build


class CourseError(Exception):
    """A mistake in the command line or a missing build; the message says what to do."""


def masters() -> dict[str, Path]:
    """Assignment name ("a1_scaling_rules") -> its master notebook source."""
    return {p.stem: p for p in sorted(ASSIGNMENTS.glob("a[0-9]*_*.py"))}


def find_assignment(key: str, names) -> str:
    """Accept the full name ("a1_scaling_rules"), its prefix ("a1") or its number ("1")."""
    names = list(names)
    key = str(key).strip()
    if key in names:
        return key
    prefix = key if key.startswith("a") else f"a{key}"
    hits = [n for n in names if n.split("_")[0] == prefix]
    if len(hits) == 1:
        return hits[0]
    raise CourseError(f"unknown assignment {key!r}; choose one of {', '.join(names) or '(none built)'}")


# ------------------------------------------------------------------------------------------------------ build
def _question_points(master: Path) -> list[dict]:
    """The questions of a master notebook with their points, read from its ``# BEGIN QUESTION`` cells."""
    import jupytext
    import yaml

    questions = []
    for cell in jupytext.read(master).cells:
        lines = cell.source.strip().splitlines()
        if cell.cell_type == "raw" and lines and re.match(r"#\s*BEGIN\s+QUESTION", lines[0], re.I):
            config = yaml.safe_load("\n".join(lines[1:])) or {}
            questions.append({"name": config["name"], "points": config.get("points", 1),
                              "manual": bool(config.get("manual", False))})
    return questions


def normalise_ids(path: Path, name: str) -> None:
    """otter gives inserted cells random ids; number them instead, so rebuilding changes nothing."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name}-{i:03d}"
    nbformat.write(nb, path)


def deterministic_zip(source: Path, target: Path) -> None:
    """Rewrite otter's zip with sorted entries and a fixed date (otter stamps the build time)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in sorted(zin.infolist(), key=lambda i: i.filename):
            fixed = zipfile.ZipInfo(info.filename, ZIP_DATE)
            fixed.external_attr = info.external_attr
            fixed.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(fixed, zin.read(info.filename))


def build_one(name: str, master: Path, out: Path, check: bool = True) -> dict:
    """otter assign one master notebook; returns its manifest (questions and points)."""
    import jupytext

    with tempfile.TemporaryDirectory(prefix=f"course-{name}-") as tmp:
        tmp = Path(tmp)
        notebook = tmp / f"{name}.ipynb"
        jupytext.write(jupytext.read(master), notebook)
        command = [sys.executable, "-m", "otter", "assign", "--no-pdfs", str(notebook), str(tmp / "out")]
        if not check:
            command.insert(4, "--no-run-tests")
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
            raise CourseError(f"otter assign failed for {master.name} (its solution must pass its own tests):\n{tail}")
        student, autograder = out / "student" / name, out / "autograder" / name
        for folder in (student, autograder):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        shutil.copy(tmp / "out" / "student" / f"{name}.ipynb", student / f"{name}.ipynb")
        shutil.copy(tmp / "out" / "autograder" / f"{name}.ipynb", autograder / f"{name}-solution.ipynb")
        (zipped,) = (tmp / "out" / "autograder").glob(f"{name}-autograder_*.zip")
        deterministic_zip(zipped, autograder / f"{name}-autograder.zip")
    normalise_ids(student / f"{name}.ipynb", name)
    normalise_ids(autograder / f"{name}-solution.ipynb", name)
    questions = _question_points(master)
    manifest = {
        "assignment": name,
        "questions": questions,
        "autograded_points": sum(q["points"] for q in questions if not q["manual"]),
        "manual_points": sum(q["points"] for q in questions if q["manual"]),
    }
    (autograder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def build(out: Path = DIST, only=None, check: bool = True, jobs: int = 1, echo=print) -> list[dict]:
    """Build every assignment (or those named in ``only``) into ``out/student`` and ``out/autograder``."""
    sources = masters()
    names = [find_assignment(k, sources) for k in only] if only else list(sources)
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = {n: pool.submit(build_one, n, sources[n], Path(out), check) for n in names}
        manifests = []
        for name, future in futures.items():
            m = future.result()
            manifests.append(m)
            echo(f"built {name}: {m['autograded_points']} autograded + {m['manual_points']} written points")
    return manifests


# ------------------------------------------------------------------------------------------------------ grade
@dataclass
class Grade:
    """One submission's result; ``reason`` says why it scored 0 when grading could not run."""

    submission: str
    assignment: str
    score: float
    possible: float
    questions: dict = field(default_factory=dict)  # "q1" -> {"score": .., "possible": ..}
    reason: str | None = None
    errors: list = field(default_factory=list)  # exceptions raised by the submission's cells, as text
    seconds: float = 0.0


def load_manifest(assignment: str, dist: Path) -> tuple[str, dict, Path]:
    folder = Path(dist) / "autograder"
    names = sorted(p.name for p in folder.iterdir() if (p / "manifest.json").exists()) if folder.is_dir() else []
    if not names:
        raise CourseError(f"no autograders in {folder}: run `python -m course build` first")
    name = find_assignment(assignment, names)
    manifest = json.loads((folder / name / "manifest.json").read_text())
    return name, manifest, folder / name / f"{name}-autograder.zip"


def _zero(path, name, manifest, reason, seconds=0.0) -> Grade:
    questions = {q["name"]: {"score": 0, "possible": q["points"]} for q in manifest["questions"] if not q["manual"]}
    return Grade(str(path), name, 0, manifest["autograded_points"], questions, reason, [], round(seconds, 2))


def precheck(path: Path, name: str) -> str | None:
    """Reasons to refuse a file without running it: missing, not a notebook, another assignment's notebook."""
    import nbformat

    if not path.is_file():
        return "no such file"
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises JSON, validation and encoding errors of many types
        return f"not a Jupyter notebook ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
    got = nb.metadata.get("otter", {}).get("assignment_name")
    if got is not None and got != name:
        return f"this is the notebook of assignment {got}, not {name}"
    return None


def _kill_tree(pid: int) -> None:
    """Kill a process and all its descendants (the kernel runs in a session of its own, so a process-group kill
    would miss it)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        family = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


def grade_one(path, name: str, manifest: dict, zip_path: Path, timeout: float = DEFAULT_TIMEOUT,
              threads: int = 1) -> Grade:
    """Grade one submission in a child process (``course/_grade_one.py``) with a time limit."""
    path = Path(path)
    start = time.perf_counter()
    reason = precheck(path, name)
    if reason:
        return _zero(path, name, manifest, reason)
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        result_file, log_file = Path(tmp) / "result.json", Path(tmp) / "log.txt"
        # Under the name the student version was handed out with: its first cell opens itself by that name.
        copy = Path(tmp) / "submission" / f"{name}.ipynb"
        copy.parent.mkdir()
        shutil.copy(path, copy)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONHASHSEED="0")
        with open(log_file, "w") as log:
            child = subprocess.Popen([sys.executable, str(HERE / "_grade_one.py"), str(zip_path), str(copy),
                                      str(result_file)], cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_tree(child.pid)
                return _zero(path, name, manifest, f"did not finish within {timeout:g} s (an endless loop?)",
                             time.perf_counter() - start)
            _kill_tree(child.pid)  # anything the submission left running (the child itself has exited)
        seconds = time.perf_counter() - start
        if child.returncode != 0 or not result_file.exists():
            lines = [l for l in log_file.read_text(errors="replace").splitlines() if l.strip()]
            last = lines[-1].strip()[:200] if lines else f"exit status {child.returncode}"
            return _zero(path, name, manifest, f"grading failed: {last}", seconds)
        data = json.loads(result_file.read_text())
    if data.get("error"):
        return _zero(path, name, manifest, data["error"], seconds)
    questions = {q: {"score": r["score"], "possible": r["possible"]} for q, r in sorted(data["questions"].items())}
    return Grade(str(path), name, data["score"], manifest["autograded_points"], questions, None,
                 data.get("errors", []), round(seconds, 2))


def expand(submissions) -> list[Path]:
    """Files as given; a folder stands for every (non-hidden) file in it."""
    paths = []
    for s in submissions:
        s = Path(s)
        if s.is_dir():
            paths += sorted(p for p in s.iterdir() if p.is_file() and not p.name.startswith("."))
        else:
            paths.append(s)
    return paths


def grade(assignment: str, submissions, dist: Path = DIST, timeout: float = DEFAULT_TIMEOUT,
          jobs: int = 1) -> list[Grade]:
    """Grade every submission (files or folders) against one assignment's autograder, ``jobs`` at a time."""
    name, manifest, zip_path = load_manifest(assignment, dist)
    paths = expand(submissions)
    if not paths:
        raise CourseError("no submissions given (pass notebooks or a folder of them)")
    jobs = max(1, min(jobs, len(paths)))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda p: grade_one(p, name, manifest, zip_path, timeout, threads), paths))


def table(grades: list[Grade]) -> str:
    names = list(grades[0].questions) if grades else []
    width = max([len("submission")] + [len(Path(g.submission).name) for g in grades])
    head = f"{'submission':<{width}} {'score':>13}  " + " ".join(f"{q:>6}" for q in names) + "  note"
    lines = [head, "-" * len(head)]
    for g in grades:
        per = " ".join(f"{g.questions.get(q, {}).get('score', 0):>6g}" for q in names)
        note = g.reason or (f"{len(g.errors)} cell(s) raised: {g.errors[0]}" if g.errors else "")
        lines.append(f"{Path(g.submission).name:<{width}} {g.score:>6g} / {g.possible:<4g}  {per}  {note}")
    return "\n".join(lines)


def write_csv(grades: list[Grade], path) -> None:
    names = list(grades[0].questions) if grades else []
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", "assignment", "score", "possible", *names, "reason", "errors", "seconds"])
        for g in grades:
            w.writerow([g.submission, g.assignment, g.score, g.possible,
                        *(g.questions.get(q, {}).get("score", 0) for q in names),
                        g.reason or "", " | ".join(g.errors), g.seconds])


# -------------------------------------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the student notebooks and the autograders")
    b.add_argument("assignments", nargs="*", help="only these (a1, 2, a3_counting, ...); default: all")
    b.add_argument("--out", default=str(DIST), help="output folder (default: course/dist)")
    b.add_argument("--no-check", action="store_true",
                   help="skip otter's run of the solution against its own tests (faster; CI grades it instead)")
    b.add_argument("--jobs", type=int, default=1, help="assignments built in parallel")
    g = sub.add_parser("grade", help="grade submissions of one assignment")
    g.add_argument("assignment", help="a1, 1 or a1_scaling_rules")
    g.add_argument("submissions", nargs="+", help="submitted .ipynb files, or folders of them")
    g.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    g.add_argument("--csv", metavar="FILE", help="also write the grades to a CSV file")
    g.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per submission (default 600)")
    g.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default 1)")
    g.add_argument("--dist", default=str(DIST), help="where `build` wrote the autograders (default: course/dist)")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build(Path(args.out), args.assignments, check=not args.no_check, jobs=args.jobs,
                  echo=lambda s: print(s, file=sys.stderr))
            print(f"student notebooks: {Path(args.out) / 'student'} (hand these out)\n"
                  f"autograders:       {Path(args.out) / 'autograder'} (keep private)")
            return 0
        start = time.perf_counter()
        grades = grade(args.assignment, args.submissions, Path(args.dist), args.timeout, args.jobs)
        elapsed = time.perf_counter() - start
        if args.csv:
            write_csv(grades, args.csv)
        if args.json:
            print(json.dumps([asdict(g) for g in grades], indent=1), flush=True)
        else:
            print(table(grades), flush=True)
        print(f"graded {len(grades)} submission(s) in {elapsed:.1f} s ({elapsed / len(grades):.1f} s each, "
              f"{args.jobs} at a time)", file=sys.stderr)
        return 0
    except CourseError as exc:
        print(f"course: {exc}", file=sys.stderr)
        return 2
