"""KARD-style knowledge-augmented distillation (Kang et al. 2023): the knowledge of the k most
similar training items, retrieved by question similarity, is put in the prompt at training AND at
inference, so every query pays for it in prompt tokens."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from skintern.data import Example
from skintern.methods.base import Method, MethodSettings
from skintern.prompts import augmented_prompt
from skintern.retrieval import ExampleRetriever
from skintern.schema import check_range


@dataclass
class KARDSettings(MethodSettings):
    top_k: int = 2
    """Knowledge records retrieved into every prompt."""

    def __post_init__(self):
        check_range("top_k", self.top_k, 1)


class KARD(Method):
    name = "kard"
    Settings = KARDSettings
    settings: KARDSettings

    @cached_property
    def retriever(self) -> ExampleRetriever:
        store = self.ctx.data.knowledge
        pool = [ex for ex in self.ctx.data.train_pool if (ex.task, ex.index) in store]
        cfg = self.ctx.retrieval
        return ExampleRetriever(pool, embedder=cfg.embedder, model_path=cfg.embedder_path, same_task=False)

    def knowledge_for(self, ex: Example) -> str:
        store = self.ctx.data.knowledge
        hits = self.retriever.top_k(ex, self.settings.top_k)
        return "\n\n".join(store.get(h.task, h.index).text() for h in hits)

    def prompt(self, ex: Example) -> str:
        return augmented_prompt(self.ctx.data.description(ex), ex.question, knowledge=self.knowledge_for(ex))
