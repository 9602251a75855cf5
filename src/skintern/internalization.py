"""The internalization check (README, "Internalization check"): does the SKIntern student come to answer the
bare question as well as it answers with its stage's knowledge and examples?

Every stage's saved weights (`stage-<s>/final`, the student as it left that stage) are scored on the held-out
dev items (`RunData.dev`) twice, by greedy generation under the run's eval caps: with the stage's own prompt,
built for the dev items exactly as for training items, and with the bare question (the inference prompt). The
gap between the two, with its paired CI, is what the student still needs the prompt for; a schedule that
internalizes closes it while the bare-question accuracy rises. The Std-CoT student, when the run trained one,
is scored on the same items with the bare question as the reference.

Predictions are saved per stage and prompt under `<run>/internalization/`, keyed on the weights, the prompts and
the settings, so a killed check resumes and a rerun only reads them."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from skintern.config import RunConfig
from skintern.errors import SkinternError
from skintern.evaluate import evaluate
from skintern.files import fingerprint, read_jsonl
from skintern.methods import SKIntern
from skintern.results import Internalization, InternalizationStage
from skintern.stats import paired_difference
from skintern.train import load_trained_weights, with_lora


def check_internalization(method: SKIntern, cfg: RunConfig, settings: dict, reference: tuple[str, Path] | None = None
                          ) -> Internalization:
    """The check of the SKIntern run in `method.ctx.run_dir`, whose student must still be untrained (it scores the
    dev items' knowledge compression, as it did the training items'). `settings`: what the predictions depend on
    besides weights and prompts (`run.prediction_settings`); `reference`: (method, its weights folder)."""
    started = time.perf_counter()
    dev, run_dir = method.ctx.data.dev, method.ctx.run_dir
    if not dev:
        raise SkinternError("internalization: no dev items (set internalization.enabled: true before training)")
    stage_prompts = method.stage_prompts(dev)  # before any trained weights are loaded into the scorer
    bare = [method.prompt(ex) for ex in dev]
    student = method.ctx.student
    model = with_lora(student.model, cfg.train)
    generate = method.ctx.caps.generator(cfg.eval, model, student.tokenizer, student.prompt_format.stop_strings)

    def load(weights: Path) -> str:
        """Put `weights` into the model; returns their fingerprint, which keys the predictions made with them."""
        if not weights.is_dir():
            raise SkinternError(f"{weights}: trained weights not found (finish the run first; a compare over several "
                                "seeds has a run folder per seed, seed-<s>/)")
        load_trained_weights(model, weights)
        return fingerprint(weights)

    def outcomes(made_with: str, name: str, prompts: list[str]) -> dict[tuple[str, int], bool]:
        by_id = dict(zip((ex.id for ex in dev), prompts))
        key = {"weights": made_with, "prompts": hashlib.sha256(json.dumps(prompts).encode()).hexdigest()[:16],
               "settings": settings}
        result = evaluate(lambda batch: [[g] for g in generate([by_id[ex.id] for ex in batch])], dev,
                          run_dir / "internalization" / f"{name}.jsonl", batch_size=cfg.eval.batch_size, key=key)
        return {(r["id"], 0): bool(r["correct"]) for r in read_jsonl(result.predictions_path) if r["id"] in by_id}

    stages = []
    for stage in method.schedule.stages:
        made_with = load(SKIntern.stage_dir(run_dir, stage) / "final")
        with_bare = outcomes(made_with, f"stage-{stage.stage}-bare", bare)
        is_bare = stage_prompts[stage.stage] == bare
        with_prompt = with_bare if is_bare else outcomes(made_with, f"stage-{stage.stage}-prompt", stage_prompts[stage.stage])
        diff = paired_difference(with_bare, with_prompt, seed=cfg.seed)
        stages.append(InternalizationStage(
            stage=stage.stage, knowledge_keep_rate=stage.knowledge_keep_rate, num_examples=stage.num_examples,
            stage_prompt_accuracy=diff.method_accuracy, bare_accuracy=diff.reference_accuracy,
            gap=diff.method_accuracy - diff.reference_accuracy, gap_ci_low=diff.ci_low, gap_ci_high=diff.ci_high,
            bare_stage=is_bare))
    section = Internalization(dev_ids=[ex.id for ex in dev], stages=stages)
    if reference is not None:
        name, weights = reference
        correct = outcomes(load(weights), f"{name}-bare", bare)
        section.reference_method, section.reference_accuracy = name, sum(correct.values()) / len(correct)
    section.seconds = time.perf_counter() - started
    return section
