"""SKIntern (Liao et al., COLING 2025): progressive internalization of symbolic knowledge.

One training run walks the schedule's stages in order, each continuing from the previous
stage's weights. Stage s feeds the student its question plus the teacher's knowledge compressed
to keep-rate 1 - s/K and the top round(N - s*N/K) most similar training examples (question +
teacher rationale); the last stage is the bare question, exactly the inference prompt, so at
inference a SKIntern student costs what a Std-CoT student costs.

A kill in stage s resumes in stage s: finished stages are marked by `stage-<s>/done.json`, and
the unfinished one restarts from its newest checkpoint."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from skintern.data import Example
from skintern.errors import SkinternError
from skintern.knowledge import KnowledgeRecord, KnowledgeStore
from skintern.methods import Method
from skintern.prompts import augmented_prompt, worked_example
from skintern.schedule import Schedule, Stage, build_schedule
from skintern.train import SFTExample, TrainStats, pair_length


class SKIntern(Method):
    name = "skintern"

    @cached_property
    def schedule(self) -> Schedule:
        return build_schedule(self.ctx.cfg.schedule)

    @property
    def weights_dir(self) -> Path:
        return self.stage_dir(self.schedule.stages[-1])

    def stage_dir(self, stage: Stage) -> Path:
        return self.ctx.run_dir / "train" / self.name / f"stage-{stage.stage}"

    # -- data of every stage, built before any training (the compressor scores with the untrained student)
    def training_items(self) -> tuple[list[Example], KnowledgeStore]:
        """Items with teacher knowledge; the rest are left out, or generated when knowledge.missing = teacher."""
        rd, cfg = self.ctx.data, self.ctx.cfg
        if cfg.knowledge.missing not in ("skip", "teacher"):
            raise SkinternError(f"knowledge.missing: expected 'skip' or 'teacher', got {cfg.knowledge.missing!r}")
        store = rd.knowledge
        if not any(s.knowledge_keep_rate for s in self.schedule.stages):
            return list(rd.train), store  # knowledge ablated away: every item with a rationale can train
        covered, missing = store.split_covered(rd.train)
        if missing and cfg.knowledge.missing == "teacher":
            store = KnowledgeStore([*store, *self._teach_knowledge(missing)])
            covered, missing = store.split_covered(rd.train)
        if missing:
            print(f"skintern: {len(missing)} training items have no teacher knowledge and are left out "
                  f"({len(covered)} train); set knowledge.missing: teacher to generate it", flush=True)
        if not covered:
            raise SkinternError("skintern: no training item has teacher knowledge (data.knowledge or knowledge.missing: teacher)")
        return covered, store

    def _teach_knowledge(self, examples: list[Example]) -> list[KnowledgeRecord]:
        from skintern.teacher.generate import generate_knowledge

        out = self.ctx.run_dir / "teacher"
        generate_knowledge(examples, self.ctx.cfg.teacher, out)
        return KnowledgeStore.load(out / "knowledge.jsonl").records()

    def stage_examples(self) -> dict[int, list[SFTExample]]:
        """Training pairs of every stage; targets are identical across stages, only the input shrinks."""
        items, store = self.training_items()
        stages = self.schedule.stages
        n_max = max(s.num_examples for s in stages)
        neighbours = self._neighbours(items, n_max) if n_max else {ex.id: [] for ex in items}
        rates = sorted({s.knowledge_keep_rate for s in stages if s.knowledge_keep_rate})
        compressed = self._compressed(items, store, rates)
        rd = self.ctx.data
        out = {}
        for stage in stages:
            rows, trimmed = [], 0
            for ex in items:
                knowledge = compressed[stage.knowledge_keep_rate][ex.id] if stage.knowledge_keep_rate else None
                shots = [worked_example(n.question, rd.rationales[n.id], n.answer) for n in neighbours[ex.id][: stage.num_examples]]
                pair, kept = self._fitting_pair(ex, knowledge, shots)
                rows.append(pair)
                trimmed += kept < len(shots)
            if trimmed:
                print(f"skintern: stage {stage.stage}: {trimmed} of {len(rows)} prompts over train.max_length="
                      f"{self.ctx.cfg.train.max_length} tokens keep fewer examples", flush=True)
            out[stage.stage] = rows
        return out

    def _fitting_pair(self, ex: Example, knowledge: str | None, shots: list[str]) -> tuple[SFTExample, int]:
        """The item's pair, without its least similar examples while it is over train.max_length, and how many
        examples it kept. Dropping the whole item instead would train early stages on fewer, shorter items."""
        description, max_length = self.ctx.data.description(ex), self.ctx.cfg.train.max_length
        while True:
            pair = self.cot_pair(ex, augmented_prompt(description, ex.question, knowledge, shots))
            if not shots or pair_length(self.ctx.student.tokenizer, pair) <= max_length:
                return pair, len(shots)
            shots = shots[:-1]

    def _neighbours(self, items: list[Example], k: int) -> dict[str, list[Example]]:
        """The k most similar training items (with a teacher rationale) of each item, never itself."""
        from skintern.retrieval import ExampleRetriever

        cfg = self.ctx.cfg.knowledge
        retriever = ExampleRetriever(self.ctx.data.train, embedder=cfg.embedder, model_path=cfg.embedder_path, same_task=True)
        return {ex.id: hits for ex, hits in zip(items, retriever.top_k_many(items, k))}

    def _compressed(self, items: list[Example], store: KnowledgeStore, rates: list[float]) -> dict[float, dict[str, str]]:
        if not rates:
            return {}
        compressor = self._compressor()
        texts = [store.get(ex.task, ex.index).text() for ex in items]
        return {rate: dict(zip((ex.id for ex in items), compressor.compress_many(texts, rate))) for rate in rates}

    def _compressor(self):
        from skintern.compression import build_compressor

        cfg = self.ctx.cfg.knowledge
        cache = self.ctx.run_dir.parent / ".compression-cache.sqlite"
        if cfg.compressor == "llmlingua2":
            return build_compressor("llmlingua2", model_path=cfg.llmlingua2_model, cache_path=cache)
        if cfg.scorer_model:
            from skintern.student import load_student

            scorer = load_student(cfg.scorer_model)
            return build_compressor(cfg.compressor, model=scorer.model, tokenizer=scorer.tokenizer, cache_path=cache)
        student = self.ctx.student
        return build_compressor(cfg.compressor, model=student.model, tokenizer=student.tokenizer, cache_path=cache)

    # -- training
    def fit(self) -> TrainStats:
        per_stage = self.stage_examples()
        print(self.schedule.table(), flush=True)
        model, all_stats = self.ctx.student.model, []
        for stage in self.schedule.stages:
            print(f"skintern: stage {stage.stage}/{self.schedule.K} ({len(per_stage[stage.stage])} examples)", flush=True)
            self.ctx.student.model = model
            model, stats = self._finetune(per_stage[stage.stage], self.stage_dir(stage), epochs=stage.epochs)
            all_stats.append(stats)
        self.ctx.student.model = model
        return TrainStats(
            examples=sum(s.examples for s in all_stats),
            dropped_too_long=sum(s.dropped_too_long for s in all_stats),
            steps=sum(s.steps for s in all_stats),
            train_loss=all_stats[-1].train_loss,
            seconds=sum(s.seconds for s in all_stats),
            losses=[loss for s in all_stats for loss in s.losses],
            stages=[s.to_dict() for s in all_stats],
        )
