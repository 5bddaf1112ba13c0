"""bf16 where the hardware has it, fp32 elsewhere: detection, `train.bf16`'s resolution, run ids, a bf16
step on the CPU (emulated where the CPU has no bf16 arithmetic) and the benchmark's peaks line."""
import json

import pytest
import torch
from conceptspace import bench, config, model, store, train
from conceptspace.config import ConfigError, RunConfig, TrainConfig, build

CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
model name\t: {name}
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 {extra}
bogomips\t: 4000.00

processor\t: 1
vendor_id\t: {vendor}
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 {extra}
"""

# A run small enough to train in seconds, built from the defaults (not a profile, which may change).
SMALL = {"data": {"resolution": 8, "samples_per_class": 8}, "model": {"channels": [8, 16]},
         "train": {"steps": 2, "batch_size": 4, "checkpoints": 2, "first_checkpoint": 1}}
# Run ids computed before precision was part of them (commit f588ab0): fp32 runs must keep them.
KNOWN_IDS = {"defaults": "b923288da50b", "defaults, train.bf16 false": "3ad0ce7f33ed", "small": "c13cf27c32cd"}


def small(**overrides) -> RunConfig:
    return build(RunConfig, SMALL).with_changes(**overrides)


def fake_cpuinfo(tmp_path, extra: str, vendor="AuthenticAMD", name="AMD EPYC 7B12"):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(vendor=vendor, name=name, extra=extra))
    return path


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine: `machine(cpu_bf16=..., cuda=None | "bf16" | "no bf16")`."""
    def make(cpu_bf16: bool, cuda: str | None = None):
        monkeypatch.setattr(model, "native_cpu_bf16", lambda path=None: cpu_bf16)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda is not None)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: cuda == "bf16")
    return make


# detection


@pytest.mark.parametrize("extra, native", [
    ("avx512f avx512bw avx512vl avx512_bf16 avx512_vnni", True),  # Zen 4, Cooper Lake
    ("avx512f avx512bw amx_bf16 amx_tile amx_int8", True),        # Sapphire Rapids
    ("avx512f avx512bw avx512vl avx512_vnni", False),             # AVX-512 without its bf16 instructions
    ("sha_ni clzero", False),                                     # Zen 1-3: no AVX-512 at all
])
def test_native_cpu_bf16_reads_the_flags(tmp_path, extra, native):
    assert model.native_cpu_bf16(fake_cpuinfo(tmp_path, extra)) is native
    assert model.cpu_flags(CPUINFO.format(vendor="x", name="y", extra=extra)) >= set(extra.split())


def test_native_cpu_bf16_is_false_without_cpuinfo(tmp_path, monkeypatch):
    assert model.native_cpu_bf16(tmp_path / "absent") is False  # macOS, Windows: no /proc
    monkeypatch.setattr(model, "CPUINFO", tmp_path / "absent")
    assert model.native_cpu_bf16() is False
    monkeypatch.setattr(model, "CPUINFO", fake_cpuinfo(tmp_path, "avx512_bf16"))  # the default path is read
    assert model.native_cpu_bf16() is True


# train.bf16 → precision


@pytest.mark.parametrize("device, cpu_bf16, cuda, knob, expected", [
    ("cpu", True, None, "auto", "bf16"),
    ("cpu", False, None, "auto", "fp32"),
    ("cpu", True, None, "never", "fp32"),
    ("cpu", False, None, "never", "fp32"),
    ("cpu", True, None, "always", "bf16"),
    ("cpu", False, None, "always", "bf16"),  # emulated: asked for
    ("cpu", True, None, True, "bf16"),       # true and false: the values the knob had before
    ("cpu", False, None, True, "fp32"),
    ("cpu", True, None, False, "fp32"),
    ("cuda", False, "bf16", "auto", "bf16"),
    ("cuda", False, "no bf16", "auto", "fp32"),  # a GPU before Ampere: torch would emulate it
    ("cuda", True, "bf16", "never", "fp32"),
    ("cuda", False, "no bf16", "always", "bf16"),
    ("cpu", False, "bf16", "auto", "fp32"),  # a CUDA machine's CPU is still its CPU
])
def test_precision_resolves_the_knob_per_device(machine, device, cpu_bf16, cuda, knob, expected):
    machine(cpu_bf16=cpu_bf16, cuda=cuda)
    assert model.precision(TrainConfig(bf16=knob), torch.device(device)) == expected


def test_bf16_knob_is_validated_by_name():
    assert TrainConfig().bf16 == "auto"
    assert (TrainConfig(bf16=True).bf16, TrainConfig(bf16=False).bf16) == ("auto", "never")
    for bad, needle in (("yes", "train.bf16 = 'yes' is unknown; allowed: ['auto', 'always', 'never']"),
                        ("on", "train.bf16 = 'on' is unknown"), (1, "train.bf16 = 1 must be text; allowed:")):
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            config.experiment("tiny", {"train.bf16": bad})
    broken = TrainConfig()
    object.__setattr__(broken, "bf16", "sometimes")  # past validation: precision still names the setting
    with pytest.raises(ConfigError, match="train.bf16 = 'sometimes'"):
        model.precision(broken, "cpu")


