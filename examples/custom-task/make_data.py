"""Write a small made-up task in the shape `skintern` reads from any user: shop arithmetic word problems with a
worked solution and SKIntern's two knowledge parts per row, plus an out-of-domain test set (time arithmetic).

    python examples/custom-task/make_data.py [--out examples/custom-task/data] [--seed 0]

Writes shop.jsonl (600 rows: question, answer, task, worked solution, learning summary, supplementary
knowledge, id) and time.jsonl (100 rows: question, answer). Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ITEMS = ["pencil", "notebook", "apple", "ticket", "sticker", "mug", "candle", "marble"]
SUMMARY = {
    "total": "1. Find the price of one item.\n2. Multiply it by how many are bought.",
    "change": "1. Find the total cost.\n2. Subtract it from the money paid.",
    "split": "1. Find the total cost.\n2. Divide it equally among the people.",
}
KNOWLEDGE = {
    "total": "1. Total cost = price of one item x number of items.",
    "change": "1. Change = money paid - total cost.\n2. Total cost = price x quantity.",
    "split": "1. Each person's share = total / number of people.",
}


def shop_row(rng: random.Random, i: int) -> dict:
    task, item = rng.choice(sorted(SUMMARY)), rng.choice(ITEMS)
    price, count = rng.randint(2, 9), rng.randint(2, 6)
    total = price * count
    if task == "total":
        question = f"One {item} costs {price} dollars. How many dollars do {count} {item}s cost?"
        answer, worked = total, f"One {item} costs {price} dollars, so {count} {item}s cost {count} * {price} = {total} dollars."
    elif task == "change":
        paid = (total // 10 + 1) * 10
        question = f"Sam buys {count} {item}s at {price} dollars each and pays with {paid} dollars. How much change does Sam get?"
        answer = paid - total
        worked = f"The {item}s cost {count} * {price} = {total} dollars. The change is {paid} - {total} = {answer} dollars."
    else:
        people = rng.choice([d for d in (2, 3, 4, 6) if total % d == 0] or [1])
        question = f"{people} friends buy {count} {item}s at {price} dollars each and share the cost equally. How much does each pay?"
        answer = total // people
        worked = f"The {item}s cost {count} * {price} = {total} dollars. Each of {people} pays {total} / {people} = {answer} dollars."
    return {"id": f"shop-{i}", "question": question, "answer": answer, "task": task,
            "solution": f"{worked} So the answer is {answer}.", "summary": SUMMARY[task], "facts": KNOWLEDGE[task]}


def time_row(rng: random.Random, i: int) -> dict:
    start, minutes = rng.randint(1, 10), rng.choice([30, 60, 90, 120, 150])
    return {"question": f"A film starts at {start} o'clock and lasts {minutes} minutes. How many minutes after "
                        f"{start} o'clock does it end?" if i % 2 else
                        f"A walk takes {minutes} minutes. How many half hours is that?",
            "answer": minutes if i % 2 else minutes // 30}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "data"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out, rng = Path(args.out), random.Random(args.seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("shop.jsonl", [shop_row(rng, i) for i in range(600)]),
                       ("time.jsonl", [time_row(rng, i) for i in range(100)])):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        print(f"wrote {out / name} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
