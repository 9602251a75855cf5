"""SKIntern (Liao et al., COLING 2025): progressive internalization of symbolic knowledge.

One training run walks the schedule's T steps ("stages" in the code and folders) in order, each
continuing from the previous stage's weights. Stage t feeds the student its question plus the
teacher's knowledge (the parts the schedule names) compressed to keep-rate S_t and floor(K * S_t)
of its K most similar training examples (question + teacher rationale); the last stage is the bare
question, exactly the inference prompt, so at inference a SKIntern student costs what a Std-CoT
student costs.

A kill in stage s resumes in stage s: finished stages are marked by `stage-<s>/done.json`, and
the unfinished one restarts from its newest checkpoint."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from skintern.compression import COMPRESSOR_KINDS, build_compressor, keep_rate
from skintern.data import Example
from skintern.errors import SkinternError
from skintern.knowledge import KnowledgeRecord, KnowledgeStore
from skintern.methods.base import Context, Fitted, Method, MethodSettings, TrainPlan
from skintern.methods.rundata import RunData
from skintern.prompts import augmented_prompt, worked_example
from skintern.retrieval import ExampleRetriever
from skintern.schedule import Schedule, ScheduleConfig, Stage, build_schedule, pick_examples
from skintern.schema import SettingError, check_choice
from skintern.student import load_student
from skintern.teacher.generate import generate_knowledge
from skintern.train import ContinuedOptimizer, SFTExample, TrainConfig, TrainStats, optimizer_steps, pair_length


@dataclass
class SKInternSettings(MethodSettings):
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Steps, keep-rates, examples and knowledge parts of the progressive internalization."""
    missing_knowledge: str = "skip"
    """Items without teacher knowledge: skip (left out of SKIntern training) | teacher (generate it)."""
    compressor: str = "self-info"
    """self-info (LLMLingua-style, scored by a local causal LM) | llmlingua2."""
    scorer_model: str | None = None
    """Causal LM for self-info scores; default: the student itself, before training."""
    llmlingua2_model: str | None = None
    """Local token-classification model folder for llmlingua2."""
    restart_optimizer: bool = True
    """True: each stage starts a fresh AdamW and LR schedule (warmup + decay) over its own steps. False: one AdamW
    and one LR schedule over all stages' steps together, so the learning rate decays once over the whole schedule
    and the moment estimates carry from stage to stage."""

    def __post_init__(self):
        check_choice("missing_knowledge", self.missing_knowledge, ("skip", "teacher"))
        check_choice("compressor", self.compressor, COMPRESSOR_KINDS)
        if self.compressor == "llmlingua2" and not self.llmlingua2_model:
            raise SettingError("llmlingua2_model", "required with compressor: llmlingua2 (a local LLMLingua-2 model folder)")