# run ids


def test_fp32_run_ids_are_unchanged(machine):
    machine(cpu_bf16=False)  # this machine, as the store knows it: fp32
    defaults = build(RunConfig, {})
    assert defaults.run_id() == defaults.run_id("fp32") == KNOWN_IDS["defaults"]
    for off in (False, "never"):
        assert defaults.with_changes(**{"train.bf16": off}).run_id() == KNOWN_IDS["defaults, train.bf16 false"]
    assert small().run_id() == KNOWN_IDS["small"]
    # a never run is fp32 everywhere, so its id is the same on a bf16 machine
    machine(cpu_bf16=True, cuda="bf16")
    assert defaults.with_changes(**{"train.bf16": "never"}).run_id() == KNOWN_IDS["defaults, train.bf16 false"]


def test_bf16_runs_have_their_own_ids(machine):
    cfg = small()
    assert cfg.run_id("bf16") != cfg.run_id("fp32") == KNOWN_IDS["small"]
    assert config.identity(cfg, "bf16") == {**config.identity(cfg, "fp32"), "precision": "bf16"}
    machine(cpu_bf16=True)  # a CPU with bf16 arithmetic: the default run trains, and is named, in bf16
    assert cfg.run_id() == cfg.run_id("bf16")
    machine(cpu_bf16=False, cuda="bf16")  # the device train picks: CUDA
    assert cfg.run_id() == cfg.run_id("bf16")
    machine(cpu_bf16=False)
    assert cfg.with_changes(**{"train.bf16": "always"}).run_id() not in (cfg.run_id(), KNOWN_IDS["small"])
    with pytest.raises(ConfigError, match="precision = 'fp16' is unknown; allowed: \\['fp32', 'bf16'\\]"):
        cfg.run_id("fp16")


def test_training_on_a_device_other_than_the_ids_is_refused(machine):
    machine(cpu_bf16=False, cuda="bf16")  # run ids are named for CUDA's bf16; the CPU would train fp32
    with pytest.raises(ConfigError, match="train.bf16 = 'auto' trains in fp32 on cpu but in bf16 on cuda"):
        train._check_precision(TrainConfig(), torch.device("cpu"))
    train._check_precision(TrainConfig(bf16="always"), torch.device("cpu"))
    train._check_precision(TrainConfig(bf16="never"), torch.device("cpu"))


# bf16 on the CPU


@pytest.mark.parametrize("knob, dtype", [("always", torch.bfloat16), ("never", None)])
def test_a_training_step_runs_under_cpu_autocast(knob, dtype):
    cfg, cpu = small(**{"train.bf16": knob}), torch.device("cpu")
    s = train._new_state(cfg, cpu)
    seen = []

    def forward(x, t, h):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return s.model(x, t, h)
    s.forward = forward
    loss = train._train_step(s, train.training_set(cfg, cpu), train.loss_function(cfg), cfg.train, cpu)
    assert seen == [dtype] and torch.isfinite(loss) and loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in s.model.parameters())  # fp32 masters


def test_a_bf16_run_trains_samples_and_says_its_precision(tmp_path):
    cfg = small(**{"train.bf16": "always"})
    run = train.train(cfg, store.Store(tmp_path), device="cpu", progress=False)
    assert run.id == cfg.run_id("bf16") and run.done
    assert json.loads((run.dir / "done.json").read_text())["precision"] == "bf16"
    net = model.build_model(cfg).eval()
    net.load_state_dict(run.load_weights(run.checkpoint_steps()[-1]))
    x = model.sample(net, cfg, torch.rand(3, 11), torch.randn(3, 3, 8, 8), steps=2, guidance=2.0)
    assert x.dtype == torch.float32 and torch.isfinite(x).all()


def test_an_fp32_run_says_its_precision(tmp_path, machine):
    machine(cpu_bf16=False)
    run = train.train(small(), store.Store(tmp_path), device="cpu", progress=False)
    assert run.id == KNOWN_IDS["small"]
    assert json.loads((run.dir / "done.json").read_text())["precision"] == "fp32"


# the benchmark


def test_bench_reports_both_peaks_and_says_which_is_emulated():
    out = {"device": "cpu (x86_64, 2 threads)", "gemm_gflops": 150.0, "gemm_torch_gflops": 130.0,
           "gemm_numpy_gflops": 150.0, "gemm_bf16_gflops": 1.234, "gemm_bf16_native": False, "gemm_bf16_n": 512}
    line = bench.peaks_line(out)
    assert "fp32 150 GFLOP/s" in line and "bf16 1.2 GFLOP/s (emulated, 512²)" in line
    assert "(native, 2048²)" in bench.peaks_line({**out, "gemm_bf16_native": True, "gemm_bf16_n": 2048})
    assert bench.in_precision(small(), "bf16").train.bf16 == "always"
    assert bench.in_precision(small(), "fp32").train.bf16 == "never"
