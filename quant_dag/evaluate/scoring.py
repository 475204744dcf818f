"""Answer extraction and scoring for multiple-choice and math benchmarks (code: quant_dag.evaluate.code).

Extraction works on the answer text only (the server's reasoning field is not passed), but a `<think>` block
left in the content is stripped first, so guesses made while thinking are never scored."""

from __future__ import annotations

import random
import re
import string
import threading
from collections.abc import Sequence

from quant_dag.evaluate.types import Sample, Scored

NO_ANSWER = "no answer found"

# Seconds math_verify may spend parsing / comparing one expression; it enforces this with signal.alarm, which
# only works in the main thread, so worker threads run without it (see _math_verify_timeout).
MATH_VERIFY_TIMEOUT_S = 5


def strip_think(text: str | None) -> str:
    """The text with reasoning removed: closed <think>...</think> blocks dropped, text after a lone </think>
    kept (the template opened the block in the prompt), and an unclosed <think> dropped to the end (the
    reasoning never finished, so nothing after it is a final answer)."""
    text = text or ""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text.strip()


# ---------------------------------------------------------------------------------------------------------------
# multiple choice

# Markup that may wrap a letter: bold/italic, code, math delimiters, \boxed{, \text{, brackets.
_MARK = r"(?:\*\*|__|\*|_|`|\$|\\\(|\\\[|\\(?:boxed|fbox)\s*\{|\\(?:text|textbf|textrm|mathrm|mathbf)\s*\{|[\(\[\{])"
_OPENERS = "([{*_$`"
_CLOSERS = ")]}*_$`"

# "answer is", "the final answer:", "**Answer:**", "correct option is", "answer would be" ... (words any case)
_ANSWER_PHRASE = (
    r"(?i:\b(?:(?:final|correct|best|right)\s+)?answer(?:\s+(?:choice|option))?"
    r"|\b(?:correct|right|best)\s+(?:option|choice))"
    r"\s*(?:\*\*|__|\*)?\s*"
    r"(?:(?i:is|would\s+be|should\s+be|will\s+be|must\s+be)\b\s*[:：]?|[:：=])"
    r"\s*(?:(?i:option|choice)\s+)?"
)

# A bare (unwrapped) letter followed by a lowercase word is prose ("the answer is I think ...", "answer: A is
# wrong, B ..."), unless the word starts a justification ("The answer is B because ...").
_WORD_AFTER = re.compile(r"[ \t]+(?P<w>[a-z]\w*)")
_JUSTIFY = frozenset({"because", "since", "as", "given", "due", "which", "for"})
_LOWER_END = re.compile(r"\s*(?:$|[.,;:!?\)\]\}])")


def _letters(n_choices: int) -> str:
    if not 1 <= n_choices <= 26:
        raise ValueError(f"n_choices must be in 1..26, got {n_choices}")
    return string.ascii_uppercase[:n_choices]


def _wrapped(text: str, start: int, end: int) -> bool:
    """Whether the letter at text[start:end] sits directly inside markup: "(B)", "**C**", "{D}", "$E$"."""
    return start > 0 and end < len(text) and text[start - 1] in _OPENERS and text[end] in _CLOSERS


def _explicit_matches(text: str, letters: str) -> list[tuple[int, str, str]]:
    """(position, letter, source) for every letter given by an answer phrase or a \\boxed{}."""
    cls = letters + letters.lower()
    found: list[tuple[int, str, str]] = []
    answer_re = re.compile(_ANSWER_PHRASE + rf"(?:\s*{_MARK})*\s*(?P<L>[{cls}])(?![A-Za-z0-9])")
    for m in answer_re.finditer(text):
        s, e = m.span("L")
        letter = m.group("L")
        wrapped = _wrapped(text, s, e)
        word = _WORD_AFTER.match(text, e)
        if not wrapped and word and word.group("w") not in _JUSTIFY:
            continue
        # A lowercase letter is accepted only here, and only when it cannot be the article "a" starting prose.
        if letter.islower() and not (wrapped or _LOWER_END.match(text, e)):
            continue
        found.append((s, letter.upper(), "answer phrase"))
    # \boxed{D}, \boxed{\text{D}}, \boxed{(D)}, \boxed{\textbf{(D) Paris}}: uppercase only, since a boxed
    # lowercase letter is more likely a variable ("a" for acceleration) than an option.
    boxed_re = re.compile(
        r"\\(?:boxed|fbox)\s*\{\s*(?:\\(?:text|textbf|textrm|mathrm|mathbf)\s*\{\s*)?\(?\s*"
        rf"(?P<L>[{letters}])(?:\s*\}}|\)|[.:](?:\s|\}}))"
    )
    for m in boxed_re.finditer(text):
        found.append((m.start("L"), m.group("L"), "boxed"))
    return found


