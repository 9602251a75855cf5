"""What the teacher is asked, and how its replies are read and checked.

Rationales: few-shot CoT (BBH's own 3-shot prompt, or a user template file), else the paper's zero-shot
CoT teacher prompt (task description + question, concluding "Therefore, the answer is"), cut to the first
"... the answer is X." Knowledge: the SKIntern teacher prompt, from question + gold answer + a correct
rationale, a numbered learning summary and numbered supplementary knowledge that must not give the answer away."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from skintern.data import Example, cot_prompt
from skintern.errors import SkinternError
from skintern.files import read_text

COT_SYSTEM = ("Answer the last question the way the examples do: reason step by step, "
              "then finish with one sentence 'So the answer is X.' and stop.")

ZERO_SHOT_SYSTEM = ("You are an expert teacher. Explain your reasoning step by step first, "
                    "and conclude with the format 'Therefore, the answer is X.' and stop.")

KNOWLEDGE_SYSTEM = """You are a teacher preparing a student for a reasoning question. You are given the \
question, its correct answer and usually a correct worked solution. Do NOT state the answer, the correct option letter or the correct \
option's text anywhere; teach how to get there instead.

Reply in exactly this format and nothing else:
Learning summary:
1. <a general step for solving questions like this>
2. ...
Supplementary knowledge:
1. <a fact, definition, rule or pitfall this question relies on>
2. ...

Write 3-5 short summary steps and 2-4 short knowledge items."""

_ANSWER_CUT = re.compile(r"\bthe answer is\s.*?[.!](?=\s|$)", re.IGNORECASE | re.DOTALL)
_shots = functools.lru_cache(maxsize=None)(cot_prompt)  # one read of each task's prompt file
_HEADERS = {"summary": re.compile(r"learning\s+summary", re.I), "knowledge": re.compile(r"supplementary\s+knowledge", re.I)}
_ITEM = re.compile(r"^\s*(?:[-*]\s*)?\**\s*(\d+)\s*[.)]\**\s*(.*)$")


def load_template(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise SkinternError(f"{path}: prompt template not found (teacher.prompt_template)")
    text = read_text(path)
    if "{question}" not in text:
        raise SkinternError(f"{path}: prompt template has no {{question}} placeholder")
    return text


def rationale_messages(example: Example, data_dir: Path | None, template: str | None) -> list[dict]:
    """A user template wins; otherwise BBH uses its own 3-shot CoT prompt, and other data (no few-shot file) the
    paper's zero-shot CoT teacher prompt: task description + question (its options included) + the trigger."""
    if template is not None:
        prompt = template.replace("{task}", example.task).replace("{question}", example.question.strip())
    elif example.dataset == "bbh":
        prompt = f"{_shots(data_dir, example.task)}\n\nQ: {example.question.strip()}\nA: Let's think step by step."
    else:
        return [{"role": "system", "content": ZERO_SHOT_SYSTEM}, {"role": "user", "content": zero_shot_prompt(example)}]
    return [{"role": "system", "content": COT_SYSTEM}, {"role": "user", "content": prompt}]


def zero_shot_prompt(example: Example) -> str:
    task = f"Task: {example.description.strip()}\n" if example.description.strip() else ""
    return (f"{task}Explain your reasoning first and conclude with the format 'Therefore, the answer is'.\n\n"
            f"Question: {example.question.strip()}\nAnswer: Let's think step by step.")


def clean_rationale(text: str) -> str | None:
    """Reasoning up to its first "... the answer is X." sentence, without an echoed trigger or an
    invented next question; None when there is no answer sentence (a rationale that never concludes)."""
    text = re.sub(r"^\s*(?:A:\s*)?(?:Let's think step by step\.?)?\s*", "", text.strip(), flags=re.I)
    text = re.split(r"\n\s*Q:", text, maxsplit=1)[0]
    match = _ANSWER_CUT.search(text)
    return text[: match.end()].strip() if match else None


