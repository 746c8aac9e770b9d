"""What every explorer shares: the lazy ipywidgets import, the CSS, display in a notebook, and the error guard.

An explorer calls the library's pure functions from its callbacks. A callback must never raise into the void
(Jupyter would log it where nobody looks), so every update runs inside ``Explorer.guard``:

- an *expected* error (a ``ValueError`` such as ``ScalingError``, ``ImageError``, ``CamError``; a missing optional
  package) is the user's input being wrong: one readable line in the red label, the last valid view stays;
- anything else is a bug: the label names the exception's type, and the traceback is kept in an ipywidgets
  ``Output`` below it (``explorer.details``) for the user to read or paste into an issue.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from html import escape
from typing import Any

CSS = ("<style>.effnet-error{color:#b00020;font-weight:bold}"
       ".effnet-table td,.effnet-table th{padding:1px 8px;text-align:right}</style>")
EXPECTED_ERRORS = (ValueError, ImportError)  # wrong input, or an optional package that is not installed


def ipywidgets() -> Any:
    """The ipywidgets module, imported when a widget is made: the pure functions work without Jupyter."""
    try:
        import ipywidgets
    except ImportError:
        raise ImportError("the explorers need ipywidgets: pip install 'effnet-edu[notebooks]'") from None
    return ipywidgets


class Explorer:
    """The shell of an explorer: ``error`` (an HTML label, CSS class ``effnet-error``), ``details`` (an ``Output``
    holding the traceback of an unexpected error) and ``widget`` (what the notebook displays, made by ``_layout``).
    ``last_update_ms`` is how long the last successful update took (computation and redraw)."""

    def __init__(self) -> None:
        self.w = ipywidgets()
        self.error = self.w.HTML("").add_class("effnet-error")
        self.details = self.w.Output().add_class("effnet-error-details")
        self.messages = self.w.VBox([self.error, self.details])
        self.widget: Any = None
        self.last_update_ms = float("nan")

    def _layout(self, *children: Any) -> None:
        """The displayed box: the shared CSS, then ``children`` (place ``self.messages`` among them)."""
        self.widget = self.w.VBox([self.w.HTML(CSS), *children])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def guard(self, step: Callable[[], object], message: str = "{}") -> bool:
        """Run one update; on an error show it (``message`` formats an expected one) and return False."""
        start = time.perf_counter()
        try:
            step()
        except EXPECTED_ERRORS as exc:
            self.error.value = escape(message.format(exc))
            self.details.outputs = ()
            return False
        except Exception as exc:  # noqa: BLE001 -- a bug: say what it is, keep the traceback for the user
            self.error.value = escape(f"unexpected {type(exc).__name__}: {exc} (traceback below)")
            self.details.outputs = ()
            self.details.append_stdout(traceback.format_exc())
            return False
        self.error.value = ""
        self.details.outputs = ()
        self.last_update_ms = (time.perf_counter() - start) * 1e3
        return True
