"""Secret- and document-level DP fine-tuning: unit windows, unit labels of the canary corpus, the
padded loss, and the wiring through fine_tune, the run config, the pipeline label and the report."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from privlab.errors import ConfigError, InvalidParameterError
from privlab.llm.canaries import digit_canaries, insert_canaries
from privlab.llm.config import DPSpec, LLMRunConfig
from privlab.llm.experiment import build_data, build_model, unit_tokens, with_dp
from privlab.llm.finetune import fine_tune, lm_loss
from privlab.llm.models import small_gpt
from privlab.llm.report import llm_section
from privlab.llm.tokenization import NO_UNIT, PAD, CharTokenizer, unit_windows
from privlab.pipeline.config import config_from_dict

from .toy import CORPUS
from .toy import TINY as TINY_PIPELINE

TINY = replace(TINY_PIPELINE, pii=False, train=replace(TINY_PIPELINE.train, steps=4))


def test_unit_windows_never_mix_units_and_keep_every_token() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50, (400,), generator=g)
    runs = torch.randint(-1, 6, (40,), generator=g)  # 40 runs of 10 tokens, labels -1..5
    units = runs.repeat_interleave(10)
    w, owner = unit_windows(ids, units, 16)
    assert w.shape[1] == 17 and owner.shape == (w.shape[0],)
    real = w != PAD
    assert torch.equal(w[real], ids)  # consecutive, non-overlapping, nothing dropped here
    pos = 0
    for row, own in zip(w, owner, strict=True):
        n = int((row != PAD).sum())
        assert bool((row[n:] == PAD).all())  # pads only at the end
        labels = set(units[pos : pos + n].tolist()) - {NO_UNIT}
        assert labels <= {int(own)}  # never two named units in a window
        if not labels:
            assert int(own) >= 6  # a window of unlabelled text is a unit of its own
        pos += n
    fresh = owner[owner >= 6]
    assert fresh.unique().numel() == fresh.numel()


def test_unit_windows_errors() -> None:
    with pytest.raises(InvalidParameterError, match="'units' parameter of unit_windows must label every token"):
        unit_windows(torch.arange(10), torch.zeros(9, dtype=torch.long), 4)
    with pytest.raises(InvalidParameterError, match=r"'units'.*>= 0 or NO_UNIT"):
        unit_windows(torch.arange(10), torch.full((10,), -2), 4)


@torch.no_grad()
def test_padded_loss_is_the_loss_of_the_real_tokens() -> None:
    tok = CharTokenizer.from_texts(["abcdefgh "])
    lm = small_gpt(tok, block_size=8, n_layer=1, n_embd=16, seed=0)
    lm.module.eval()
    full = torch.tensor([tok.encode("abcdefgh ")])
    padded = full.clone()
    padded[0, 5:] = PAD
    # targets 1..4 of the real tokens; the loss sums them and divides by T = 8
    logits = lm.module(full[:, :4])
    nll = torch.nn.functional.cross_entropy(logits[0], full[0, 1:5], reduction="sum")
    assert float(lm_loss(lm.module, padded)) == pytest.approx(float(nll) / 8, rel=1e-5)
    assert float(lm_loss(lm.module, full)) != pytest.approx(float(lm_loss(lm.module, padded)))


def test_canary_lines_and_documents_are_labelled() -> None:
    canaries = digit_canaries((1, 4), per_level=1, n_digits=3, seed=0)
    planted = insert_canaries("a\nb\nc\nd", canaries, seed=0)
    lines = planted.text.split("\n")
    assert len(planted.line_canary) == len(lines)
    for k, c in enumerate(canaries):
        mine = [ln for ln, o in zip(lines, planted.line_canary, strict=True) if o == k]
        assert mine == [c.text] * c.repetitions
    assert [ln for ln, o in zip(lines, planted.line_canary, strict=True) if o == -1] == ["a", "b", "c", "d"]
    data = build_data(TINY, CORPUS)
    text_lines = data.train_text.split("\n")
    for m, doc in enumerate(data.members):
        assert "\n".join(ln for ln, d in zip(text_lines, data.line_document, strict=True) if d == m) == doc


@pytest.mark.parametrize("unit", ["secret", "document"])
def test_unit_tokens_label_every_copy_of_a_canary(unit: str) -> None:
    data = build_data(TINY, CORPUS)
    lm = build_model(TINY, data)
    ids, units = unit_tokens(lm, data, unit)
    assert units is not None and torch.equal(ids, torch.tensor(lm.tokenizer.encode(data.train_text)))
    for k, c in enumerate(data.canaries):
        text = lm.tokenizer.decode(ids[units == k].tolist())
        assert text.count(c.text) == c.repetitions
    n_named = len(data.canaries) + (len(data.members) if unit == "document" else 0)
    assert int(units.max()) == n_named - 1 and (units == NO_UNIT).any() == (unit == "secret")
    assert unit_tokens(lm, data, "example")[1] is None


def test_fine_tune_samples_units() -> None:
    data = build_data(TINY, CORPUS)
    lm = build_model(TINY, data)
    ids, units = unit_tokens(lm, data, "secret")
    cfg = with_dp(TINY, DPSpec(target_epsilon=8.0, accountant="rdp", privacy_unit="secret")).train
    res = fine_tune(lm, ids, cfg, token_units=units)
    _, owner = unit_windows(ids, units, 32)
    assert res.privacy_unit == "secret" and res.num_units == owner.unique().numel()
    assert res.sample_rate == pytest.approx(8 / res.num_units)
    assert res.delta == pytest.approx(1 / (10 * res.num_units)) and res.epsilon <= 8.0 + 1e-6
    with pytest.raises(InvalidParameterError, match="'token_units' parameter of fine_tune"):
        fine_tune(build_model(TINY, data), ids, cfg)


def test_fine_tune_with_all_windows_of_a_unit() -> None:
    data = build_data(TINY, CORPUS)
    lm = build_model(TINY, data)
    ids, units = unit_tokens(lm, data, "secret")
    dp = DPSpec(accountant="rdp", privacy_unit="secret", clipping="flat", per_unit="all")
    res = fine_tune(lm, ids, with_dp(TINY, dp).train, token_units=units)
    assert res.steps == 4 and res.sample_rate == pytest.approx(8 / res.num_units)
    with pytest.raises(InvalidParameterError, match=r"'per_unit' parameter of DPSpec.*clipping='flat'"):
        DPSpec(privacy_unit="secret", per_unit="all")  # ghost clipping cannot clip a group


def test_privacy_unit_in_the_run_config() -> None:
    cfg = config_from_dict({"llm": {"dp": {"target_epsilon": 8.0, "privacy_unit": "secret"}}})
    assert cfg.llm is not None and cfg.llm.dp is not None and cfg.llm.dp.privacy_unit == "secret"
    assert config_from_dict({"llm": {}}).llm.dp.privacy_unit == "example"  # the default
    with pytest.raises(ConfigError, match=r"llm\.dp\.privacy_unit"):
        config_from_dict({"llm": {"dp": {"privacy_unit": "user"}}})
    with pytest.raises(InvalidParameterError, match=r"'privacy_unit' parameter of DPSpec.*'example', 'secret'"):
        DPSpec(privacy_unit="window")
    from privlab.llm.pipeline import run_labels

    labels = run_labels(LLMRunConfig(TINY, DPSpec(privacy_unit="document")))
    assert list(labels) == ["non-private", "DP eps=8 per document"]


def test_report_says_which_unit_epsilon_is_for() -> None:
    from privlab.llm.experiment import run_canary_experiment

    res = run_canary_experiment(with_dp(TINY, DPSpec(accountant="rdp", privacy_unit="secret")), text=CORPUS)
    assert res["training"]["privacy_unit"] == "secret" and res["training"]["num_units"] > 0
    sec = llm_section({"DP eps=8 per secret": res})
    assert "(secret-level)" in sec.card[0].claimed
    util = next(t for t in sec.tables if t.title == "Utility")
    assert util.columns[-1] == "privacy unit" and util.rows[0][-1] == "secret"