def gold_option(example: Example) -> str | None:
    """Text of the correct option of a choice question, if the question lists it."""
    if example.kind != "choice" or not example.options:
        return None
    k = ord(example.answer.strip("()")) - 65
    return example.options[k].strip() if 0 <= k < len(example.options) else None


def knowledge_messages(example: Example, rationale: str | None = None) -> list[dict]:
    """Question + gold answer, and a correct rationale when there is one (the paper's k = LLM(p_k, x, y, r))."""
    option = gold_option(example)
    answer = f"{example.answer} {option}" if option else example.answer
    user = f"Question:\n{example.question.strip()}\n\nCorrect answer: {answer}"
    if rationale:
        user += f"\n\nCorrect solution:\n{rationale.strip()}"
    return [{"role": "system", "content": KNOWLEDGE_SYSTEM}, {"role": "user", "content": user}]


def parse_knowledge(text: str) -> tuple[str, str] | None:
    """(summary, knowledge) as "1. ...\\n2. ..." blocks, renumbered; None when either list is missing."""
    found = {name: m for name, rx in _HEADERS.items() if (m := rx.search(text))}
    if len(found) < 2:
        return None
    order = sorted(found, key=lambda name: found[name].start())
    bounds = {name: (found[name].end(), found[nxt].start() if (nxt := dict(zip(order, order[1:])).get(name)) else len(text))
              for name in order}
    lists = {name: _numbered(text[a:b]) for name, (a, b) in bounds.items()}
    if not lists["summary"] or not lists["knowledge"]:
        return None
    return lists["summary"], lists["knowledge"]


def _numbered(block: str) -> str:
    """Numbered items of a block (continuation lines joined), renumbered from 1; "" when there are none."""
    items: list[str] = []
    for line in block.splitlines():
        if match := _ITEM.match(line):
            items.append(match.group(2))
        elif items and line.strip():
            items[-1] += " " + line.strip()
    items = [" ".join(item.replace("**", "").split()) for item in items]
    return "\n".join(f"{k}. {item}" for k, item in enumerate((i for i in items if i), 1))


def answer_leak(text: str, example: Example) -> str | None:
    """Why `text` gives the answer away, or None.

    Mentioning an option's text is allowed (comparing options is teaching), stating it as the
    answer is not; the correct letter is never allowed; a specific free-form answer (a number, a
    multi-word sequence) may not appear at all, while a bare label (Yes, False, valid) only may not
    be stated as the answer."""
    answer, option = example.answer, gold_option(example)
    text = re.sub(r"^\d+\. ", "", text, flags=re.M)  # list numbers are not answers
    if example.kind == "choice":
        letter = answer.strip("()")
        if re.search(rf"\({letter}\)|\b(?i:option|choice|answer)\s+{letter}\b", text):
            return f"it names the correct option {answer}"
    targets = [t for t in (answer, option) if t]
    for target in targets:
        stated = rf"\b(?:answer|correct (?:option|choice)|solution)\b[^.\n]{{0,20}}?(?:\bis\b|\bare\b|:|=|\bwould be\b|\bshould be\b)\s*[\"'(*]*{re.escape(target)}(?!\w)"
        if re.search(stated, text, re.I):
            return f"it states the answer {target!r}"
    specific = example.kind == "number" or (example.kind == "text" and len(answer.split()) > 1)
    if specific and re.search(rf"(?<![\w-]){re.escape(answer)}(?!\w)", text, re.I):
        return f"it contains the answer {answer!r}"
    return None


def knowledge_problem(reply: str, example: Example) -> tuple[tuple[str, str] | None, str | None]:
    """Parsed (summary, knowledge) and the problem with it (None when valid)."""
    parsed = parse_knowledge(reply)
    if parsed is None:
        return None, "it is not a numbered 'Learning summary:' list followed by a numbered 'Supplementary knowledge:' list"
    return parsed, answer_leak("\n".join(parsed), example)


def repair_message(problem: str) -> dict:
    return {"role": "user", "content": f"That reply is not usable: {problem}. Rewrite it in the required "
            "format, without stating the answer, the correct option letter or the correct option's text."}
