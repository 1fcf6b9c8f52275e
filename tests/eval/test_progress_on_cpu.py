"""``masksearch eval`` shows its progress on stderr while it runs (on by default), and
``--no-progress`` shows none.

The bar counts samples; its postfix names the running batch and the generate calls (and new
tokens) so far, so a long batch is not silent. Only what is drawn when a batch starts and at the
end is asserted: redraws in between depend on speed.
"""

from __future__ import annotations

from masksearch.cli.main import main


def _eval(model, data, index, out, *extra):
    return main(["eval", "--model", str(model), "--data", str(data), "--index", str(index), "--out", str(out),
                 "--max-samples", "3", "--batch-size", "2", "--max-turns", "1", "--max-response-tokens", "8",
                 *extra])  # fmt: skip


class TestTinyModel:
    def test_progress_is_on_by_default(self, tiny_model_path, qa_parquet, qa_index, tmp_path, capsys):
        assert _eval(tiny_model_path, qa_parquet, qa_index, tmp_path, "--device", "cpu") == 0
        err = capsys.readouterr().err
        assert "eval:" in err and "0/3 [" in err  # the bar counts samples: 3 planned
        assert "batch 1/2: 0 generate calls" in err  # drawn as the first batch starts
        assert "3/3 [" in err  # drawn at the end, with what the last batch (1 sample, 1 turn) did
        assert "batch 2/2: 1 generate call" in err and "failed 0" in err

    def test_no_progress_draws_nothing(self, tiny_model_path, qa_parquet, qa_index, tmp_path, capsys):
        assert _eval(tiny_model_path, qa_parquet, qa_index, tmp_path, "--device", "cpu", "--no-progress") == 0
        err = capsys.readouterr().err
        assert "eval:" not in err and "batch 1/" not in err and "generate call" not in err


class TestTextGenerator:
    """A text-out generator without ``generate_batch`` keeps that shape behind the progress wrapper."""

    def test_calls_counted_without_tokens(
        self, monkeypatch, oracle, embedded_tokenizer, qa_parquet, qa_index, tmp_path, capsys
    ):
        import masksearch.eval.cli as eval_cli

        generator = oracle()
        monkeypatch.setattr(
            eval_cli, "make_generator", lambda args: (generator, embedded_tokenizer, "oracle")
        )
        assert _eval("oracle", qa_parquet, qa_index, tmp_path, "--max-samples", "2") == 0
        assert generator.calls == 2  # one turn (--max-turns 1) for each of the 2 samples
        err = capsys.readouterr().err
        assert "batch 1/1: 2 generate calls; failed 0" in err  # a text backend returns no token ids
