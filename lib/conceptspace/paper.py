"""The papers' claims, numbers and setup: the one source every chapter, the scorecard and the
deviations admonition read (Park et al. 2024, "Emergence of Hidden Capabilities", HC; Yang et al.
2024, "Dynamics of Concept Learning and Compositional Generalization", SIM).

Provenance of a value, as in the book's references page: **paper** (the paper's text or figure),
**code** (the official repository's configs and notebooks), **fig** (read off the official
repository's figures, ±5-10 %), **computed** (computed from the official code's stored data),
**inferred** (not verified against the paper's text). Used by: every chapter, `book.scorecard`.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import RECIPE_DEFAULTS, Experiment, to_dict

HC = "Park et al. 2024"
SIM = "Yang et al. 2024"


@dataclass(frozen=True)
class Claim:
    id: str
    source: str        # the paper and its section / figure
    claim: str         # the claim in one sentence, at the paper's strength
    value: str         # the paper's number or statement
    provenance: str    # paper | code | fig | computed | inferred
    strength: str      # how broadly the paper states it: what a judged rule must test
    chapter: str       # the chapter (notebook name) that tests it; "" if no chapter does yet


CLAIMS = {c.id: c for c in (
    Claim("HC1", f"{HC}, §3, Fig. 4", "a model trained on three of four compositions generates the held-out one "
          "(small blue)", "joint accuracy ≈ 1 by the end of a 20k-step run at moderate Δc", "paper, fig",
          "every seed, at a Δc where the class is learned", "01_concept_space"),
    Claim("HC2", f"{HC}, §4.1, Fig. 3", "a concept's learning speed rises with its concept signal",
          "T_color at Δs 0.4 ≈ 15.7k, 9.2k, 8.0k, 7.8k, 4.4k, 4.5k, 3.3k steps for Δc 0.2 … 0.8", "fig",
          "monotone over the Δc grid, seeds averaged", "02_concept_signal"),
    Claim("HC3", f"{HC}, §4.1, Fig. 3", "the order in which concepts are learned flips with the signal: size first "
          "at weak color signal, color first at strong",
          "flip between Δc 0.616 and 0.653 in the 20-value col_sweep (Fig. 4 data); T_size − T_color changes sign "
          "at Δc ≈ 0.45 in the Fig. 3 heat map at Δs 0.4", "computed, fig",
          "a flip inside the grid, at the paper's Δc within the grid's resolution", "02_concept_signal"),
    Claim("HC4", f"{HC}, §4.1, Fig. 4", "at weak color signal the held-out class never turns blue within the run",
          "Δc ≤ 0.211: P(blue) never above 0.9 in 20k steps; Δc ≥ 0.247: it is", "computed",
          "every seed", "02_concept_signal"),
    Claim("HC5", f"{HC}, §4.2, Fig. 4", "the held-out trajectory first heads for the training class that shares the "
          "concept with the stronger signal (concept memorization)",
          "toward small-red at weak Δc, large-blue at strong Δc", "paper, fig", "every Δc", "03_sudden_turns"),
    Claim("HC6", f"{HC}, §4.2, Fig. 4", "then it turns sharply toward the held-out corner, synchronized across Δc, "
          "near the saturation of the training classes",
          "turn ≈ 2.8k-3.9k steps of 20k for every Δc; training classes saturate at ≈ 3.7k-3.9k", "fig, computed",
          "every learned run turns; turn near training saturation", "03_sudden_turns"),
    Claim("HC7", f"{HC}, appendix (dC/dt)", "the speed |dC/dt| of a trajectory falls with training time, not with Δc",
          "R² of log speed: 0.79 on log step, 0.01 on Δc", "code", "reported", "03_sudden_turns"),
    Claim("HC8", f"{HC}, §5, Fig. 5", "at the turn, interventions already elicit the held-out composition "
          "(a hidden capability): over-prompting emerges at the turn, well before naive prompting",
          "over-prompting ≈ 0.1-0.2 until ≈ 2.3k (Δc 0.3) / 4.5k (Δc 0.175), ≈ 0.9 by ≈ 4.5k / 6k / 6.5k "
          "(Δc 0.3 / 0.2 / 0.175)", "fig", "every Δc of 0.175-0.3, consistent across seeds", "04_hidden_capabilities"),
    Claim("HC9", f"{HC}, §5, Fig. 5", "naive prompting lags far behind and varies by seed",
          "when capability reaches 0.9, naive ≈ 0.05 (Δc ≤ 0.2) to ≈ 0.3 (Δc 0.3); Δc 0.3 reaches ≈ 0.9 at 8k-9.5k",
          "fig", "every Δc; large seed spread", "04_hidden_capabilities"),
    Claim("HC10", f"{HC}, §5 (max5prompt)", "the best of five over-prompts reaches ≈ 1.0 while standard prompting "
          "stays near 0.5", "Max5Prompt ≈ 1.0 from ≈ 8k; standard ≈ 0.45-0.55 at 10k-20k", "fig", "one 20k run",
          "04_hidden_capabilities"),
    Claim("HC11", f"{HC}, §5, Fig. 5", "the linear latent intervention (each block's conditioning edited, α ∈ {0.1, "
          "1, 2}, β 0.1) elicits the capability at about the time over-prompting does",
          "Δc 0.174, Δs 0.4, 5 seeds", "code", "every seed", "04_hidden_capabilities"),
    Claim("HC12", f"{HC}, §5 (guidance)", "classifier-free guidance alone does not remove naive prompting's delay",
          "not found in the paper's text", "inferred", "unverified: reported until the paper's statement is found",
          "04_hidden_capabilities"),
    Claim("HC13", f"{HC}, appendix (2×2×2)", "held-out classes of a 2×2×2 grid are learned in an order set by their "
          "distance from their corner when the training classes converge",
          "Pearson r = 0.81 (distance vs learned step, 9 configs); convergence at 7,206 steps; learned at "
          "5.6k-30.3k steps; classes with d < 0.05 learned at once (5.6k-6.1k)", "computed", "across the 9 configs",
          "06_beyond_two_concepts"),
    Claim("HC14", f"{HC}, appendix (2×2×2)", "the class farthest from training (111) is learned last; a weak "
          "background signal (Δb 0.1) leaves background-dependent classes unlearned",
          "111 last; at Δb 0.1 soft accuracy ≈ 0.55 after 40k steps", "fig", "per config", "06_beyond_two_concepts"),
    Claim("HC15", f"{HC}, §6 (CelebA)", "on real faces (Male × Smiling, smiling women held out) the trajectory first "
          "runs to the non-smiling female corner, then turns", "≈ (0.97, 0.2), then ≈ (0.6, 0.7)", "fig",
          "the runs shown", "06_beyond_two_concepts"),
    Claim("HC16", f"{HC}, underspecification (Fig. 2's mixing function; Figs. 6-7 by our mapping)", "prompts that "
          "leave a concept out delay its learning: the larger the fraction of training prompts that mask it, the "
          "later the held-out composition is generated correctly", "steps to 80 % accuracy grow with the masked "
          "fraction (no numbers found)", "paper (secondary summaries)",
          "a trend over the masked fraction, stated qualitatively (the section's own text was not found)",
          "07_underspecification"),
    Claim("HC17", f"{HC}, appendix (robustness)", "a smaller initialization (0.1) or weight decay 0.05 give the same "
          "memorize-then-turn picture", "qualitative", "fig", "qualitative", ""),
    Claim("HC18", f"{HC}, underspecification (Figs. 6-7 by our mapping)", "with the concept masked in every training "
          "prompt, a prompt asking for the held-out value yields the value the training data correlate with the "
          "rest of the prompt (the concepts are entangled)", "asking for a blue triangle gives a red one",
          "paper (secondary summaries)", "the fully masked setting (the section's own text was not found)",
          "07_underspecification"),
    Claim("HC19", f"{HC}, §6 (CelebA)", "underspecification delays or entangles concept learning on real faces too",
          "qualitative", "paper (secondary summaries)", "qualitative", ""),
    Claim("SIM1", f"{SIM}, §4, Thm 4.1", "for a model linear in its input the dynamics reduce to A = diag(a_p), "
          "a_p = μ_p²/K + σ_p²", "closed form", "paper", "exact for the one-layer model", "05_sim_theory"),
    Claim("SIM2", f"{SIM}, §4, Fig. 2", "concepts are learned in the order of a_p; a larger spread on a weak-mean "
          "axis can reverse the order", "flip at Var₁ ≈ 1 for μ (1, 2), Var₂ 0.05", "code",
          "every setting", "05_sim_theory"),
    Claim("SIM3", f"{SIM}, §4", "the learning time is T_k ≈ d ln(1/ε) / (2 η a_k) SGD steps",
          "μ (1, 2), Var 0.05, no bias: 1,922 / 533 steps", "computed",
          "within a few % of SGD in the theory's regime", "05_sim_theory"),
    Claim("SIM4", f"{SIM}, §5, Fig. 5", "the symmetric two-layer model swings by a training centre: the held-out "
          "test loss rises while the training loss falls", "the effect, in the paper's setting μ (1, 1.5), d 3",
          "paper", "the effect exists in the paper's setting", "05_sim_theory"),
    Claim("SIM5", f"{SIM}, Figs. 2c, 3", "deeper, low-dimensional linear networks show the swing in trajectory and "
          "loss", "qualitative", "paper", "qualitative", "05_sim_theory"),
    Claim("SIM6", f"{SIM}, Figs. 8-9", "more concepts give multiple descent of the test loss",
          "μ (1, 1.5, 2.2, 2.7): several descents", "paper", "qualitative (seeds chosen by the authors)",
          "05_sim_theory"),
    Claim("SIM7", f"{SIM}, §6, Fig. 6", "in a diffusion model, the held-out class's concept-space error is "
          "non-monotone early in training for some signals", "Fig. 6 (Δ 0.137-0.8, 32 images × 5 seeds)", "paper",
          "some Δ; qualitative", "03_sudden_turns"),
)}

# Headline numbers that chapters put beside their own (provenance in the claim named).
T_COLOR = {0.2: 15_700, 0.3: 9_200, 0.4: 8_000, 0.5: 7_800, 0.6: 4_400, 0.7: 4_500, 0.8: 3_300}  # HC2, Δs 0.4
FLIP_DELTA_COLOR = (0.616, 0.653)   # HC3: the col_sweep values between which the order flips (computed)
FLIP_HEATMAP = 0.45                 # HC3: sign change of T_size − T_color at Δs 0.4 in the Fig. 3 heat map (fig)
NEVER_BLUE_MAX = 0.211              # HC4: the largest col_sweep Δc whose held-out class never turns blue in 20k
TURN_STEPS = (2_800, 3_900)         # HC6: the synchronized turn, of 20k steps
SATURATION_STEPS = (3_700, 3_900)   # HC6: training classes saturate
OVERPROMPT_AT_09 = {0.175: 6_500, 0.2: 6_000, 0.3: 4_500}  # HC8: over-prompting capability ≈ 0.9, of 15k steps
NAIVE_AT_CAPABILITY = (0.05, 0.3)   # HC9: naive accuracy when the capability reaches 0.9
HIDDEN_DELTA_COLOR = (0.175, 0.3)   # HC8: the Δc range of the paper's prompting sweep
MULTI_R = 0.81                      # HC13
MULTI_CONVERGENCE = 7_206           # HC13
MULTI_LEARNED = (5_600, 30_300)     # HC13
MULTI_WEAK_BACKGROUND = {"delta_background": 0.1, "soft_accuracy": 0.55, "steps": 40_000}  # HC14 (fig)
# SIM (Yang et al. 2024). SIM3: the formula d ln(1/ε)/(2ηa_k) at d 64, η 0.1, ε 0.1, μ (1, 2), Var 0.05, K 3
# (computed); SIM2: the Var₁ of the order flip for μ (1, 2), Var₂ 0.05 (Fig. 2b, code semantics); SIM4 / SIM6:
# Figs. 5 and 9 as the official figure code draws them (W-recurrence, U ~ U[0, init) from torch's generator
# seeded with `seed`, a_p = μ_p²/s + σ²: the figure code squares σ, the SGD code does not; code).
SIM_T_FORMULA = (1_922, 533)
SIM_FLIP_VAR = 1.0
SIM_FIG5 = {"mu": (1.0, 1.5), "sigma": 0.05, "dim": 3, "init": 0.2, "seed": 2333, "eta": 0.01, "iterations": 2_000}
SIM_FIG9 = {"mu": (1.0, 1.5, 2.2, 2.7), "sigma": 0.05, "dim": 4, "init": 0.1, "seed": 233_333, "eta": 0.01,
            "iterations": 10_000}
# SIM5: the low-dimensional deep run of Figs. 2c and 3 (a depth-4, width-4 linear network on d = 2, μ (2, 4),
# SGD at lr 0.01 with the official biases and initialization; code).
SIM_DEEP = {"mu": (2.0, 4.0), "var": 0.05, "dim": 2, "depth": 4, "width": 4, "lr": 0.01}

# The paper's own setup (Park et al. 2024, §3, by the official code; references: data, model), by the
# book's setting names. A value of None: the paper has no such setting; train.ema_decay 0: no EMA, the
# raw weights sample. Sections the chapter does not use are left out of its diff.
SETUP = {
    "data.resolution": 32, "data.nuisance": 1.0, "data.samples_per_class": 2048,
    "model.recipe": "paper", "model.channels": [64, 128, 256], "model.layers_per_block": 2, "model.attention": True,
    "model.attention_last_level": False, "model.norm_groups": 8, "model.resampling": "transpose",
    **{f"{section}.{key}": value for section, values in RECIPE_DEFAULTS["paper"].items()  # dropout, clip, EMA
       for key, value in values.items()},
    "train.batch_size": 64, "train.learning_rate": 0.001, "train.weight_decay": 0.01, "train.timesteps": None,
    "train.steps": 20_000, "train.checkpoints": 60,
    "train.first_checkpoint": 500,
    "eval.sampler_steps": 50, "eval.samples_per_class": 32, "eval.samples_held_out": 32,
    "probe.steps": 10_000, "probe.batch_size": 64,
    "sweep.delta_color": [0.1, 0.137, 0.174, 0.211, 0.247, 0.284, 0.321, 0.358, 0.395, 0.432, 0.468, 0.505, 0.542,
                          0.579, 0.616, 0.653, 0.689, 0.726, 0.763, 0.8],
    "sweep.delta_size": [0.4], "sweep.seeds": [0, 100, 200, 300, 400],
    "capability.delta_color": [0.175, 0.2, 0.225, 0.25, 0.275, 0.3], "capability.seeds": [0, 100, 200, 300, 400],
    "capability.steps": 15_000, "capability.samples": 64, "capability.alphas": [0.1, 1.0, 2.0], "capability.beta": 0.1,
    "capability.guidance": [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0], "capability.cond_dropout": 0.1,
    "multi.delta_color": [0.2, 0.4, 0.6], "multi.delta_size": 0.35, "multi.delta_background": [0.1, 0.2, 0.3],
    "multi.seeds": [0, 100, 200, 300, 400], "multi.steps": 40_000, "multi.checkpoints": 120,
    # SIM's one-layer SGD runs (the official run.sh / main.py defaults, code)
    "sim.n": 5000, "sim.dim": 64, "sim.epochs": 40, "sim.lr": 0.1, "sim.batch": 128,
    "sim.var_sweep": [0.05, 0.1, 0.5, 1.0, 2.0], "sim.mu_sweep": [1.0, 2.0, 3.0],
}

# How each recipe differs from the paper's in ways no setting names (references: paper-network, vdm-loss,
# diffusers-recipe).
RECIPE_DIFFERENCES = {"diffusers": (
          "DDPM ε-prediction (diffusers) on a fixed cosine schedule of 1,000 steps, sampled with DDIM and "
          "clip_sample, pixels in [-1, 1]; the paper trains a continuous-time VDM with a learned linear log-SNR "
          "schedule and its full 3-term bound, samples ancestrally (50 steps, unclipped output to the probe), "
          "pixels in [0, 1]",
          "one conditioning MLP added to the time embedding; the paper gives each of its 14 res blocks its own "
          "time and conditioning MLPs, added as per-channel biases (so chapter 4's latent edit acts on one "
          "shared embedding, not on each block's projection)",
          "SiLU and diffusers' res blocks; the paper: GELU, GroupNorm eps 1e-6, zero-initialized output conv "
          "plus the noisy input as a residual",
          "all training images sampled with replacement; the paper: an 85/15 train/validation split and epoch "
          "batches"),
    "paper": ("the original also builds two resampling convs it never calls (278,848 parameters that only weight "
              "decay touches); they are left out",
              "the sampler's noise after the first step is drawn per sample from a generator seeded by that "
              "sample's initial noise (the original draws it from the global generator)",
              "no validation or test loss is computed on the 15 % held back from training")}
RECIPE_NAME = "diffusers DDPM"
PAPER_RECIPE_NAME = "VDM (the paper's)"


def deviations(ex: Experiment, sections=("data", "model", "train", "eval", "probe")) -> list[dict]:
    """Every setting of `ex` in `sections` whose value differs from the paper's own setup, as rows
    (setting, this book, paper). Why: a reader must see what differs from the paper, not from the
    library's defaults; settings a chapter varies on purpose (Δc, seeds) are its own experiment."""
    rows = []
    for section in sections:
        values = to_dict(getattr(ex.run, section) if hasattr(ex.run, section) else getattr(ex, section))
        for key, ours in values.items():
            name = f"{section}.{key}"
            if name not in SETUP:
                continue
            theirs = SETUP[name]
            if theirs is None and ex.run.model.recipe == "paper":
                continue  # a setting of the diffusers recipe only (train.timesteps): the paper recipe ignores it
            if theirs is None or _differs(ours, theirs):
                rows.append({"setting": name, "this book": _text(ours), "paper": _text(theirs)})
    return rows


def _differs(ours, theirs) -> bool:
    if isinstance(theirs, list):
        return [float(v) for v in ours] != [float(v) for v in theirs] if _numeric(theirs) else list(ours) != theirs
    if isinstance(theirs, (int, float)) and not isinstance(theirs, bool):
        return float(ours) != float(theirs)
    return ours != theirs


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _text(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def recipe(ex: Experiment) -> str:
    """The name of the recipe a profile trains with (`model.recipe`)."""
    return PAPER_RECIPE_NAME if ex.run.model.recipe == "paper" else RECIPE_NAME


def scale(ex: Experiment) -> str:
    """A row's scale label, e.g. 'cpu · 16 px · 1.8k steps · diffusers DDPM'."""
    r = ex.run
    return (f"{ex.profile} · {r.data.resolution} px · {r.train.steps / 1000:g}k steps · {recipe(ex)}")


def is_paper_scale(ex: Experiment) -> bool:
    """Step counts compare with the paper's only at the paper's recipe, resolution and run length."""
    r = ex.run
    return recipe(ex) == PAPER_RECIPE_NAME and r.data.resolution == 32 and r.data.nuisance == 1.0

