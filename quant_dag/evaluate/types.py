"""The shapes shared by the evaluation engine: one benchmark sample and one scored answer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Kind = Literal["choice", "math", "code"]


@dataclass(frozen=True)
class Sample:
    """One benchmark item, in the form the evaluator sends and scores.

    `prompt` is the user message, already rendered from the suite's template. `reference` is what the scorer
    compares against: a choice letter ("C"), a math answer ("\\frac{1}{2}"), or for code a JSON string of the
    tests (see quant_dag.evaluate.scoring.score_code)."""

    id: str
    prompt: str
    reference: str
    kind: Kind
    choices: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    # (prompt, reference, choices) per repeat, for a task that varies the item between repeats (GPQA's option order
    # drawn anew for each repeat, as simple-evals does); empty: every repeat sends this sample as it is
    per_repeat: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def for_repeat(self, repeat: int) -> "Sample":
        """The sample as repeat `repeat` sends and scores it."""
        if not self.per_repeat:
            return self
        prompt, reference, choices = self.per_repeat[repeat % len(self.per_repeat)]
        return replace(self, prompt=prompt, reference=reference, choices=choices, per_repeat=())


@dataclass(frozen=True)
class Scored:
    extracted: str | None  # the answer found in the output (None: nothing found)
    score: float  # 1.0 correct, 0.0 wrong (code: all tests pass)
    detail: str = ""  # why, for a person reading one record (e.g. "2/3 tests passed", "timeout")