def _final_line_letter(text: str, letters: str) -> str | None:
    """The letter when the last non-empty line is only an option: "B", "B.", "(B) Paris", "B) Paris"."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    line = lines[-1].strip().strip("*_#> `").strip()
    cls = f"[{letters}]"
    for pat in (
        rf"^\((?P<L>{cls})\)(?:[.:]?\s.*|[.:]?)$",  # (B) / (B) Paris
        rf"^(?P<L>{cls})(?:[.):](?:\s.*)?)?$",  # B / B. / B) Paris / B: Paris
        rf"^(?i:option|choice)\s+\(?(?P<L>{cls})\)?\.?$",  # Option B
    ):
        m = re.match(pat, line)
        if m:
            return m.group("L")
    return None


def _option_text_letter(text: str, choices: Sequence[str], letters: str) -> str | None:
    """The letter of the one option whose text appears verbatim (as whole words) in the reply, if exactly one."""
    hits = []
    for letter, choice in zip(letters, choices):
        choice = " ".join(str(choice).split())
        if choice and re.search(rf"(?<!\w){re.escape(choice)}(?!\w)", " ".join(text.split())):
            hits.append(letter)
    return hits[0] if len(hits) == 1 else None


def extract_choice_with_source(text: str, n_choices: int, choices: Sequence[str] = ()) -> tuple[str | None, str]:
    """extract_choice, plus which rule found the letter (for a record's detail)."""
    letters = _letters(n_choices)
    text = strip_think(text)
    # Strongest: explicit answer phrases and \boxed{}; the last one wins (models restate, then correct).
    explicit = _explicit_matches(text, letters)
    if explicit:
        _, letter, source = max(explicit, key=lambda t: t[0])
        return letter, source
    letter = _final_line_letter(text, letters)
    if letter:
        return letter, "final line"
    letter = _option_text_letter(text, choices, letters)
    if letter:
        return letter, "option text"
    return None, NO_ANSWER


def extract_choice(text: str, n_choices: int, choices: Sequence[str] = ()) -> str | None:
    """The option letter (A.. the n_choices-th letter) a model's reply commits to, or None.

    Rules, strongest first; within a rule the LAST occurrence wins:
    1. an answer phrase or a box: "The answer is (B)", "Answer: B", "**Answer:** B", "Final answer: (C)",
       "answer is: **C**", "ANSWER: c", "\\boxed{D}", "\\boxed{\\text{D}}". Lowercase letters count only after an
       answer phrase, and only wrapped ("(b)") or followed by punctuation / the end ("ANSWER: c"), so "the answer
       is a bit subtle" gives nothing.
    2. the last non-empty line is just the option: "B", "B.", "(B) Paris", "B) Paris".
    3. exactly one option's text appears verbatim in the reply.
    Letters beyond n_choices are never returned; a <think> block is stripped first."""
    return extract_choice_with_source(text, n_choices, choices)[0]


def extract_mmlu_pro(text: str) -> tuple[str | None, str]:
    """MMLU-Pro's own extraction (TIGER-AI-Lab/MMLU-Pro, evaluate_from_api.py: extract_answer, extract_again,
    extract_final), rule for rule: bold markers removed first, as that script does with every API answer, then the
    FIRST "answer is (X)", else the first line with "Answer: X" (its last one), else the last standalone capital
    A-J anywhere. Letters A-J whatever the number of options, as there."""
    text = strip_think(text).replace("**", "")
    m = re.search(r"answer is \(?([A-J])\)?", text)
    if m:
        return m.group(1), "answer is (X)"
    m = re.search(r".*[aA]nswer:\s*([A-J])", text)
    if m:
        return m.group(1), "Answer: X"
    m = re.search(r"\b[A-J]\b(?!.*\b[A-J]\b)", text, re.DOTALL)
    if m:
        return m.group(0), "last letter"
    return None, NO_ANSWER


def extract_simple_evals(text: str) -> tuple[str | None, str]:
    """simple-evals' multiple-choice extraction (openai/simple-evals, common.py ANSWER_PATTERN_MULTICHOICE, as
    gpqa_eval.py applies it): the first "Answer: X", case-insensitive, X in A-D as written (a lowercase letter is
    extracted and then compares unequal, as there)."""
    m = re.search(r"(?i)Answer[ \t]*:[ \t]*\$?([A-D])\$?", strip_think(text))
    return (m.group(1), "Answer: X") if m else (None, NO_ANSWER)


# A task's reference extraction, by the name its adapter puts in Sample.meta["extractor"]; none: extract_choice.
EXTRACTORS = {"mmlu-pro": extract_mmlu_pro, "simple-evals": extract_simple_evals}


def _reference_letter(reference: str) -> str:
    return reference.strip().strip("()").strip().upper()


def score_choice(text: str, sample: Sample) -> Scored:
    """1.0 when the extracted letter is the reference letter, by the task's reference extraction where it has one
    (MMLU-Pro, GPQA), else extract_choice. Without listed choices, A-J (MMLU-Pro's most)."""
    n = len(sample.choices) if sample.choices else 10
    extractor = EXTRACTORS.get(sample.meta.get("extractor", ""))
    if extractor is not None:
        letter, source = extractor(text)
    else:
        letter, source = extract_choice_with_source(text, n, sample.choices)
    ref = _reference_letter(sample.reference)
    if letter is None and sample.meta.get("no_answer") == "random-guess":
        # MMLU-Pro's compute_accuracy.py guesses a random option when nothing was extracted (seeded 12345 there,
        # drawn in file order); here the draw is seeded per sample and answer, so it does not depend on order
        guess = _letters(n)[random.Random(f"12345:{sample.id}:{text}").randrange(n)]
        return Scored(None, 1.0 if guess == ref else 0.0, f"{NO_ANSWER}: random guess {guess} vs {ref}")
    if letter is None:
        return Scored(None, 0.0, NO_ANSWER)
    ok = letter == ref
    return Scored(letter, 1.0 if ok else 0.0, f"{'correct' if ok else 'wrong'} ({source}): {letter} vs {ref}")


# ---------------------------------------------------------------------------------------------------------------
# math


def _closing_brace(text: str, i: int) -> int | None:
    """The index of the brace that closes the one at text[i] (escaped braces do not count), or None: cut off."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{" and text[j - 1] != "\\":
            depth += 1
        elif text[j] == "}" and text[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return j
    return None


def _last_box_unclosed(text: str) -> bool:
    """Whether the reply ends inside a box: its last \\boxed{ / \\fbox{ never closes (cut off by max_tokens)."""
    opens = list(re.finditer(r"\\(?:boxed|fbox)\s*\{", text))
    return bool(opens) and _closing_brace(text, opens[-1].end() - 1) is None


def _math_verify_timeout() -> int | None:
    # math_verify's timeout is signal.alarm: outside the main thread signal.signal raises ValueError, which
    # parse/verify re-raise. There we run without a timeout; the evaluator scores math in worker processes'
    # main threads (quant_dag.evaluate.engine.Scorer), so its answers always have one.
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def score_math(text: str, sample: Sample) -> Scored:
    """Scored as math-verify's authors use it: `verify(parse(gold), parse(answer))`, parse with its default
    extraction (LaTeX and plain expressions: the boxed answer first, and several boxes form one set, as in
    "\\boxed{2} and \\boxed{-3}"; else a "final answer is" statement, else the last math or number). So 070 == 70,
    \\dfrac == \\frac, 0.5 == \\frac12, 1,000 == 1000, units and \\% dropped, as math-verify normalizes them.
    The gold answer is parsed boxed. Two deliberate differences, tested against math-verify itself: the reasoning
    is never scored (a <think> block left in the content is stripped first), and a reply that ends inside an
    unfinished box (cut off by max_tokens) has no answer, where math-verify would take an earlier number."""
    from math_verify import parse, verify  # heavy import (sympy): only when math is scored

    text = strip_think(text)
    if _last_box_unclosed(text):
        return Scored(None, 0.0, NO_ANSWER)
    t = _math_verify_timeout()
    pred = parse(text, parsing_timeout=t)
    if not pred:
        return Scored(None, 0.0, NO_ANSWER)
    extracted = pred[-1] if isinstance(pred[-1], str) else str(pred[0])  # [sympy value, the text it was read from]
    gold_text = sample.reference.strip()
    gold = parse(f"\\boxed{{{gold_text}}}", parsing_timeout=t)
    if gold:
        ok = bool(verify(gold, pred, timeout_seconds=t))
    else:  # a reference math-verify cannot read: the same text, spaces aside
        ok = "".join(gold_text.split()) == "".join(extracted.split())
    return Scored(extracted, 1.0 if ok else 0.0, f"{'correct' if ok else 'wrong'}: {extracted} vs {gold_text}")


def score_sample(text: str, sample: Sample) -> Scored:
    """The scorer for the sample's kind."""
    if sample.kind == "choice":
        return score_choice(text, sample)
    if sample.kind == "math":
        return score_math(text, sample)
    if sample.kind == "code":
        raise NotImplementedError("code samples are scored by quant_dag.evaluate.code, not score_sample")
    raise ValueError(f"unknown sample kind {sample.kind!r}")
