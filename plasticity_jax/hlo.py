"""Reading XLA's compiled programs: what the step loop does, and how many bytes a step moves.

Used by the performance test (no weight-sized copy inside a loop body, tests/test_hlo.py) and the benchmark scripts
(bytes per seed-step next to the network's minimum, loop-body op counts). All functions read the optimised HLO text
of a compiled program (`jax.jit(f).lower(...).compile().as_text()`).

- `computations(text)`: the HLO computations by name, each a list of instruction lines.
- `loop_bodies(text)`: the names of the computations that are bodies of `while` loops (a `lax.scan` or
  `lax.fori_loop` becomes one; the engine's step loop is one of them).
- `copies(lines, min_elements, dtypes)`: the `copy` instructions of a computation whose result has at least
  `min_elements` elements of one of `dtypes`. A copy inside a loop body is a full pass over that buffer at every
  iteration; copies inside fused computations are layout changes within a fusion and are not listed by callers that
  look at loop bodies only.
- `bytes_accessed(compiled)`: XLA's own estimate of the bytes a compiled program reads and writes
  (`cost_analysis()['bytes accessed']`). The engine's step cost is the difference between a program of N steps and
  one of none, divided by N and the number of runs (scripts/benchmark_permuted_mnist.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FLOAT_DTYPES = ('f64', 'f32', 'bf16', 'f16')

_COMPUTATION = re.compile(r'^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$')
_WHILE_BODY = re.compile(r' while\(.*\bbody=%?([\w.\-]+)')
_RESULT = re.compile(r'= (\w+)\[([\d,]*)\]')


def computations(text: str) -> dict[str, list[str]]:
    """The computations of an HLO module's text, by name: their instruction lines (stripped)."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        match = _COMPUTATION.match(line)
        if match and not line.startswith(' '):
            current = found.setdefault(match.group(1), [])
        elif line.startswith('}'):
            current = None
        elif current is not None and line.strip():
            current.append(line.strip())
    return found


def loop_bodies(text: str) -> list[str]:
    """Names of the computations that are the bodies of `while` instructions."""
    return sorted({match.group(1) for match in _WHILE_BODY.finditer(text)})


def _elements(dims: str) -> int:
    count = 1
    for dim in dims.split(','):
        if dim:
            count *= int(dim)
    return count


def copies(lines: Iterable[str], min_elements: int, dtypes: tuple[str, ...] = FLOAT_DTYPES) -> list[str]:
    """The `copy` instructions among `lines` whose result has >= `min_elements` elements of one of `dtypes`."""
    found = []
    for line in lines:
        if ' copy(' not in line:
            continue
        result = _RESULT.search(line)
        if result and result.group(1) in dtypes and _elements(result.group(2)) >= min_elements:
            found.append(line)
    return found


def loop_body_copies(text: str, min_elements: int, dtypes: tuple[str, ...] = FLOAT_DTYPES) -> dict[str, list[str]]:
    """The weight-sized copies of every loop body that has any: {body name: copy instructions}."""
    bodies = computations(text)
    found = {name: copies(bodies.get(name, ()), min_elements, dtypes) for name in loop_bodies(text)}
    return {name: lines for name, lines in found.items() if lines}


def instruction_count(text: str, computation: str) -> int:
    """The number of instructions of one computation (parameters and tuple plumbing included)."""
    return len(computations(text).get(computation, ()))


def bytes_accessed(compiled) -> float:
    """XLA's estimate of the bytes a compiled program reads and writes; NaN where the backend gives none."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get('bytes accessed', float('nan')))
