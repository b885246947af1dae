"""What every exercise check shares: printed steps, a failure that names the fault, and calls that are not allowed."""

from __future__ import annotations

import dis
import inspect
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

import torch

from . import calls
from .calls import CheckTimeout, time_limit
from .diagnosis import close, is_permutation, value_fault
from .layer import inspect_layer
from .values import MAX_SHOWN, shown

__all__ = ["ExerciseFailure", "Steps", "refuse_calls", "first_match", "seeded"]

#: Seconds an exercise check may run before a student's code that never returns is stopped.
EXERCISE_TIME_LIMIT = 120.0


class ExerciseFailure(AssertionError):
    """A wrong answer: the first line of the message says what is wrong in the student's code."""


class Steps:
    """The steps of one exercise check: one printed line when all hold, the fault first when one does not."""

    def __init__(self, exercise: int) -> None:
        self.exercise = exercise
        self.held: list[str] = []

    def ok(self, label: str) -> None:
        """Record a step that holds (printed in the summary of :meth:`done`)."""
        self.held.append(label)

    def fail(self, label: str, fault: str, evidence: str = "") -> NoReturn:
        """Print and raise the failure of step ``label``; ``fault`` (one sentence) comes first."""
        held = f"\n  (held before it: {'; '.join(self.held)})" if self.held else ""
        print(f"[FAIL] Exercise {self.exercise}, {label}: {fault}" + (f"\n{evidence}" if evidence else "") + held)
        raise ExerciseFailure(f"Exercise {self.exercise}: {fault}" + (f"\n{evidence}" if evidence else ""))

    def layer(self, label: str, layer: Any, example: torch.Tensor, **known: Any) -> None:
        """Run the layer check on ``layer``; a failure is this exercise's, with the layer check's verdicts below."""
        report = inspect_layer(layer, example, time_limit_s=calls.CALL_TIME_LIMIT, **known)
        if not report.passed:
            self.fail(label, report.fault, "\n".join(f"  {v}" for v in report.verdicts))
        self.ok(f"{label} ({', '.join(v.name for v in report.verdicts[1:])})")

    def done(self) -> None:
        """Print the one line of a check that passed."""
        print(f"[ok  ] Exercise {self.exercise} is right: " + "; ".join(self.held))

    def expect(
        self,
        label: str,
        yours: torch.Tensor,
        right: torch.Tensor,
        tol: float,
        mistakes: Mapping[str, Any],
        factors: Mapping[str, float] | None = None,
    ) -> None:
        """Pass if ``yours`` matches ``right``; else name the first of ``mistakes`` (fault -> wrong value) it matches.

        Otherwise the failure says how ``yours`` relates to ``right`` (see :func:`value_fault`, which ``factors``
        is passed to).
        """
        yours, right = torch.as_tensor(yours).detach().cpu(), torch.as_tensor(right).detach().cpu()
        evidence = _evidence(yours, right, tol)
        if yours.shape != right.shape:
            fault = first_match(yours, mistakes, tol)
            self.fail(
                label,
                fault or f"your result has shape {list(yours.shape)}, the right one {list(right.shape)}",
                evidence,
            )
        if close(yours.double(), right.double(), tol):
            self.ok(label)
            return
        fault = first_match(yours, mistakes, tol)
        if not fault and is_permutation(yours.double().reshape(1, -1), right.double().reshape(1, -1), tol):
            fault = "your result holds the right values in the wrong positions"
            evidence = f"  yours {shown(_readable(yours).double())}\n  right {shown(_readable(right).double())}"
        self.fail(label, fault or value_fault(yours, right, tol, factors), evidence)

    def guarded(self, what: str, run: Callable[..., Any], *args: Any) -> Any:
        """``run(*args)``, the student's code, under a time limit; a crash, a timeout or an argument changed in
        place becomes a named failure."""
        before = [a.clone() if isinstance(a, torch.Tensor) else None for a in args]
        try:
            with time_limit(EXERCISE_TIME_LIMIT):
                result = run(*args)
        except NotImplementedError:
            raise
        except CheckTimeout as err:
            self.fail(f"calling {what}", f"{what} {err}: a loop that never ends?")
        except ExerciseFailure:
            raise
        except Exception as err:  # a crash in student code is reported with its type, where it is easy to find
            self.fail(f"calling {what}", f"{what} raised {type(err).__name__}: {err}")
        for n, (arg, copy) in enumerate(zip(args, before)):
            if copy is not None and not calls.same(arg, copy):
                self.fail(
                    f"calling {what}",
                    f"{what} changes its argument {n + 1} in place (an operation such as *=, -= or .mul_() on it): "
                    f"the caller's tensor is no longer what it passed; compute a new tensor instead (x = x * ...)",
                )
        return result


