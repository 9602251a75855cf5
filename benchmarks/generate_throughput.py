"""Generated tokens/s and accuracy of the evaluation generator on the same BBH prompts (the Std-CoT = SKIntern
inference prompt): HF at batch 1, HF at the eval batch, llama.cpp (`eval.backend: llamacpp`, when
llama-cpp-python is installed) and, when installed on a GPU, vLLM.

llama.cpp runs the GGUF given by --gguf; for the default student it is the Q4_1 file the HF weights were
converted from, so both run the same weights (llama.cpp computes in its quantized form). Pass an f16 GGUF
from `skintern export RUN --gguf f16` to time a trained student.

    python benchmarks/generate_throughput.py [--model smollm2-135m] [--n 24] [--batch 8] [--max-new-tokens 128]
                                             [--gguf FILE] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import time

from skintern import data as D
from skintern.generation import Generator, LlamaCppEvalConfig, resolve_backend
from skintern.packaged_gguf import smollm2_gguf
from skintern.prompts import cot_prompt
from skintern.student import load_student

TASKS = ["sports_understanding", "date_understanding", "boolean_expressions", "navigate"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n", type=int, default=24, help="prompts (round-robin over 4 BBH tasks)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--gguf", default=None, help="GGUF for llama.cpp (default: the packaged SmolLM2 Q4_1 file)")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: its own choice)")
    args = ap.parse_args()
    data_dir = D.resolve_data_dir(args.data_dir)
    examples = D.load_benchmark("bbh", data_dir, tasks=TASKS, limit_per_task=-(-args.n // len(TASKS)), split="test")[: args.n]
    prompts = [cot_prompt(D.task_description(data_dir, ex.task), ex.question) for ex in examples]
    student = load_student(args.model)
    runs = [("hf", 1), ("hf", args.batch)]
    gguf = args.gguf or (str(smollm2_gguf("--gguf")) if args.model == "smollm2-135m" else None)
    if importlib.util.find_spec("llama_cpp") and gguf:
        runs.append(("llamacpp", 1))
    else:
        print("llama.cpp not measured: needs `pip install llama-cpp-python` and a GGUF (--gguf)")
    if resolve_backend("auto") == "vllm":
        student.model.to("cuda")
        runs.append(("vllm", args.batch))
    print(f"{args.model}, {len(prompts)} BBH prompts, greedy, up to {args.max_new_tokens} new tokens")
    figures = {}
    for backend, batch in runs:
        generate = Generator(student.model, student.tokenizer, backend=backend, batch_size=batch,
                             max_new_tokens=args.max_new_tokens,
                             gguf=LlamaCppEvalConfig(gguf, n_threads=args.threads) if backend == "llamacpp" else None)
        generate(prompts[:1], max_new_tokens=8)  # warm-up: model load, vLLM engine start
        start = time.perf_counter()
        gens = generate(prompts)
        seconds = time.perf_counter() - start
        tokens = sum(g.generated_tokens for g in gens)
        correct = sum(D.is_correct(D.extract_answer(g.text, ex.kind, ex.options), ex) for g, ex in zip(gens, examples))
        figures[backend, batch] = tokens / seconds
        print(f"{backend:8} batch {batch:3}: {tokens / seconds:8.1f} generated tokens/s ({tokens} tokens, {seconds:.1f} s), "
              f"accuracy {correct}/{len(examples)}")
    if ("llamacpp", 1) in figures:
        print(f"llama.cpp / HF batch {args.batch}: {figures['llamacpp', 1] / figures['hf', args.batch]:.2f}x tokens/s")


if __name__ == "__main__":
    main()