class SKIntern(Method):
    name = "skintern"
    Settings = SKInternSettings
    settings: SKInternSettings

    def __init__(self, settings: SKInternSettings, ctx: Context):
        super().__init__(settings, ctx)
        self.achieved_keep_rates: dict[float, float] = {}  # requested rate -> mean achieved, once the pairs are built
        self.achieved_num_examples: dict[int, float] = {}  # stage -> mean examples its prompts kept under max_length

    @cached_property
    def schedule(self) -> Schedule:
        return build_schedule(self.settings.schedule)

    @classmethod
    def weights_dir(cls, run_dir: Path, settings: SKInternSettings) -> Path:
        return cls.stage_dir(run_dir, build_schedule(settings.schedule).stages[-1])

    @classmethod
    def stage_dir(cls, run_dir: Path, stage: Stage) -> Path:
        return run_dir / "train" / cls.name / f"stage-{stage.stage}"

    @classmethod
    def plan(cls, settings: SKInternSettings, data: RunData, train: TrainConfig) -> TrainPlan:
        """Per stage: the item's pair plus its knowledge at the stage's keep-rate and its examples (each about
        an average item's question and rationale)."""
        schedule = build_schedule(settings.schedule)
        uses_knowledge = any(s.knowledge_keep_rate for s in schedule.stages)
        items = data.train if not uses_knowledge or settings.missing_knowledge == "teacher" else \
            data.knowledge.split_covered(data.train)[0]
        pair = sum(len(ex.question) + len(data.rationales[ex.id]) for ex in items)
        knowledge = sum(len(data.knowledge.get(ex.task, ex.index).text(schedule.knowledge_parts))
                        for ex in items if (ex.task, ex.index) in data.knowledge)
        shot = pair / max(len(items), 1)
        chars = sum(s.epochs * (pair + s.knowledge_keep_rate * knowledge + s.num_examples * shot * len(items))
                    for s in schedule.stages)
        return TrainPlan(len(items), len(items) * len(schedule.stages), sum(s.epochs for s in schedule.stages),
                         int(chars / 4), len(schedule.stages) * train.max_steps if train.max_steps > 0 else None)

    @classmethod
    def describe(cls, settings: SKInternSettings) -> str:
        return build_schedule(settings.schedule).table()

    # -- data of every stage, built before any training (the compressor scores with the untrained student)
    def training_items(self) -> tuple[list[Example], KnowledgeStore]:
        """Items with teacher knowledge; the rest are left out, or generated when knowledge.missing = teacher."""
        rd, missing_policy = self.ctx.data, self.settings.missing_knowledge
        store = rd.knowledge
        if not any(s.knowledge_keep_rate for s in self.schedule.stages):
            return list(rd.train), store  # knowledge ablated away: every item with a rationale can train
        covered, missing = store.split_covered(rd.train)
        if missing and missing_policy == "teacher":
            store = KnowledgeStore([*store, *self._teach_knowledge(missing)])
            covered, missing = store.split_covered(rd.train)
        if missing:
            print(f"skintern: {len(missing)} training items have no teacher knowledge and are left out "
                  f"({len(covered)} train); set methods.skintern.missing_knowledge: teacher to generate it", flush=True)
        if not covered:
            raise SkinternError("skintern: no training item has teacher knowledge "
                                "(data.knowledge or methods.skintern.missing_knowledge: teacher)")
        return covered, store

    def _teach_knowledge(self, examples: list[Example]) -> list[KnowledgeRecord]:
        out = self.ctx.run_dir / "teacher"
        generate_knowledge(examples, self.ctx.teacher, out, self.ctx.data.rationales)  # from each item's training rationale
        return KnowledgeStore.load(out / "knowledge.jsonl").records()

    def stage_pairs(self) -> dict[int, list[SFTExample]]:
        """Training pairs of every stage; targets are identical across stages, only the input shrinks."""
        items, store = self.training_items()
        return self.pairs_by_stage(items, store)

    def stage_prompts(self, items: list[Example]) -> dict[int, list[str]]:
        """Each item's prompt at each stage, built exactly as a training item's (same compression, examples
        retrieved from the training items), for items with knowledge that do not train (the internalization
        check's dev set). Call it before training: the default scorer is the untrained student."""
        pairs = self.pairs_by_stage(items, self.ctx.data.knowledge, record_achieved=False)
        return {stage: [pair.prompt for pair in rows] for stage, rows in pairs.items()}

    def pairs_by_stage(self, items: list[Example], store: KnowledgeStore,
                       record_achieved: bool = True) -> dict[int, list[SFTExample]]:
        """The pairs of `items` at every stage; `record_achieved`: keep the keep-rates and example counts the
        stages achieved (after compression and the max_length trim) for the results."""
        stages = self.schedule.stages
        top_k = self.schedule.K if any(s.num_examples for s in stages) else 0
        neighbours = self._neighbours(items, top_k) if top_k else {ex.id: [] for ex in items}
        rates = sorted({s.knowledge_keep_rate for s in stages if s.knowledge_keep_rate})
        compressed = self._compressed(items, store, rates, record_achieved)
        out = {}
        for stage in stages:
            rows, kept, trimmed = [], [], 0
            for ex in items:
                knowledge = compressed[stage.knowledge_keep_rate][ex.id] if stage.knowledge_keep_rate else None
                pair, shots, dropped = self._fitting_pair(ex, stage, knowledge, neighbours[ex.id])
                rows.append(pair)
                kept.append(shots)
                trimmed += dropped > 0
            if trimmed:
                print(f"skintern: stage {stage.stage}: {trimmed} of {len(rows)} prompts over train.max_length="
                      f"{self.ctx.train.max_length} tokens keep fewer examples", flush=True)
            if record_achieved:
                self.achieved_num_examples[stage.stage] = statistics.fmean(kept) if kept else 0.0
            out[stage.stage] = rows
        return out

    def stage_examples(self, ex: Example, stage: Stage, neighbours: Sequence[Example]) -> list[Example]:
        """The worked examples of `ex` at `stage`: num_examples of its top-K `neighbours` (most similar first),
        the most similar ones or a seeded draw (schedule.examples_pick), in similarity order."""
        schedule = self.schedule
        return pick_examples(neighbours[: schedule.K], stage.num_examples, schedule.examples_pick, self.ctx.seed,
                             stage.stage, ex.id)

    def stage_prompt(self, ex: Example, stage: Stage, knowledge: str | None, neighbours: Sequence[Example],
                     drop: int = 0) -> str:
        """The input of `ex` at `stage`: its examples drawn from `neighbours` (less the `drop` least similar of
        them), `knowledge` (the item's knowledge text already compressed to the stage's keep-rate; ignored at
        keep-rate 0) and the question, in the prompt format. The final stage's is `prompt(ex)`, the inference prompt."""
        rd = self.ctx.data
        shots = self.stage_examples(ex, stage, neighbours)
        shots = shots[: len(shots) - drop]
        return self.prompt_format.prompt(augmented_prompt(
            rd.description(ex), ex.question, knowledge if stage.knowledge_keep_rate else None,
            [worked_example(n.question, rd.rationales[n.id], n.answer) for n in shots]))

    def _fitting_pair(self, ex: Example, stage: Stage, knowledge: str | None,
                      neighbours: Sequence[Example]) -> tuple[SFTExample, int, int]:
        """The item's pair, without its least similar examples while it is over train.max_length, how many
        examples it kept and how many it dropped. Dropping the whole item instead would train early stages on
        fewer, shorter items."""
        shots = len(self.stage_examples(ex, stage, neighbours))
        for drop in range(shots + 1):
            pair = self.cot_pair(ex, self.stage_prompt(ex, stage, knowledge, neighbours, drop))
            if drop == shots or pair_length(self.ctx.student.tokenizer, pair) <= self.ctx.train.max_length:
                return pair, shots - drop, drop

    def _neighbours(self, items: list[Example], k: int) -> dict[str, list[Example]]:
        """The k most similar training items (with a teacher rationale) of each item, never itself."""
        cfg = self.ctx.retrieval
        retriever = ExampleRetriever(self.ctx.data.train, embedder=cfg.embedder, model_path=cfg.embedder_path, same_task=True)
        return {ex.id: hits for ex, hits in zip(items, retriever.top_k_many(items, k))}

    def _compressed(self, items: list[Example], store: KnowledgeStore, rates: list[float],
                    record_keep_rates: bool = True) -> dict[float, dict[str, str]]:
        if not rates:
            return {}
        compressor = self._compressor()
        texts = [store.get(ex.task, ex.index).text(self.schedule.knowledge_parts) for ex in items]
        out = {rate: dict(zip((ex.id for ex in items), compressor.compress_many(texts, rate))) for rate in rates}
        if not record_keep_rates:
            return out
        tokenizer = self.ctx.student.tokenizer
        self.achieved_keep_rates = {rate: statistics.fmean(keep_rate(t, c, tokenizer) for t, c in zip(texts, out[rate].values()))
                                    for rate in rates}
        return out

    def _compressor(self):
        cfg = self.settings
        cache = self.ctx.run_dir.parent / ".compression-cache.sqlite"
        if cfg.compressor == "llmlingua2":
            return build_compressor("llmlingua2", model_path=cfg.llmlingua2_model, cache_path=cache)
        scorer = load_student(cfg.scorer_model) if cfg.scorer_model else self.ctx.student
        return build_compressor(cfg.compressor, model=scorer.model, tokenizer=scorer.tokenizer, cache_path=cache)

    # -- training
    def fit(self) -> Fitted:
        per_stage = self.stage_pairs()
        print(self.schedule.table(), flush=True)
        optimizers = None if self.settings.restart_optimizer else self._continued_optimizer(per_stage)
        model, all_stats = self.ctx.student.model, []
        for stage in self.schedule.stages:
            print(f"skintern: stage {stage.stage}/{self.schedule.T - 1} ({len(per_stage[stage.stage])} examples)", flush=True)
            model, stats = self.finetune(per_stage[stage.stage], self.stage_dir(self.ctx.run_dir, stage), model=model,
                                         epochs=stage.epochs, optimizers=optimizers)
            all_stats.append(stats)
        return Fitted(model, TrainStats(
            examples=sum(s.examples for s in all_stats),
            dropped_too_long=sum(s.dropped_too_long for s in all_stats),
            steps=sum(s.steps for s in all_stats),
            train_loss=all_stats[-1].train_loss,
            seconds=sum(s.seconds for s in all_stats),
            losses=[loss for s in all_stats for loss in s.losses],
            stages=[s.to_dict() for s in all_stats],
        ))

    def _continued_optimizer(self, per_stage: dict[int, list[SFTExample]]) -> ContinuedOptimizer:
        """One optimizer for every stage, its schedule over the optimizer steps of all stages together."""
        tokenizer, train = self.ctx.student.tokenizer, self.ctx.train
        return ContinuedOptimizer(sum(optimizer_steps(tokenizer, per_stage[s.stage], train, s.epochs)
                                      for s in self.schedule.stages))

    def result_extras(self) -> dict[str, Any]:
        """The schedule, each stage with the mean keep-rate its compressed knowledge actually has (in student
        tokens) and the mean number of examples its prompts kept under train.max_length, next to the requested
        ones, and whether the optimizer restarted at each stage."""
        schedule = self.schedule.to_dict()
        for stage in schedule["stages"]:
            stage["achieved_keep_rate"] = self.achieved_keep_rates.get(stage["knowledge_keep_rate"], 0.0)
            stage["achieved_num_examples"] = self.achieved_num_examples.get(stage["stage"], 0.0)
        return {"schedule": schedule, "restart_optimizer": self.settings.restart_optimizer}
