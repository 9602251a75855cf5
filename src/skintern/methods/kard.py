"""KARD-style knowledge-augmented distillation (Kang et al. 2023): the knowledge of the k most
similar training items, retrieved by question similarity, is put in the prompt at training AND at
inference, so every query pays for it in prompt tokens."""

from __future__ import annotations

from functools import cached_property

from skintern.data import Example
from skintern.methods import Method
from skintern.prompts import augmented_prompt
from skintern.retrieval import ExampleRetriever
from skintern.train import SFTExample


class KARD(Method):
    name = "kard"

    @cached_property
    def retriever(self) -> ExampleRetriever:
        store = self.ctx.data.knowledge
        pool = [ex for ex in self.ctx.data.train_pool if (ex.task, ex.index) in store]
        cfg = self.ctx.cfg.knowledge
        return ExampleRetriever(pool, embedder=cfg.embedder, model_path=cfg.embedder_path, same_task=False)

    def knowledge_for(self, ex: Example) -> str:
        store = self.ctx.data.knowledge
        hits = self.retriever.top_k(ex, self.ctx.cfg.methods.kard_top_k)
        return "\n\n".join(store.get(h.task, h.index).text() for h in hits)

    def prompt(self, ex: Example) -> str:
        return augmented_prompt(self.ctx.data.description(ex), ex.question, knowledge=self.knowledge_for(ex))

    def train_examples(self) -> list[SFTExample]:
        return [self.cot_pair(ex) for ex in self.ctx.data.train]
