"""Rollout benchmark: the ``hf`` rollout server, serial vs batched, on SmolLM2-135M with RAMP prompts.

Measured in one run, in one process (the server object is driven directly, without Ray):

* the pre-issue-14 path: one request at a time, each a batch-1 ``model.generate`` (reproduced here
  as ``LegacySerialServer``, the code the server had before);
* the new server with ``max_batch_size=1`` (its serial setting);
* the new server batched, with 1 / 4 / 16 / 32 concurrent clients (each client sends its next
  request when the previous one returns), rows joining a running batch between decode steps;
  at 16 clients also with ``join_running=False`` (a batch runs until its last row is done);
* two-turn episodes at 16 clients (turn 2 re-sends turn 1's context plus an observation, as the
  agent loop does), with the prefix cache off and on (prompt tokens actually prefilled shown);
* transformers' own continuous batching (``model.init_continuous_batching``: paged attention,
  per-request budgets, log-probs) at 1 / 16 / 32 clients, on the same weights and prompts as our
  engine (issue 23: the faster one that meets the log-prob bound stays);

For each: generated tokens/s (all requests' tokens / wall time), the same per CPU-second of this
process (steadier on a shared machine; the 1-minute load average is printed too), p50/p95 request
latency, and the max |log-prob| difference between the returned log-probs and a teacher-forced,
unbatched fp32 forward pass of the same tokens. Sampling is verl's default for training (T = 1, top-p 1).

Targets (issue 14): >= 5x generated tokens/s at 16 concurrent requests vs serial; log-prob gap
<= 1e-4. Usage::

    python benchmarks/rollout.py --quick --json out.json  # ~10 min on 2 cores
    python benchmarks/rollout.py                   # twice the requests per batched level
    python benchmarks/rollout.py --quick --engines-only   # ours vs transformers' CB only, ~5 min
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from masksearch import cache_root
from masksearch.backends.hf_rollout import HFRolloutServer, run_on_fresh_thread
from masksearch.engine.models import embedded_model_path

Out = dataclasses.make_dataclass("Out", ["token_ids", "log_probs", "stop_reason"])

TARGETS = {"speedup_at_16_min": 5.0, "log_prob_gap_max": 1e-4}
SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}


def ramp_prompts(tokenizer, count: int) -> list[list[int]]:
    """Chat-rendered RAMP training prompts (one-shot system prompt included), built once and cached."""
    import pandas as pd

    root = cache_root() / "benchmarks" / "rollout-ramp"
    parquet = root / "ramp" / "train.parquet"
    if not parquet.is_file():
        root.mkdir(parents=True, exist_ok=True)
        cli = [sys.executable, "-m", "masksearch.cli.main"]
        subprocess.run(
            [*cli, "corpus", "build", "--out", "corpus.jsonl", "--limit", "300"], cwd=root, check=True
        )
        subprocess.run(
            [
                *cli,
                "ramp",
                "build",
                "--corpus",
                "corpus.jsonl",
                "--out",
                "ramp",
                "--num-samples",
                "96",
                "--seed",
                "0",
                "--no-progress",
            ],
            cwd=root,
            check=True,
        )
    rows = pd.read_parquet(parquet)["prompt"].tolist()
    prompts = [
        tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for messages in rows
    ]
    return [prompts[i % len(prompts)] for i in range(count)]


class LegacySerialServer:
    """The server before issue 14: an asyncio lock around a batch-1 ``generate`` off the event loop,
    on the same weights loaded as it loaded them (stock SDPA attention, transformers' own cache).

    Each ``generate`` runs on a thread that ends with it (the old server used ``asyncio.to_thread``,
    whose live pool thread would keep an OpenMP team and throttle every level measured after this one;
    see ``run_on_fresh_thread`` in the hf rollout).
    """

    def __init__(self, server: HFRolloutServer):
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(
            server.model_path, dtype=torch.float32, attn_implementation="sdpa"
        ).eval()
        self.eos, self.pad = server.eos_token_ids, server.engine.pad_token_id
        self._lock = asyncio.Lock()

    async def generate(self, prompt_ids, sampling_params, request_id):
        async with self._lock:
            return await run_on_fresh_thread(
                lambda: self._generate(prompt_ids, sampling_params), name="legacy-generate"
            )

    @torch.no_grad()
    def _generate(self, prompt_ids, params):
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=params["max_tokens"],
            do_sample=True,
            temperature=params["temperature"],
            top_p=1.0,
            top_k=0,
            eos_token_id=self.eos,
            pad_token_id=self.pad,
            output_logits=True,
            return_dict_in_generate=True,
        )
        new = out.sequences[0, input_ids.shape[1] :]
        logits = torch.stack(out.logits, dim=1)[0].float()
        log_probs = (
            torch.log_softmax(logits / params["temperature"], dim=-1).gather(-1, new[:, None]).squeeze(-1)
        )
        return Out(new.tolist(), log_probs.tolist(), "completed")


class TransformersCB:
    """transformers' continuous batching behind the server's ``generate``: one manager (its own
    decoding thread, paged attention over a block cache, per-request budgets and EOS, log-probs of
    the sampled token), on the same weights loaded the same way as our server's."""

    def __init__(self, server: HFRolloutServer):
        from transformers import AutoModelForCausalLM, GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        model = AutoModelForCausalLM.from_pretrained(
            server.model_path, dtype=torch.float32, attn_implementation="sdpa"
        ).eval()
        # T = 1, no top-k/top-p: no logits processor, so its log-probs are log_softmax(raw logits)
        config = GenerationConfig(
            do_sample=True, temperature=1.0, top_p=1.0, top_k=0, eos_token_id=server.eos_token_ids
        )
        self.manager = model.init_continuous_batching(
            generation_config=config,
            continuous_batching_config=ContinuousBatchingConfig(return_logprobs=True),
        )
        self.manager.start()
        self.count = 0

    async def generate(self, prompt_ids, sampling_params, request_id):
        future = asyncio.get_running_loop().create_future()
        self.count += 1
        rid = f"{request_id}-{self.count}"

        def done(output):
            if output.is_finished() and not future.done():
                future.set_result(output)

        self.manager.register_result_handler(rid, done)
        self.manager.add_request(
            list(prompt_ids), request_id=rid, max_new_tokens=sampling_params["max_tokens"]
        )
        output = await future
        return Out(list(output.generated_tokens), list(output.logprobs), "completed")

    def close(self) -> None:
        self.manager.stop(block=True, timeout=30)


async def closed_loop(server, prompts, clients: int, max_tokens: int, observation: list[int] | None = None):
    """``clients`` concurrent clients work through ``prompts``; returns (wall_s, [(prompt, out, latency)]).

    With ``observation``, each prompt is a two-turn episode: turn 2 re-sends turn 1's prompt and
    response plus ``observation`` (an ``<information>`` block), as verl's agent loop does after a search.
    """
    queue = list(enumerate(prompts))
    results = []
    params = {**SAMPLING, "max_tokens": max_tokens}

    async def turn(prompt, request_id):
        started = time.perf_counter()
        out = await server.generate(prompt_ids=prompt, sampling_params=params, request_id=request_id)
        results.append((prompt, out, time.perf_counter() - started))
        return out

    async def client():
        while queue:
            index, prompt = queue.pop(0)
            out = await turn(prompt, str(index))
            if observation is not None:
                await turn(list(prompt) + list(out.token_ids) + observation, f"{index}b")

    started = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(clients)])
    return time.perf_counter() - started, results


