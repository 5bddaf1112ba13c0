"""CelebA: the loader on a fixture in the standard layout, its errors, and one tiny run end to end."""

import json

import celeba_fixture
import pytest
import torch
from conceptspace import celeba, config, data, evaluate, plan, prompting, train, underspecification
from conceptspace.store import Store


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return celeba_fixture.make(tmp_path_factory.mktemp("celeba"))


def face_data(folder, **kw):
    return config.DataConfig(**{"dataset": "celeba", "folder": str(folder), "concepts": ("Male", "Smiling"),
                                "held_out": ((0, 1),), "resolution": 16, "samples_per_class": 8, **kw})


def test_reads_the_standard_layout(folder):
    names, files, attrs = celeba.read_attributes(folder)
    assert len(names) == 40 and len(files) == 48 and attrs.shape == (48, 40)
    male, smiling = names.index("Male"), names.index("Smiling")
    assert {(a[male], a[smiling]) for a in attrs} == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_training_data_holds_out_female_smiling(folder):
    d = face_data(folder)
    images, cond, labels = data.make_dataset(d, seed=0)
    assert images.dtype == torch.uint8 and images.shape == (24, 3, 16, 16)
    assert (0, 1) not in {tuple(x) for x in labels.tolist()}
    assert cond.shape == (24, 4) and torch.equal(cond.sum(1), torch.full((24,), 2.0))
    assert data.class_name(d, (0, 1)) == "female-smiling" and data.cond_dim(d) == 4


def test_augmentation_is_seeded_and_in_range(folder):
    images, _, _ = data.make_dataset(face_data(folder), seed=0)
    a = celeba.augment(images, torch.Generator().manual_seed(1))
    b = celeba.augment(images, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, images.float() / 255)


@pytest.mark.parametrize("damage, words", [
    (lambda r: (r / "list_attr_celeba.txt").unlink(), "list_attr_celeba.txt is missing"),
    (lambda r: (r / "list_attr_celeba.txt").write_text("48\nSmiling Male\n"), "line 2 must list CelebA's 40"),
    (lambda r: (r / "list_attr_celeba.txt").write_text(
        (r / "list_attr_celeba.txt").read_text().replace(" 1", " 2", 1)), "line 3 must be a file name and 40 values"),
    (lambda r: (r / "list_attr_celeba.txt").write_text(
        "99" + (r / "list_attr_celeba.txt").read_text()[2:]), "line 1 says 99 images, the file lists 48"),
    (lambda r: (r / "img_align_celeba" / "000001.jpg").unlink(),
     "000001.jpg is listed in list_attr_celeba.txt but missing"),
])
def test_a_malformed_folder_is_refused_with_the_file_and_the_problem(tmp_path, damage, words):
    root = celeba_fixture.make(tmp_path / "c", per_combo=12)
    damage(root)
    with pytest.raises(celeba.CelebAFormatError, match=words):
        data.make_dataset(face_data(root), seed=0)


def test_a_missing_folder_is_refused_by_name(tmp_path):
    with pytest.raises(config.ConfigError, match="data.folder = .* is not a folder"):
        face_data(tmp_path / "nowhere")
    with pytest.raises(config.ConfigError, match="data.concepts has 'color', not a concept of data.dataset = 'celeba'"):
        face_data(tmp_path, concepts=("color", "Smiling"))


def test_a_tiny_celeba_run_trains_probes_and_evaluates(folder, tmp_path):
    ex = config.experiment("tiny")
    run_cfg = celeba.run_config(ex.run, ex.celeba, str(folder))
    st = Store(tmp_path)
    run = train.train(run_cfg, st, progress=False)
    assert run.done and len(run.checkpoint_steps()) == 3
    probe_cfg = ex.probe.__class__(**{**config.to_dict(ex.probe), "steps": 30})
    oracle = evaluate.load_probe(st, run_cfg.data, probe_cfg)
    table = evaluate.concept_space(evaluate.evaluate(run, oracle, prompting.class_prompts(run_cfg.data, ex.eval),
                                                     ex.eval, progress=False), run_cfg.data.concepts)
    assert set(table.prompt) == {"female-not-smiling", "female-smiling", "male-not-smiling", "male-smiling"}
    assert table[["p_Male", "p_Smiling"]].stack().between(0, 1).all()


# ---- underspecification on real faces (chapter 7's CelebA analogue) -------------------------------------

