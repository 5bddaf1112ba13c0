"""CelebA: the loader on a fixture in the standard layout, its errors, and one tiny run end to end."""

import celeba_fixture
import pytest
import torch
from conceptspace import celeba, config, data, evaluate, prompting, train
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
