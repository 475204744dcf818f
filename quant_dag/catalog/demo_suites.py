"""The generated demo suites, arithmetic and basic_mc: their items and prompts. Standard library only.

A low leaf, so that both readers import it downwards: the evaluator turns the items into samples
(quant_dag.evaluate.datasets) and the demo model trains on the same formats, generated with other seeds
(quant_dag.checkpoint.tiny_qwen35). A generator's output is part of every result on its suite (the dataset revision
names the generator's version): change it only with that version.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# The default prompt of the choice tasks without a reference prompt of their own (basic_mc, MMLU-Pro zero-shot).
CHOICE_TEMPLATE = (
    "Answer the following multiple choice question. The last line of your response should be of the form "
    "'Answer: $LETTER' (without quotes) where LETTER is one of {letters}.\n\n{question}\n\n{choices}"
)
ARITHMETIC_TEMPLATE = "{question} Answer with just the number."

ARITHMETIC_VERSION = "arithmetic-gen-v1"
BASIC_MC_VERSION = "basic_mc-gen-v1"


def choice_fields(question: str, options: list[str] | tuple[str, ...]) -> dict[str, str]:
    """A choice template's fields: the question, the options as "A) ..." lines, and their letters."""
    letters = LETTERS[: len(options)]
    lines = "\n".join(f"{letter}) {text}" for letter, text in zip(letters, options))
    return {"question": question, "choices": lines, "letters": letters}


@dataclass(frozen=True)
class ArithmeticItem:
    """One sum, difference or small product: `a op b` is `value`."""

    id: str
    a: int
    op: str  # "+", "-" or "times"
    b: int
    value: int

    @property
    def question(self) -> str:
        return f"What is {self.a} {self.op} {self.b}?"

    @property
    def expression(self) -> str:
        """The sum as arithmetic writes it ("7 * 8")."""
        return f"{self.a} {'*' if self.op == 'times' else self.op} {self.b}"

    @property
    def prompt(self) -> str:
        """The question as the suite asks it by default."""
        return ARITHMETIC_TEMPLATE.format(question=self.question)

    def row(self) -> dict[str, str]:
        """The item as a dataset row (the task's schema)."""
        return {"id": self.id, "question": self.question, "answer": str(self.value), "op": self.op}


def arithmetic_items(count: int, seed: int) -> list[ArithmeticItem]:
    """`count` one- and two-digit sums and differences (never negative) and small products, seeded."""
    rng = random.Random(f"arithmetic:{seed}")  # str seeds are stable across processes; the task name decorrelates
    items = []
    for i in range(count):
        op = rng.choices(["+", "-", "times"], weights=[45, 35, 20])[0]
        if op == "times":  # small tables only: a 135M model gets some of these right
            a, b = rng.randint(2, 9), rng.randint(2, 9)
            value = a * b
        else:
            a, b = (rng.randint(1, 9) if rng.random() < 0.5 else rng.randint(10, 99) for _ in range(2))
            if op == "-":
                a, b = max(a, b), min(a, b)  # no negative results
            value = a + b if op == "+" else a - b
        items.append(ArithmeticItem(f"arithmetic-{i}", a, op, b, value))
    return items


# disjoint on purpose (no "orange", "peach", "plum"): exactly one option may fit the question
WORDS: dict[str, tuple[str, ...]] = {
    "color": ("red", "blue", "green", "yellow", "purple", "pink", "brown", "black"),
    "animal": ("dog", "cat", "horse", "cow", "lion", "rabbit", "sheep", "duck"),
    "fruit": ("apple", "banana", "grape", "pear", "mango", "lemon", "strawberry", "watermelon"),
    "object": ("chair", "table", "spoon", "hammer", "shoe", "book", "car", "cup"),
}
MC_QUESTIONS = {
    "color": "Which of these is a color?",
    "animal": "Which of these is an animal?",
    "fruit": "Which of these is a fruit?",
    "largest": "Which number is the largest?",
}


@dataclass(frozen=True)
class ChoiceItem:
    """One four-option question; `answer` is the right option's letter."""

    id: str
    question: str
    options: tuple[str, ...]
    answer: str
    category: str  # a WORDS category, or "largest"

    @property
    def right(self) -> str:
        """The right option's text."""
        return self.options[LETTERS.index(self.answer)]

    @property
    def prompt(self) -> str:
        """The question as the suite asks it by default."""
        return CHOICE_TEMPLATE.format(**choice_fields(self.question, self.options))

    def row(self) -> dict[str, object]:
        """The item as a dataset row (the task's schema)."""
        return {
            "id": self.id,
            "question": self.question,
            "options": list(self.options),
            "answer": self.answer,
            "category": self.category,
        }


def basic_mc_items(count: int, seed: int) -> list[ChoiceItem]:
    """`count` very easy questions (which is a color, an animal, a fruit, the largest number), seeded."""
    rng = random.Random(f"basic_mc:{seed}")
    items = []
    for i in range(count):
        category = rng.choice(list(MC_QUESTIONS))
        if category == "largest":
            numbers = rng.sample(range(1, 100), 4)
            options, correct = [str(n) for n in numbers], numbers.index(max(numbers))
        else:
            others = [w for c, words in WORDS.items() if c != category for w in words]
            options = [rng.choice(WORDS[category])] + rng.sample(others, 3)
            rng.shuffle(options)
            correct = next(k for k, w in enumerate(options) if w in WORDS[category])
        items.append(ChoiceItem(f"basic_mc-{i}", MC_QUESTIONS[category], tuple(options), LETTERS[correct], category))
    return items