@torch.no_grad()
def log_prob_gap(model, results, limit: int) -> float:
    """Max |returned log-prob - teacher-forced unbatched fp32 log-prob| over ``limit`` responses."""
    worst = 0.0
    for prompt, out, _ in results[:limit]:
        if not out.token_ids:
            continue
        ids = torch.tensor([prompt + list(out.token_ids)])
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float()
        expected = torch.log_softmax(logits / SAMPLING["temperature"], dim=-1)
        expected = expected.gather(-1, torch.tensor(out.token_ids)[:, None]).squeeze(-1)
        worst = max(worst, float((expected - torch.tensor(out.log_probs)).abs().max()))
    return worst


def _on_exiting_thread(fn, *args):
    """``fn(*args)`` on a thread that ends with it. Teacher forcing on the main thread would leave an
    OpenMP team there, the decoding thread's would be a second one, and with more libgomp threads than
    CPUs libgomp stops spin-waiting: every later level would decode ~1.5x slower (see
    ``run_on_fresh_thread``, which the server uses for its weight loads for the same reason)."""
    return asyncio.run(run_on_fresh_thread(lambda: fn(*args), name="teacher-forcing"))


def run_level(name, server, prompts, clients, max_tokens, gap_limit, model, observation=None):
    torch.manual_seed(0)
    cpu_before = time.process_time()
    decoder = server.engine.decoder if hasattr(server, "engine") else None
    prefilled_before = decoder.prefilled_tokens if decoder is not None else None
    wall, results = asyncio.run(closed_loop(server, prompts, clients, max_tokens, observation))
    cpu_s = time.process_time() - cpu_before
    tokens = sum(len(out.token_ids) for _, out, _ in results)
    latencies = sorted(latency for _, _, latency in results)
    row = {
        "setting": name,
        "clients": clients,
        "requests": len(results),
        "tokens": tokens,
        "wall_s": round(wall, 1),
        "tok_per_s": round(tokens / wall, 1),
        # tokens per CPU-second of this process: steadier than tok/s when other jobs share the cores
        "tok_per_cpu_s": round(tokens / cpu_s, 1),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "p50_s": round(statistics.median(latencies), 2),
        "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2),
        "log_prob_gap": _on_exiting_thread(log_prob_gap, model, results, gap_limit),
        "mean_rows_per_step": round(statistics.fmean(server.batch_sizes), 1)
        if getattr(server, "batch_sizes", None)
        else 1.0,
        # prompt tokens the model actually ran (the rest came from the prefix cache or a group twin)
        "prefilled_tokens": decoder.prefilled_tokens - prefilled_before
        if prefilled_before is not None
        else sum(len(p) for p, _, _ in results),
        "prompt_tokens": sum(len(p) for p, _, _ in results),
    }
    if getattr(server, "batch_sizes", None) is not None:
        server.batch_sizes.clear()
    print(
        f"{name:<26} {clients:>7} {row['requests']:>8} {tokens:>7} {row['wall_s']:>7} {row['tok_per_s']:>7} "
        f"{row['tok_per_cpu_s']:>9} {row['load_avg_1m']:>5} "
        f"{row['p50_s']:>6} {row['p95_s']:>6} {row['log_prob_gap']:>9.2e} {row['mean_rows_per_step']:>5} "
        f"{row['prefilled_tokens']:>7}/{row['prompt_tokens']}",
        flush=True,
    )
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=96, help="budget per request")
    parser.add_argument("--quick", action="store_true", help="fewer requests per level")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all CPUs of this process)")
    parser.add_argument(
        "--serial-requests",
        type=int,
        default=16,
        help="requests through the serial paths (16 clients at most)",
    )
    parser.add_argument("--gap-samples", type=int, default=8, help="responses re-scored per level")
    parser.add_argument(
        "--engines-only", action="store_true", help="only ours vs transformers' continuous batching"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    model_path = embedded_model_path()
    server = HFRolloutServer(str(model_path), 2048, args.max_tokens, options={"num_threads": args.threads})
    model = server.model
    scale = 1 if args.quick else 2
    print(
        f"model {model_path.name}, {torch.get_num_threads()} threads, budget {args.max_tokens} tokens/request"
    )
    header = f"{'setting':<26} {'clients':>7} {'requests':>8} {'tokens':>7} {'wall_s':>7} {'tok/s':>7} "
    header += f"{'tok/cpu_s':>9} {'load':>5} "
    print(header + f"{'p50_s':>6} {'p95_s':>6} {'lp_gap':>9} {'rows':>5} {'prefilled/prompt tokens':>7}")

    def configure(max_batch_size=32, join_running=True):
        server.engine.max_batch_size, server.engine.join_running = max_batch_size, join_running
        server.prefix_cache.clear()  # every level starts cold: no KV left by the one before
        return server

    def batched(label, target, clients, prompts=None):
        prompts = prompts or ramp_prompts(server.tokenizer, max(2 if args.quick else 4, clients * scale))
        return run_level(label, target, prompts, clients, args.max_tokens, args.gap_samples, model)

    rows = []
    if not args.engines_only:
        # a serial server's tok/s does not depend on how many clients wait; fewer requests only shorten it
        serial_prompts = ramp_prompts(server.tokenizer, args.serial_requests)
        serial_clients = min(16, args.serial_requests)
        legacy = LegacySerialServer(server)
        for label, target in (("legacy serial (pre-14)", legacy), ("new, max_batch_size=1", configure(1))):
            rows.append(run_level(label, target, serial_prompts, serial_clients, args.max_tokens, 4, model))
    for clients in (1, 16, 32) if args.engines_only else (1, 4, 16, 32):
        rows.append(batched("batched (join on)", configure(), clients))
    transformers_cb = TransformersCB(server)
    try:
        for clients in (1, 16, 32):
            rows.append(batched("transformers CB", transformers_cb, clients))
    finally:
        transformers_cb.close()
    for clients in (16, 32):
        ours, theirs = (
            next(r for r in rows if r["clients"] == clients and r["setting"] == s)
            for s in ("batched (join on)", "transformers CB")
        )
        print(
            f"at {clients} clients: ours / transformers CB = {ours['tok_per_s'] / theirs['tok_per_s']:.2f}x tok/s; "
            f"log-prob gap ours {ours['log_prob_gap']:.1e}, theirs {theirs['log_prob_gap']:.1e}"
        )
    if args.engines_only:
        if args.json:
            args.json.write_text(json.dumps({"rows": rows}, indent=2))
        return 0
    rows.append(batched("batched, join off", configure(join_running=False), 16))

    # two-turn episodes (the RL workload): the prefix cache off, then on
    prompts = ramp_prompts(server.tokenizer, 16 * scale)
    observation = server.tokenizer.encode(
        "\n\n<information>" + server.tokenizer.decode(prompts[0][-120:]) + "</information>\n\n",
        add_special_tokens=False,
    )
    episodes = ramp_prompts(server.tokenizer, 16)
    full_cache = server.prefix_cache.max_bytes
    for label, cache_bytes in (("2-turn, prefix cache off", 0), ("2-turn, prefix cache on", full_cache)):
        configure()
        server.prefix_cache.max_bytes = cache_bytes
        rows.append(
            run_level(label, server, episodes, 16, args.max_tokens, args.gap_samples, model, observation)
        )
    server.prefix_cache.max_bytes = full_cache

    serial = next(r for r in rows if r["setting"].startswith("legacy"))
    at16 = next(r for r in rows if r["clients"] == 16 and r["setting"] == "batched (join on)")
    speedup = at16["tok_per_s"] / serial["tok_per_s"]
    cpu_speedup = at16["tok_per_cpu_s"] / serial["tok_per_cpu_s"]
    gap = max(r["log_prob_gap"] for r in rows if r["setting"].startswith(("batched", "2-turn")))
    off, on = (next(r for r in rows if r["setting"] == f"2-turn, prefix cache {x}") for x in ("off", "on"))
    print(
        f"2-turn episodes at 16 clients: prefix cache {on['tok_per_s'] / off['tok_per_s']:.2f}x tok/s, "
        f"prefilled {on['prefilled_tokens']} of {on['prompt_tokens']} prompt tokens (off: {off['prefilled_tokens']})"
    )
    print(
        f"\nspeed-up at 16 clients vs legacy serial: {speedup:.1f}x (target >= {TARGETS['speedup_at_16_min']}x)"
    )
    print(
        f"max log-prob gap, batched vs teacher-forced unbatched: {gap:.2e} (target <= {TARGETS['log_prob_gap_max']})"
    )
    ok = speedup >= TARGETS["speedup_at_16_min"] and gap <= TARGETS["log_prob_gap_max"]
    if args.json:
        args.json.write_text(
            json.dumps(
                {"rows": rows, "speedup_at_16": speedup, "cpu_speedup_at_16": cpu_speedup, "max_gap": gap},
                indent=2,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