def _readable(t: torch.Tensor) -> torch.Tensor:
    """The leading part of ``t`` small enough to print: its first sample, then its first channel."""
    while t.numel() > MAX_SHOWN and t.dim() > 1:
        t = t[0]
    return t


def _evidence(yours: torch.Tensor, right: torch.Tensor, tol: float) -> str:
    """Both values when small; else the first few positions where they differ."""
    if yours.numel() <= MAX_SHOWN or yours.shape != right.shape:
        return f"  yours {shown(yours.double())}\n  right {shown(right.double())}"
    a, b = yours.double(), right.double()
    wrong = ~((a - b).abs() <= tol * (1 + b.abs()))
    places = wrong.nonzero()[:5].tolist()
    lines = [
        f"  at {place}: yours {a[tuple(place)].item():.6g}, right {b[tuple(place)].item():.6g}" for place in places
    ]
    return f"  {int(wrong.sum())} of {wrong.numel()} values differ; the first:\n" + "\n".join(lines)


def first_match(yours: torch.Tensor, mistakes: Mapping[str, Any], tol: float) -> str:
    """The description of the first mistake in ``mistakes`` whose wrong value ``yours`` equals ("" if none).

    A mistake's value may be a tuple of tensors: the forms the same mistake can take.
    """
    yours = torch.as_tensor(yours).detach().cpu().double()
    for fault, wrong in mistakes.items():
        for form in wrong if isinstance(wrong, tuple) else (wrong,):
            form = torch.as_tensor(form).detach().cpu().double()
            if form.shape == yours.shape and close(yours, form, tol):
                return fault
    return ""


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _functions(answer: Any) -> list[types.FunctionType]:
    if inspect.isclass(answer):
        return [f for f in vars(answer).values() if isinstance(f, types.FunctionType)]
    return [answer] if isinstance(answer, types.FunctionType) else []


def refuse_calls(
    steps: Steps, answer: Any, forbidden: Callable[[Any], bool], attributes: set[str] | frozenset[str], why: str
) -> None:
    """Fail when ``answer`` (a function or a class) uses what the exercise asks the student to write.

    Every global name the answer's code uses is resolved in its module; ``forbidden`` says whether the object
    it names is the package's version (a function, a class, an instance). Attributes named in ``attributes``
    are refused, as in ``model.bits_per_dim(...)``. ``why`` says what to do instead.
    """
    for function in _functions(answer):
        for code in _code_objects(function.__code__):
            for instruction in dis.get_instructions(code):
                name = instruction.argval
                if instruction.opname in ("LOAD_ATTR", "LOAD_METHOD") and name in attributes:
                    steps.fail("the rules", f"your answer calls the package's {name}: {why}")
                global_name = instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME") and name in function.__globals__
                if global_name and forbidden(function.__globals__[name]):
                    steps.fail("the rules", f"your answer uses the package's {name}: {why}")
    steps.ok("written without the package's version")


def seeded(seed: int) -> torch.Generator:
    """A generator with ``seed``: each check draws its inputs from its own, so the global state is untouched."""
    return torch.Generator().manual_seed(seed)
