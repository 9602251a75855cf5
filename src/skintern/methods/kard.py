"""KARD-style knowledge-augmented distillation (Kang et al. 2023): passages retrieved for the question are put in
the prompt at training AND at inference, so every query pays for them in prompt tokens.

The paper retrieves 3 Wikipedia passages with BM25. Wikipedia is not available offline, so the corpus here is the
teacher knowledge of the training items, or a passage file the user gives (`passages`). The dense retriever
instead finds the training items whose questions are most similar and takes their knowledge."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from skintern.data import Example
from skintern.methods.base import Method, MethodSettings, TrainPlan
from skintern.methods.rundata import RunData
from skintern.prompts import augmented_prompt
from skintern.retrieval import BM25Retriever, ExampleRetriever, Passage, load_passages
from skintern.schema import SettingError, check_choice, check_range
from skintern.teacher.config import TeacherConfig
from skintern.train import TrainConfig

RETRIEVERS = ("dense", "bm25")


@dataclass
class KARDSettings(MethodSettings):
    top_k: int = 2
    """Passages retrieved into every prompt (the paper: 3)."""
    retriever: str = "dense"
    """dense: the knowledge of the training items with the most similar questions (`retrieval.embedder`);
    bm25: BM25 over the passages, queried with the question (the paper's retriever)."""
    passages: str | None = None
    """bm25 only: a JSONL file with a "text" field per line to retrieve from; None: the training items' knowledge."""

    def __post_init__(self):
        check_range("top_k", self.top_k, 1)
        check_choice("retriever", self.retriever, RETRIEVERS)
        if self.passages is not None and self.retriever != "bm25":
            raise SettingError("passages", f"needs retriever: bm25 (got retriever: {self.retriever})")


class KARD(Method):
    name = "kard"
    Settings = KARDSettings
    settings: KARDSettings

    @classmethod
    def check(cls, settings: KARDSettings, data: RunData, teacher: TeacherConfig) -> None:
        if settings.passages:
            load_passages(settings.passages)

    @staticmethod
    def knowledge_pool(data: RunData) -> list[Example]:
        """The training items with teacher knowledge: the corpus retrieved from when no passage file is given."""
        return [ex for ex in data.train_pool if (ex.task, ex.index) in data.knowledge]

    @classmethod
    def retrieved_chars(cls, settings: KARDSettings, data: RunData) -> float:
        """What the retrieved passages add to a prompt, known before anything is built: top_k times the mean
        length of the passages retrieved from."""
        if settings.passages:
            texts = [p.text for p in load_passages(settings.passages)]
        else:
            texts = [data.knowledge.get(ex.task, ex.index).text() for ex in cls.knowledge_pool(data)]
        return settings.top_k * sum(map(len, texts)) / max(len(texts), 1)

    @classmethod
    def plan(cls, settings: KARDSettings, data: RunData, train: TrainConfig) -> TrainPlan:
        """Std-CoT's plan with the retrieved passages in every prompt."""
        return super().plan(settings, data, train).with_prompt_chars(cls.retrieved_chars(settings, data))

    @cached_property
    def retriever(self) -> ExampleRetriever | BM25Retriever:
        store, settings = self.ctx.data.knowledge, self.settings
        pool = self.knowledge_pool(self.ctx.data)
        if settings.retriever == "bm25":
            passages = (load_passages(settings.passages) if settings.passages else
                        [Passage(ex.id, store.get(ex.task, ex.index).text(), ex.question) for ex in pool])
            return BM25Retriever(passages)
        cfg = self.ctx.retrieval
        return ExampleRetriever(pool, embedder=cfg.embedder, model_path=cfg.embedder_path, same_task=False)

    def knowledge_for(self, ex: Example) -> str:
        hits = self.retriever.top_k(ex, self.settings.top_k)
        if isinstance(self.retriever, BM25Retriever):
            return "\n\n".join(p.text for p in hits)
        store = self.ctx.data.knowledge
        return "\n\n".join(store.get(h.task, h.index).text() for h in hits)

    def plain_prompt(self, ex: Example) -> str:
        return augmented_prompt(self.ctx.data.description(ex), ex.question, knowledge=self.knowledge_for(ex))
