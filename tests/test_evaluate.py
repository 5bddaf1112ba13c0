import pandas as pd
import pytest
from conceptspace import config, evaluate, prompting, train
from conceptspace.store import Store


def test_concept_space_aggregates_a_hand_made_table():
    samples = pd.DataFrame({
        "step": [1] * 4, "prompt": ["small-blue"] * 4, "method": ["naive"] * 4,
        "target_color": [1] * 4, "target_size": [1] * 4,
        "p_color": [0.9, 0.8, 0.2, 1.0], "p_size": [0.9, 0.1, 0.9, 1.0]})
    row = evaluate.concept_space(samples, ("color", "size")).iloc[0]
    assert row.p_color == pytest.approx(0.725) and row.p_size == pytest.approx(0.725)
    assert row.acc_color == 0.75 and row.acc_size == 0.75
    assert row.joint == 0.5                                  # samples right on both concepts
    assert row["prod"] == pytest.approx(0.725 * 0.725)       # the over-prompting score


def test_target_value_zero_reads_the_complement():
    samples = pd.DataFrame({"step": [1, 1], "prompt": ["large-red"] * 2, "method": ["naive"] * 2,
                            "target_color": [0, 0], "target_size": [0, 0],
                            "p_color": [0.1, 0.2], "p_size": [0.0, 0.6]})
    row = evaluate.concept_space(samples, ("color", "size")).iloc[0]
    assert row.acc_color == 1.0 and row.acc_size == 0.5 and row.p_color == pytest.approx(0.15)


def test_class_prompts_cover_every_class_with_their_sample_counts():
    ex = config.experiment("tiny")
    prompts = prompting.class_prompts(ex.run.data, ex.eval)
    assert [p.name for p in prompts] == ["large-red", "small-red", "large-blue", "small-blue"]
    assert [p.n for p in prompts] == [4, 4, 4, 8]
    assert len({p.key() for p in prompts}) == 4


def test_evaluation_is_cached_per_checkpoint_and_prompt(tmp_path, monkeypatch):
    ex = config.experiment("tiny")
    st = Store(tmp_path)
    run = train.train(ex.run, st, progress=False)
    probe = evaluate.load_probe(st, ex.run.data, ex.probe)
    prompts = prompting.class_prompts(ex.run.data, ex.eval)
    first = evaluate.evaluate(run, probe, prompts[:2], ex.eval, progress=False)
    assert set(first["step"]) == set(run.checkpoint_steps()) and set(first["prompt"]) == {"large-red", "small-red"}
    calls = []
    real = evaluate._evaluate_step
    monkeypatch.setattr(evaluate, "_evaluate_step", lambda *a, **k: calls.append(len(a[3])) or real(*a, **k))
    again = evaluate.evaluate(run, probe, prompts[:2], ex.eval, progress=False)
    pd.testing.assert_frame_equal(first, again)
    assert calls == []  # nothing recomputed
    both = evaluate.evaluate(run, probe, prompts, ex.eval, progress=False)
    assert calls == [2] * len(run.checkpoint_steps())  # only the two new prompts, at each checkpoint
    pd.testing.assert_frame_equal(both[both.prompt.isin(["large-red", "small-red"])].reset_index(drop=True), first)
    images = evaluate.stored_images(run, ex.eval, probe, run.checkpoint_steps()[-1], prompts[3])
    assert images.shape == (4, 3, 8, 8)
