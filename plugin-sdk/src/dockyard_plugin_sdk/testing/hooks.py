"""A hook recorder for plugin authors (pytest's Pytester ``HookRecorder``, for pluggy).

:class:`HookRecorder` hooks a pluggy manager with ``add_hookcall_monitoring`` and keeps every
call with its keyword arguments and outcome. Usable without pytest; the SDK's pytest plugin
wraps it in the ``hook_recorder`` fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

__all__ = ["HookCall", "HookRecorder"]


@dataclass
class HookCall:
    """One hook call as the manager saw it. ``result`` is set once the call returned."""

    name: str
    kwargs: dict[str, Any]
    plugins: list[str]
    result: Any = None
    exception: BaseException | None = None
    finished: bool = False

    def __getattr__(self, key: str) -> Any:  # call.kernel, like Pytester's ParsedCall
        try:
            return self.__dict__["kwargs"][key]
        except KeyError:
            raise AttributeError(key) from None


class HookRecorder:
    """Records every hook call made through ``pm``; undo with :meth:`finish_recording`."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm
        self._calls: list[HookCall] = []
        self._open: list[HookCall] = []

        def before(hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
            names = [pm.get_name(impl.plugin) or repr(impl.plugin) for impl in hook_impls]
            call = HookCall(hook_name, dict(kwargs), names)
            self._calls.append(call)
            self._open.append(call)

        def after(outcome: Any, hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
            call = self._open.pop() if self._open else HookCall(hook_name, dict(kwargs), [])
            call.exception = outcome.exception
            call.result = None if outcome.exception is not None else outcome.get_result()
            call.finished = True

        self._undo: Callable[[], None] | None = pm.add_hookcall_monitoring(before, after)

    def finish_recording(self) -> None:
        """Stop recording (idempotent). The calls recorded so far stay available."""
        if self._undo is not None:
            self._undo()
            self._undo = None

    def __enter__(self) -> HookRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish_recording()

    def _check_name(self, name: str) -> None:
        if not hasattr(self._pm.hook, name):
            raise ValueError(f"no hook named {name!r} on this plugin manager (misspelt?)")

    def calls(self, name: str | None = None) -> list[HookCall]:
        """Recorded calls of hook ``name`` (every hook when None), oldest first."""
        if name is None:
            return list(self._calls)
        self._check_name(name)
        return [c for c in self._calls if c.name == name]

    def names(self) -> list[str]:
        """Names of the hooks called, in call order (with repeats)."""
        return [c.name for c in self._calls]

    def assert_called(self, name: str, **kwargs: Any) -> HookCall:
        """Assert hook ``name`` was called with (at least) these keyword values; returns the
        first matching call. The failure message lists the calls that were recorded."""
        calls = self.calls(name)
        for call in calls:
            if all(k in call.kwargs and call.kwargs[k] == v for k, v in kwargs.items()):
                return call
        seen = "\n".join(f"  {c.name}({_short(c.kwargs)})" for c in calls) or "  (no calls)"
        want = f"{name}({_short(kwargs)})" if kwargs else name
        raise AssertionError(f"hook {want} was not called; calls of {name}:\n{seen}")

    def assert_not_called(self, name: str) -> None:
        calls = self.calls(name)
        if calls:
            raise AssertionError(f"hook {name} was called {len(calls)} time(s): "
                                 f"{', '.join(_short(c.kwargs) for c in calls)}")

    def clear(self) -> None:
        self._calls.clear()


def _short(kwargs: dict[str, Any]) -> str:
    parts = []
    for k, v in kwargs.items():
        text = repr(v)
        parts.append(f"{k}={text[:60] + '...' if len(text) > 60 else text}")
    return ", ".join(parts)


