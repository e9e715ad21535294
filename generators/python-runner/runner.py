"""httpsd's Python runner: runs one prometheus-http-sd style `.py` generator, unchanged.

httpsd treats every `foo.py` in a target tree as a run of this component (built from
this directory by scripts/python-runner, never committed as a `.wasm`). The host hands
over the file's name and text through the `script` import; each run:

1. loads the module fresh from that text (as prometheus-http-sd 3.x did on every run),
   named "mymodule" like 3.x, with `__file__` the file's path in the tree;
2. calls `generate_targets(**kwargs)` (or `test_generate_targets` under `httpsd
   check`), kwargs being the query parameters as strings, the first value of a repeated
   key, as Flask's `request.args` gave them to 3.x;
3. turns the returned list of `{"targets": [...], "labels": {...}}` dicts into target
   groups, or the exception it raised into the error httpsd caches: its class name as
   `error_type` and a Python traceback naming the file as it sits in the tree.

Limits: a loop or a sleep that runs into the run's wall-clock or fuel limit is stopped
a little before the host's hard limit, in the Python frames that were running
(`sys.monitoring` checks with the host every `CHECK_EVERY` backward jumps, and
`time.sleep` never sleeps past the run's budget), so the `TimeoutError` shows the
generator's own lines. Code that loops inside C (a regular expression, a huge `sum`)
is stopped by the host's hard limits instead, with the interpreter's frames.

Only modules imported while this component is built exist at run time (componentize-py
snapshots the interpreter then): `preloaded` imports the standard library generators
use, `yaml` and the `requests` shim; `httpshim` carries `urllib.request` and `requests`
over wasi:http, which the host grants per generator (`[http] allow`).
"""

import builtins
import linecache
import logging
import marshal
import os
import random
import sys
import time
import traceback
import types

import preloaded  # noqa: F401  (the standard library a generator may import)
import httpshim
import wit_world
from componentize_py_types import Err
from wit_world.imports import log, script
from wit_world.imports.httpsd_generator_types import Error, TargetGroup

# Nothing of the build machine's environment stays in the snapshot: a generator sees an
# empty `os.environ`, as the sandbox grants none.
os.environ.clear()

RUNNER_FILES = {__file__, httpshim.__file__}

# Backward jumps (loop iterations) between two questions to the host; a question costs
# about as much as a few hundred iterations of a trivial loop.
CHECK_EVERY = 2000


class Stop(BaseException):
    """Raised where the generator was when its budget ran out. A BaseException, so a
    generator's `except Exception:` does not swallow it."""


class InvalidOutput(Exception):
    """What the generator returned is not a list of target groups Prometheus takes."""


class SDResultNotValidException(Exception):
    """prometheus-http-sd 3.x's error for a generator that returned None."""


# ---------------------------------------------------------------------------------------
# Stopping in Python frames


_countdown = CHECK_EVERY
_stopped = None


def _stop(why):
    global _stopped
    _stopped = why
    raise Stop(why)


def _on_jump(code, offset, destination):
    global _countdown
    _countdown -= 1
    if _countdown > 0:
        return None
    _countdown = CHECK_EVERY
    why = script.should_stop()
    if why is not None:
        _stop(why)
    return None


_real_sleep = time.sleep


def _sleep(seconds):
    """`time.sleep` that never sleeps past the run's budget: it stops the run there."""
    left = script.time_left() / 1e9
    if seconds > left:
        _real_sleep(max(left, 0.0))
        _stop(script.should_stop() or "wall clock")
    _real_sleep(seconds)


time.sleep = _sleep

_TOOL = sys.monitoring.PROFILER_ID
sys.monitoring.use_tool_id(_TOOL, "httpsd")
sys.monitoring.register_callback(_TOOL, sys.monitoring.events.JUMP, _on_jump)


# ---------------------------------------------------------------------------------------
# Logging and print


class _RunLog(logging.Handler):
    """`logging` records into the run log (`?debug=true`, `httpsd check`)."""

    LEVELS = [
        (logging.ERROR, log.Level.ERROR),
        (logging.WARNING, log.Level.WARN),
        (logging.INFO, log.Level.INFO),
        (logging.DEBUG, log.Level.DEBUG),
    ]

    def emit(self, record):
        try:
            message = self.format(record)
        except Exception:
            message = str(record.msg)
        level = next((lv for at, lv in self.LEVELS if record.levelno >= at), log.Level.TRACE)
        log.log(level, message)


