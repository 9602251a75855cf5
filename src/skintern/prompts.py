"""Prompt and target formats shared by training and inference.

Every method's *inference* prompt is built here, so the claim "a SKIntern student sees only
the question at inference" is checkable: its final-stage training prompt and its inference
prompt both come from `cot_prompt`."""

from __future__ import annotations

import re
from collections.abc import Sequence

from skintern.errors import SkinternError

ANSWER_SENTENCE = "Therefore, the answer is {}."
COT_TRIGGER = "A: Let's think step by step."
STOP_STRINGS = ("\nQ:",)  # the student continues with the next question when it is done

def task_head(description: str) -> str:
    """The task description as the first paragraph of a prompt (nothing when there is none)."""
    return f"{description.strip()}\n\n" if description.strip() else ""


def cot_prompt(description: str, question: str) -> str:
    """Std-CoT prompt: task description + question. Also the final SKIntern stage and every SKIntern inference."""
    return augmented_prompt(description, question)


def rationale_body(rationale: str) -> str:
    """The teacher's reasoning without its own closing 'So the answer is X.' sentence."""
    lines = rationale.strip()
    cut = None
    for match in re.finditer(r"(?:So|Therefore,?) the answer is", lines, re.IGNORECASE):
        cut = match.start()
    return (lines[:cut] if cut is not None else lines).strip()


def cot_target(rationale: str, answer: str) -> str:
    """Training target: the rationale, ending in the gold answer in one fixed sentence."""
    body = rationale_body(rationale)
    sentence = ANSWER_SENTENCE.format(answer)
    return f" {body} {sentence}" if body else f" {sentence}"


def worked_example(question: str, rationale: str, answer: str) -> str:
    """A solved example as it appears in a few-shot prompt."""
    return f"Q: {question.strip()}\n{COT_TRIGGER}{cot_target(rationale, answer)}"


def augmented_prompt(
    description: str, question: str, knowledge: str | None = None, examples: Sequence[str] = ()
) -> str:
    """Question plus what SKIntern (or KARD) adds to the input: knowledge, then worked examples, in the paper's
    order (the student reads compressed knowledge, examples, question).

    With neither, this is exactly `cot_prompt`."""
    know = f"Knowledge:\n{knowledge.strip()}\n\n" if knowledge and knowledge.strip() else ""
    shots = "".join(f"{ex.strip()}\n\n" for ex in examples)
    return f"{task_head(description)}{know}{shots}Q: {question.strip()}\n{COT_TRIGGER}"


CHAT_COT_START = "Let's think step by step."
"""How an untrained student's reply starts under a chat template: it continues the reasoning, as after COT_TRIGGER."""
DIRECT_START = "The answer is"
"""How an answer-only reply starts (no rationale): fine-tuning's prompts and the answer-only zero-shot student."""
ANSWER_HINTS = {"choice": "the letter of the correct option, like (A)", "yes_no": "Yes or No",
                "true_false": "True or False", "validity": "valid or invalid", "number": "a number"}
"""Answer kind -> what X is in `answer_instruction` (free text: "the final answer")."""


def answer_instruction(kind: str, direct: bool = False) -> str:
    """Asks an untrained student for the closing sentence trained students learn and the scorer reads; `direct`:
    for that answer at once, without reasoning (the answer-only zero-shot baseline)."""
    hint = ANSWER_HINTS.get(kind, "the final answer")
    if direct:
        return f'Reply only with the sentence "{DIRECT_START} X." where X is {hint}.'
    return f'End with the sentence "{ANSWER_SENTENCE.format("X")}" where X is {hint}.'


def untrained_prompt(tokenizer, context: str, question: str, kind: str, direct: bool = False) -> str:
    """Prompt of an untrained student: `context` (task head or few-shot examples) + question + answer instruction.

    An Instruct model is prompted as it was tuned, in its tokenizer's chat template: all of this is the user turn
    and the reply starts with CHAT_COT_START (`direct`: with DIRECT_START). A tokenizer without a template gets the
    plain Q:/A: format."""
    user = f"{context}Q: {question.strip()}\n{answer_instruction(kind, direct)}"
    if not tokenizer.chat_template:
        return f"{user}\nA: {DIRECT_START}" if direct else f"{user}\n{COT_TRIGGER}"
    text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    return without_second_bos(tokenizer, text) + (DIRECT_START if direct else CHAT_COT_START)


def without_second_bos(tokenizer, text: str) -> str:
    """A rendered template that writes the BOS token itself, minus that token where the tokenizer adds one too
    (Llama, Gemma); SmolLM2's template starts with <|im_start|>, its BOS token, but its tokenizer adds none."""
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer(text).input_ids[:2] == [tokenizer.bos_token_id] * 2:
        return text[len(bos):]
    return text


PROMPT_FORMATS = ("plain", "chat")
"""student.prompt_format: plain Q:/A: text, or the student's chat template."""
_REPLY = "SKINTERN-REPLY"  # stands for an assistant reply, to find what the template writes after one


def chat_end_of_turn(tokenizer) -> str:
    """What the chat template writes after an assistant reply (e.g. "<|im_end|>"), less trailing whitespace: the end
    of a chat-format training target, so the student learns to stop there."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Q"}, {"role": "assistant", "content": _REPLY}],
                                         tokenize=False)
    end = text[text.rfind(_REPLY) + len(_REPLY):].rstrip() if _REPLY in text else ""
    if not end:
        raise SkinternError("student.prompt_format: chat: the student's chat template writes no end of an assistant turn")
    return end


class PromptFormat:
    """How a trained student sees its prompts and targets (student.prompt_format), the same at training, evaluation,
    export and `ask`. plain: the texts as built here. chat: the plain prompt less its last line is the user turn in
    the tokenizer's chat template; that last line (the reply cue, e.g. "A: Let's think step by step.") less "A:"
    starts the assistant's reply; targets end with the template's end of turn, where evaluation stops too."""

    def __init__(self, kind: str = "plain", tokenizer=None):
        if kind not in PROMPT_FORMATS:
            raise SkinternError(f"student.prompt_format: expected one of {', '.join(PROMPT_FORMATS)}, got {kind!r}")
        if kind == "chat" and not getattr(tokenizer, "chat_template", None):
            raise SkinternError("student.prompt_format: chat needs a student tokenizer with a chat template "
                                "(this one has none; use plain)")
        self.kind, self.tokenizer = kind, tokenizer
        self.end_of_turn = chat_end_of_turn(tokenizer) if kind == "chat" else ""

    def prompt(self, plain: str) -> str:
        """`plain` (a prompt ending in its reply cue line) in this format."""
        if self.kind == "plain":
            return plain
        user, _, cue = plain.rpartition("\n")
        tok = self.tokenizer
        text = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
        return without_second_bos(tok, text) + cue.removeprefix("A:").strip()

    def target(self, target: str) -> str:
        """A training target as the end of the reply."""
        return target + self.end_of_turn

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Where generation stops: STOP_STRINGS, and under chat the end of the assistant's turn."""
        return STOP_STRINGS + ((self.end_of_turn,) if self.end_of_turn else ())


def cut_at_stop(text: str, stops: Sequence[str] = STOP_STRINGS) -> str:
    """Drop everything from the first stop string on (the model's next, invented question)."""
    ends = [text.find(s) for s in stops if s in text]
    return text[: min(ends)] if ends else text