def test_a_masked_celeba_run_nulls_only_the_masked_attribute_of_the_masked_class(folder):
    plain = data.make_dataset(face_data(folder), seed=3)
    masked = data.make_dataset(face_data(folder, mask=[1.0, 0.0], mask_classes=[[1, 1]]), seed=3)
    assert torch.equal(plain[0], masked[0]) and torch.equal(plain[2], masked[2])  # images and labels unchanged
    male_smiling = (masked[2] == torch.tensor([1, 1])).all(1)
    assert male_smiling.any() and (~male_smiling).any()
    assert (masked[1][male_smiling][:, 0:2] == data.NULL_VALUE).all()  # Male's one-hot pair, left out
    assert torch.equal(masked[1][male_smiling][:, 2:4], plain[1][male_smiling][:, 2:4])  # the smile is still named
    assert torch.equal(masked[1][~male_smiling], plain[1][~male_smiling])  # other classes' prompts untouched
    half = data.make_dataset(face_data(folder, samples_per_class=24, mask=[0.5, 0.0], mask_classes=[[1, 1]]), seed=3)
    of = (half[2] == torch.tensor([1, 1])).all(1)
    assert 0 < (half[1][of][:, 0] == data.NULL_VALUE).sum() < of.sum()  # p = 0.5: some, not all (24 draws)


def test_the_celeba_runs_are_chapter_6s_run_and_its_masked_copies(folder):
    ex = config.experiment("tiny", {"underspec.celeba_fractions": [0, 0.5, 1]})
    runs = underspecification.celeba_configs(ex, str(folder))
    chapter_6 = celeba.run_config(ex.run, ex.celeba, str(folder))
    assert runs[0].run_id("fp32") == chapter_6.run_id("fp32")  # p = 0 is chapter 6's run, trained once
    assert [underspecification.fraction_of(c, "Male") for c in runs] == [0.0, 0.5, 1.0]
    assert runs[2].data.mask == (1.0, 0.0) and runs[2].data.mask_classes == ((1, 1),)  # male-smiling
    asked = underspecification.celeba_prompts(runs[2], ex)
    assert [p.name for p in asked] == ["smiling, Male left out"] and asked[0].cond[:2] == (data.NULL_VALUE,) * 2


def test_bad_celeba_underspecification_settings_are_refused_by_name():
    with pytest.raises(config.ConfigError, match="underspec.celeba_concept = 'Eyeglasses' is not a concept of the "
                                                 "CelebA run; allowed: one of celeba.attributes"):
        config.experiment("tiny", {"underspec.celeba_concept": "Eyeglasses"})
    with pytest.raises(config.ConfigError, match="underspec.celeba_concept = 'beard' is unknown"):
        config.experiment("tiny", {"underspec.celeba_concept": "beard"})
    with pytest.raises(config.ConfigError, match=r"underspec.celeba_fractions = \[0.0\]; allowed: .* include 0 .*1"):
        config.experiment("tiny", {"underspec.celeba_fractions": [0]})
    other = config.experiment("tiny", {"celeba.attributes": ["Eyeglasses", "Smiling"]})  # unset: the first attribute
    assert underspecification.face_concept(other) == "Eyeglasses"


def test_chapter_7_trains_and_reports_the_masked_face_runs_where_a_folder_is_given(folder, tmp_path, monkeypatch):
    from conceptspace import book
    monkeypatch.setenv("CONCEPTSPACE_CELEBA", str(folder))
    monkeypatch.setenv("CONCEPTSPACE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CONCEPTSPACE_RESULTS", str(tmp_path / "results"))
    book.execute("07_underspecification", "tiny", {}, tmp_path / "stage", timeout=600)
    res = json.loads((tmp_path / "results" / "07_underspecification.json").read_text())
    faces = {f["key"]: f for f in res["findings"] if f["key"].startswith("celeba_")}
    assert set(faces) == {"celeba_delay", "celeba_yields"}
    assert all(f["holds"] is None for f in faces.values())  # one seed: reported, never counted as holding
    assert set(faces["celeba_delay"]["measured"]) == set(faces["celeba_yields"]["measured"]) == {"p 0", "p 1"}
    ex = config.experiment("tiny")
    masked = underspecification.celeba_configs(ex, str(folder))
    for cfg in masked:
        assert Store(tmp_path / "store").run(cfg).done
    planned = {c.run_id() for b in plan.chapter_batches(ex)["07_underspecification"] for c in b.configs}
    assert {c.run_id() for c in masked} <= planned  # the build's plan trains them ahead of the chapter
