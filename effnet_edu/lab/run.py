"""Reproduce the whole scaling lab: train every model of ``experiments.plan()``, then score Table 7's class
activation maps, and write ``results.json`` plus one float16 checkpoint per model.

    effnet-edu lab reproduce                   # everything (about two hours on a 2-core laptop)
    effnet-edu lab reproduce --quick --out /tmp/lab    # a reduced version in a few minutes
    effnet-edu lab reproduce --jobs 2          # two models at a time, one thread each (the default on 2 cores)

Resumable: each finished model is a file (``runs/<key>.json`` and ``checkpoints/<key>.pt``), written atomically;
a killed run starts again where it stopped, and a finished one only rewrites ``results.json``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import torch

from . import experiments as E
from .store import RESULTS
from .train import QUICK, RECIPE, Recipe, train_model


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def save_run(out: Path, run: E.Run, model, entry: dict) -> None:
    state = {k: v for k, v in model.state_dict().items()}  # already float16-rounded by train_model
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "checkpoints" / f"{run.key}.pt",
                  lambda p: torch.save({"entry": entry, "state_dict": state}, p))
    _write_atomic(out / "runs" / f"{run.key}.json", lambda p: p.write_text(json.dumps(entry, indent=1) + "\n"))


def _train_job(run: E.Run, recipe: Recipe, out: str, threads: int) -> dict:
    torch.set_num_threads(threads)
    model, entry = train_model(run.point, run.seed, recipe)
    entry = {"name": run.key, **entry, "experiments": list(run.experiments)}
    save_run(Path(out), run, model, entry)
    return entry


def _progress(total: int, desc: str):
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="model")
    except ImportError:  # tqdm is optional: print a line per model instead
        class Bar:
            n = 0

            def update(self, k=1):
                self.n += k
                print(f"{desc}: {self.n}/{total}", flush=True)

            def set_postfix_str(self, s):
                pass

            def close(self):
                pass

        return Bar()


def train_runs(runs: list[E.Run], out: Path, recipe: Recipe, jobs: int, desc: str) -> None:
    """Train the runs not yet on disk, ``jobs`` at a time (each process one thread per job's share of cores)."""
    todo = [r for r in runs if not (out / "runs" / f"{r.key}.json").exists()]
    # The biggest first: the pool stays busy to the end instead of waiting on one large model.
    todo.sort(key=lambda r: -E.relative_cost(r))
    from .train import split

    for name in ("train", "val", "test"):  # generate (or load) the data once, before the workers read the cache
        split(name, recipe)
    bar = _progress(len(runs), desc)
    bar.update(len(runs) - len(todo))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    if jobs == 1:
        for run in todo:
            entry = _train_job(run, recipe, str(out), threads)
            bar.set_postfix_str(f"{run.key}: {entry['accuracy']:.3f}")
            bar.update()
    else:
        import multiprocessing

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_train_job, run, recipe, str(out), threads): run for run in todo}
            for future in as_completed(futures):
                entry = future.result()
                bar.set_postfix_str(f"{entry['name']}: {entry['accuracy']:.3f}")
                bar.update()
    bar.close()


def load_entries(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


def best_grid_point(entries: list[dict]) -> tuple[float, float, float]:
    """Step 1's winner: the grid point with the best *validation* accuracy (the test split stays unseen)."""
    grid = [e for e in entries if "grid" in e["experiments"]]
    best = max(grid, key=lambda e: (e["val_accuracy"], -e["macs"]))
    return tuple(best["coefficients"])


def reproduce(out: Path = RESULTS, quick: bool = False, jobs: int = 2) -> dict:
    recipe = QUICK if quick else RECIPE
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = E.plan()
    train_runs(runs, out, recipe, jobs, "models")
    coefficients = best_grid_point(_with_coefficients(load_entries(out)))
    step2 = [r for r in E.plan(coefficients) if "step2" in r.experiments]
    train_runs(step2, out, recipe, jobs, "step 2")
    entries = _with_coefficients(load_entries(out))
    keys = {r.key: r.experiments for r in E.plan(coefficients)}
    entries = [dict(e, experiments=list(keys[e["name"]])) for e in entries if e["name"] in keys]
    from .table7 import score_table7

    table7 = score_table7(out, recipe)
    results = {
        "description": "The scaling lab: classroom-scale reproductions of Figures 3, 4, 8, Tables 3 and 7 and the "
                       "Step-1 grid search of Tan & Le (2019); see effnet_edu/lab/",
        "recipe": asdict(recipe),
        "step2_coefficients": list(coefficients),
        "environment": {"torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
                        "jobs": jobs, "date": time.strftime("%Y-%m-%d")},
        "wall_seconds": round(time.perf_counter() - start, 1),
        "models": entries,
        "table7": table7,
    }
    _write_atomic(out / "results.json", lambda p: p.write_text(json.dumps(results, indent=1) + "\n"))
    return results


def _with_coefficients(entries: list[dict]) -> list[dict]:
    """Attach (alpha, beta, gamma) to grid entries (from the plan, where they are defined)."""
    by_key = {}
    for alpha, beta, gamma in E.grid_points():
        run = E.Run(E.compound_point("effnet", 1.0, alpha, beta, gamma), 0, ("grid",))
        by_key[run.key] = [alpha, beta, gamma]
    return [dict(e, coefficients=by_key[e["name"]]) if e["name"] in by_key else e for e in entries]
