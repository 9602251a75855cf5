"""The teacher's row (the paper's Table 1 "GPT-3.5-turbo (teacher)"): the teacher's accuracy on the same test
items, scored with the same answer extraction. Its answers come from a file or from the `teacher:` endpoint, not
from the student, so its entry carries no cost figures (tokens, FLOPs, time): the student's would not be theirs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from skintern.data import Example
from skintern.errors import SkinternError
from skintern.files import numbered_jsonl
from skintern.generation import Generation, Generator
from skintern.methods.base import Fitted, Method, MethodSettings
from skintern.methods.rundata import RunData
from skintern.prompts import COT_TRIGGER, answer_instruction, task_head
from skintern.schema import SettingError
from skintern.teacher.cache import ResponseCache
from skintern.teacher.client import TeacherClient
from skintern.teacher.config import TeacherConfig

ANSWER_FIELDS = ("id", "output")


@dataclass
class TeacherSettings(MethodSettings):
    answers: str | None = None
    """A JSONL file of the teacher's replies, {"id": "<dataset>/<task>/<index>", "output": "<reply>"} per test item;
    None: ask the `teacher:` endpoint (zero-shot CoT, answers cached in teacher.cache_path)."""

    def __post_init__(self):
        if self.answers is not None and not self.answers.strip():
            raise SettingError("answers", "expected a file path or null, got an empty string")


def load_answers(path: str | Path) -> dict[str, str]:
    """Item id -> the teacher's reply; a bad line is one error naming the file, line and field."""
    answers: dict[str, str] = {}
    for lineno, row in numbered_jsonl(path, required=ANSWER_FIELDS):
        where = f"{path}:{lineno}"
        if not isinstance(row["id"], str) or not row["id"].strip():
            raise SkinternError(f"{where}: field 'id' must be a non-empty string, got {row['id']!r}")
        if not isinstance(row["output"], str):
            raise SkinternError(f"{where}: field 'output' must be a string, got {row['output']!r}")
        if row["id"] in answers:
            raise SkinternError(f"{where}: duplicate id {row['id']!r}")
        answers[row["id"]] = row["output"]
    return answers


class Teacher(Method):
    name = "teacher"
    Settings = TeacherSettings
    settings: TeacherSettings
    trains = False
    student_answers = False

    @classmethod
    def check(cls, settings: TeacherSettings, data: RunData, teacher: TeacherConfig) -> None:
        """An answers file must answer every test item (a missing one would count as wrong); without one, the
        endpoint must be configured."""
        if settings.answers is None:
            teacher.endpoint()
            return
        answers = load_answers(settings.answers)
        missing = [ex.id for tests in data.tests.values() for ex in tests if ex.id not in answers]
        if missing:
            total = sum(map(len, data.tests.values()))
            raise SkinternError(f"{settings.answers}: no teacher answer for {len(missing)} of {total} test items "
                                f"(field 'id'; first missing: {missing[0]})")

    def fit(self) -> Fitted:
        return Fitted(self.ctx.student.model, None)

    def prompt(self, ex: Example) -> str:
        """The user message the endpoint gets: zero-shot CoT, as the untrained student's plain prompt."""
        return f"{task_head(self.ctx.data.description(ex))}Q: {ex.question.strip()}\n{answer_instruction(ex.kind)}\n{COT_TRIGGER}"

    def infer(self, examples: Sequence[Example], generate: Generator) -> list[list[Generation]]:
        """The teacher's reply per example, from the file or the endpoint; the student's `generate` is not used."""
        if self.settings.answers is not None:
            texts = [self.file_answers[ex.id] for ex in examples]
        else:
            texts = asyncio.run(self._ask([self.prompt(ex) for ex in examples]))
        return [[Generation(text, 0, 0)] for text in texts]

    @cached_property
    def file_answers(self) -> dict[str, str]:
        return load_answers(self.settings.answers)

    async def _ask(self, prompts: list[str]) -> list[str]:
        cache = ResponseCache(self.ctx.teacher.cache_path)
        client = TeacherClient(self.ctx.teacher, cache)
        try:
            return await asyncio.gather(*(client.complete([{"role": "user", "content": p}]) for p in prompts))
        finally:
            await client.aclose()
            cache.close()

    def result_extras(self) -> dict[str, Any]:
        """Where the answers came from."""
        if self.settings.answers is not None:
            return {"answers": self.settings.answers}
        base_url, model, _ = self.ctx.teacher.endpoint()
        return {"teacher": model, "base_url": base_url}