_root = logging.getLogger()
_root.handlers[:] = [_RunLog()]
_root.handlers[0].setFormatter(logging.Formatter("%(name)s: %(message)s"))
_root.setLevel(logging.INFO)


# ---------------------------------------------------------------------------------------
# One run


def _load(name, text):
    """The generator's module, fresh: 3.x loaded it with SourceFileLoader("mymodule")."""
    module = types.ModuleType("mymodule")
    module.__file__ = name
    module.__builtins__ = builtins
    linecache.cache[name] = (len(text), None, text.splitlines(True), name)
    code = _code(name, text)
    sys.modules["mymodule"] = module
    exec(code, module.__dict__)
    return module


def _code(name, text):
    """The module's code: the bytecode an earlier run of this file kept with the host,
    or compiled now and offered to it (before any of the generator's code runs, so that
    code cannot offer bytecode of its own; the host hears one offer per run)."""
    kept = script.compiled()
    if kept is not None:
        try:
            return marshal.loads(kept)
        except (ValueError, EOFError, TypeError):
            pass
    code = compile(text, name, "exec", dont_inherit=True)
    script.keep_compiled(marshal.dumps(code))
    return code


def _kwargs(params):
    """The first value of each key, as `**request.args` gave them to 3.x."""
    kwargs = {}
    for key, value in params:
        kwargs.setdefault(key, value)
    return kwargs


def _groups(name, result):
    """3.x's answer (a list of target-group dicts, or one dict) as WIT target groups."""
    if result is None:
        raise SDResultNotValidException(f"{name} Generated result is None")
    if isinstance(result, dict):
        result = [result]
    if not isinstance(result, (list, tuple)):
        raise InvalidOutput(
            f"generate_targets returned {type(result).__name__}, not a list of target groups"
        )
    groups = []
    for i, group in enumerate(result):
        if not isinstance(group, dict):
            raise InvalidOutput(f"group {i} is {type(group).__name__}, not a dict")
        unknown = sorted(str(k) for k in group if k not in ("targets", "labels"))
        if unknown:
            raise InvalidOutput(
                f"group {i} has keys Prometheus does not accept: {', '.join(unknown)}"
            )
        targets = group.get("targets") or []
        labels = group.get("labels") or {}
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise InvalidOutput(f"group {i}: targets must be a list of strings")
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise InvalidOutput(f"group {i}: labels must map strings to strings")
        groups.append(TargetGroup(targets=list(targets), labels=list(labels.items())))
    return groups


def _without_runner_frames(error):
    """The traceback from the generator's first frame on: the runner's own frames (the
    call into the module, the stop check) are not the generator's."""
    te = traceback.TracebackException.from_exception(error)
    pending = [te]
    while pending:
        t = pending.pop()
        t.stack = traceback.StackSummary.from_list(
            [f for f in t.stack if f.filename not in RUNNER_FILES]
        )
        pending.extend(x for x in (t.__cause__, t.__context__) if x is not None)
    return te


def _report(error):
    """Tells the host how the run failed; returns the message for `generate`'s error.
    Once the budget ran out the run is a `TimeoutError`, whatever the generator made
    of our `Stop` (a bare `except:` that raised something else)."""
    te = _without_runner_frames(error)
    if _stopped is not None:
        message = f"Generator exceeded timeout limit: {_stopped}"
        frames = "".join(te.stack.format())
        script.failed(
            "TimeoutError",
            f"Traceback (most recent call last):\n{frames}TimeoutError: {message}",
        )
        return message
    script.failed(type(error).__name__, "".join(te.format()).rstrip("\n"))
    return str(error)


class WitWorld(wit_world.WitWorld):
    def generate(self, params):
        name = script.name()
        if not name:
            raise Err(Error(message="the Python runner runs .py generators only"))
        random.seed()
        sys.monitoring.set_events(_TOOL, sys.monitoring.events.JUMP)
        try:
            module = _load(name, script.source())
            func = getattr(module, "generate_targets")
            if script.is_check():
                func = getattr(module, "test_generate_targets", func)
            result = func(**_kwargs(params))
            # The runner's own loops are not the generator's: not watched.
            sys.monitoring.set_events(_TOOL, 0)
            result = _groups(name, result)
        except BaseException as error:  # noqa: B036  (everything is the generator's)
            message = _report(error)
            raise Err(Error(message=message)) from None
        finally:
            sys.monitoring.set_events(_TOOL, 0)
        return result
