"""Grade ONE submission with otter (``python course/_grade_one.py AUTOGRADER.zip SUBMISSION RESULT.json``).

Run by ``course.autograde.grade_one`` in a process of its own, so a submission that hangs or kills its kernel
takes only itself down. The result is written after the submission's kernel has finished."""

import contextlib
import io
import json
import sys


def errors_in(notebook) -> list[str]:
    """Exceptions the submission's own cells raised (otter grades on regardless), as one line each."""
    found = []
    for i, cell in enumerate(notebook.cells if notebook is not None else []):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                found.append(f"{out.get('ename')}: {str(out.get('evalue'))[:160]}")
    return found


def main(zip_path: str, submission: str, result_path: str) -> int:
    from otter.run import main as otter_run

    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            results = otter_run(submission, autograder=zip_path, output_dir=None, no_logo=True)
    except Exception as exc:  # otter's own refusal (wrong assignment, no notebook) or a dead kernel
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        data = {"error": f"otter could not grade it: {type(exc).__name__}: {message[:200]}"}
    else:
        if results.has_catastrophic_failure():
            data = {"error": f"otter could not grade it: {results.catastrophic_error}"}
        else:
            questions = {name: {"score": tf.score, "possible": tf.possible} for name, tf in results.results.items()}
            data = {"score": results.total, "possible": results.possible, "questions": questions,
                    # the executed notebook has the grader's own cells (first and last): skip them
                    "errors": errors_in(results.notebook)}
    with open(result_path, "w") as f:
        json.dump(data, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
