"""Generated tokens/s of the evaluation generator at batch 1 and at a larger batch, with the HF backend
and (when installed, on a GPU) vLLM, on a handful of BBH prompts (the Std-CoT = SKIntern inference prompt).

    python benchmarks/generate_throughput.py [--model smollm2-135m] [--n 8] [--batch 8] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import time

from skintern import data as D
from skintern.generation import Generator, resolve_backend
from skintern.prompts import cot_prompt
from skintern.student import load_student


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n", type=int, default=8, help="prompts (round-robin over 4 BBH tasks)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    data_dir = D.resolve_data_dir(args.data_dir)
    tasks = ["sports_understanding", "date_understanding", "boolean_expressions", "navigate"]
    examples = D.load_benchmark("bbh", data_dir, tasks=tasks, limit_per_task=-(-args.n // len(tasks)), split="test")[: args.n]
    prompts = [cot_prompt(D.task_description(data_dir, ex.task), ex.question) for ex in examples]
    student = load_student(args.model)
    backends = ["hf"] + (["vllm"] if resolve_backend("auto") == "vllm" else [])
    if "vllm" in backends:
        student.model.to("cuda")
    for backend in backends:
        Generator(student.model, student.tokenizer, backend=backend, max_new_tokens=8)(prompts[:1])  # warm-up (vLLM: engine start)
        for batch in (1, args.batch):
            generate = Generator(student.model, student.tokenizer, backend=backend, batch_size=batch,
                                 max_new_tokens=args.max_new_tokens)
            start = time.perf_counter()
            gens = generate(prompts)
            seconds = time.perf_counter() - start
            tokens = sum(g.generated_tokens for g in gens)
            print(f"{args.model} {backend:4} batch {batch:3}: {tokens / seconds:8.1f} generated tokens/s "
                  f"({tokens} tokens, {len(prompts)} prompts, {seconds:.1f} s)")


if __name__ == "__main__":
    main()
