"""The paper's Table 2 on SynthFaces: Asyrp editing (neutral → smiling) with a model, measured honestly.

Δh is trained on neutral faces with one instrument's direction — SynthCLIP's text direction "a face" → "a
smiling face" (the paper's setting, text-guided) or the attribute classifier's neutral → smile (all heads) —
and then edits held-out neutral faces. The edit is **judged by the other instrument** (``judge_for``): a Δh
trained against an instrument can fool it (an adversarial edit reads "smiling" without drawing a mouth), so the
instrument that produced the edit never grades it. Reported for the edit and for the plain reconstruction (the
same inversion and sampling without Δh): the share read as smiling, the share of the other attributes kept
(skin, eyewear, hair, style: the identity proxy), PSNR to the input, realism (Fréchet distance of the realism
net's features to renders of the faces' domain) and S_dir in SynthCLIP's space (the paper's metric; it is the
training instrument when the direction is SynthCLIP's, so it is reported, never used as the verdict).

``smile_survival`` measures how long a model keeps a smile it is handed, which is how the edit window of
``AsyrpConfig.synthfaces_smile`` was chosen; ``edit_window`` turns that curve into a window.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..editing import AsyrpConfig, ClassifierDirection, ClipDirection, DeltaBlock, edit_images, train_delta_block
from ..editing.asyrp import asyrp_schedules, invert
from ..editing.directions import Direction
from ..editing.sdedit import sdedit_ddim
from ..metrics.clip_direction import directional_similarity
from ..metrics.fidelity import compute_fidelity
from ..metrics.frechet import frechet_distance_of_features
from ..schedule import make_schedule, respace
from ..synthfaces.attributes import FACE_ATTRIBUTES, FaceLabels
from ..synthfaces.domains import DomainSpec
from ..synthfaces.renderer import render_floats, to_tensor
from ..synthfaces.synthclip import SYNTHCLIP_TEMPLATES, level_embeddings, zero_shot_predict

KEPT = ("skin", "eyewear", "hair", "style")   # attributes the smile edit must not change
SMILE_TEXTS = ("a face", "a smiling face")    # the paper's "face" → "smiling face", in SynthCLIP's words
DIRECTIONS = ("synthclip", "classifier")
EVAL_SPLITS = ("test", "validation")   # held-out faces; each split is its own random stream of faces
FACES = {"limited": ("portrait", "limited"), "source": ("photo", "source")}   # faces → (style, domain of realism)
SHIPPED_SIZE = 32   # the image size of the shipped source model and its fine-tunings


def sized(label: str, size: int) -> str:
    """A model (or faces) as results files name it: the plain label at the shipped 32 px ("source", "naive"), with
    the size for a larger source ("source 64 px", "naive 64 px"), so the two never share a row."""
    return label if size == SHIPPED_SIZE else f"{label} {size} px"


def label_size(label: str) -> int:
    """The image size a label names: "naive 64 px" → 64, "naive" → 32."""
    words = label.split(" ")
    return int(words[-2]) if len(words) > 2 and words[-1] == "px" and words[-2].isdigit() else SHIPPED_SIZE


def plain_label(label: str) -> str:
    """``sized``'s inverse: "naive 64 px" → "naive"."""
    return label.removesuffix(f" {label_size(label)} px")


@dataclass(frozen=True)
class EditBenchConfig:
    """Faces, direction and Asyrp recipe of one edit experiment.

    ``faces``: "limited" (neutral limited-target portraits, the paper's Table 2 setting) or "source" (neutral
    photos, the source model's own domain: the bar the edit must pass first). ``full``: Asyrp's 100 training
    images and 5 passes, 500 held-out faces, the SynthFaces smile window (``AsyrpConfig.synthfaces_smile``).
    ``eval_split``: the held-out faces edited and scored, "test", or "validation" (faces of their own) to choose a
    recipe without looking at the test faces."""

    n_train: int = 100
    n_test: int = 500
    size: int = 32
    faces: str = "limited"
    direction: str = "classifier"   # the measured-best direction; "synthclip" is the paper's (text-guided) setting
    asyrp: AsyrpConfig = field(default_factory=AsyrpConfig.synthfaces_smile)
    num_reference: int = 1000   # renders of the faces' domain for the realism score
    seed: int = 0               # Δh's initialisation and the boosting noise
    eval_split: str = "test"    # or "validation": choosing a recipe on faces the reported scores never see

    def __post_init__(self):
        if self.faces not in FACES:
            raise ValueError(f"faces must be one of {sorted(FACES)}, got {self.faces!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.eval_split not in EVAL_SPLITS:
            raise ValueError(f"eval_split must be one of {EVAL_SPLITS} (Δh trains on 'train'), got "
                             f"{self.eval_split!r}")

    @classmethod
    def quick(cls, **changes) -> "EditBenchConfig":
        """A CPU run of about a minute per model: 8 training and 24 test faces, 20 steps, 2 passes."""
        base = dict(n_train=8, n_test=24, num_reference=200,
                    asyrp=AsyrpConfig.synthfaces_smile(steps="20", epochs=2, batch=2))
        return cls(**{**base, **changes})


# ---- instruments -----------------------------------------------------------------------------------------------

class Judge(Protocol):
    """An instrument that reads the five attributes of any image batch."""

    name: str

    def labels(self, images: torch.Tensor) -> FaceLabels: ...


@dataclass(frozen=True)
class ClassifierJudge:
    """The attribute classifier as a judge."""

    classifier: torch.nn.Module
    name: str = "attribute classifier"

    def labels(self, images: torch.Tensor) -> FaceLabels:
        return self.classifier.predict(images)


@dataclass(frozen=True)
class SynthClipJudge:
    """SynthCLIP's zero-shot reading (the level whose prompts are nearest) as a judge."""

    synthclip: torch.nn.Module
    name: str = "SynthCLIP zero-shot"

    def labels(self, images: torch.Tensor) -> FaceLabels:
        return FaceLabels(**zero_shot_predict(self.synthclip, images))


@dataclass(frozen=True)
class EditInstruments:
    """The attribute classifier, SynthCLIP and the realism net's feature extractor (all frozen)."""

    classifier: torch.nn.Module
    synthclip: torch.nn.Module
    realism: Callable[[torch.Tensor], torch.Tensor]   # images → realism-net features [N, D]

    def direction(self, kind: str) -> Direction:
        """The smile direction Δh is trained with: SynthCLIP's text direction or the classifier's (all heads)."""
        if kind == "synthclip":
            return ClipDirection(*SMILE_TEXTS, self.synthclip, templates=SYNTHCLIP_TEMPLATES)
        return ClassifierDirection(self.classifier, "expression", src_class=0, trg_class=1,
                                   class_names=FACE_ATTRIBUTES["expression"], all_heads=True)

    def judge_for(self, kind: str) -> Judge:
        """The instrument that did NOT produce the edit."""
        return ClassifierJudge(self.classifier) if kind == "synthclip" else SynthClipJudge(self.synthclip)

    def s_dir(self, inputs: torch.Tensor, outputs: torch.Tensor) -> float:
        """Mean S_dir of the pairs in SynthCLIP's space, "a face" → "a smiling face"."""
        return float(directional_similarity(self.synthclip, inputs, outputs, *SMILE_TEXTS,
                                            templates=SYNTHCLIP_TEMPLATES).mean())


# ---- faces -----------------------------------------------------------------------------------------------------

def neutral_spec(faces: str) -> DomainSpec:
    """The domain of the faces an edit starts from: limited-target portraits ("limited", every one neutral) or
    the source's photos with the expression held neutral ("source")."""
    if faces == "limited":
        return DomainSpec.limited_target()
    return DomainSpec("neutral-source", "photo", (("expression", (0,)),))


def neutral_faces(faces: str, n: int, size: int, split: str, device) -> torch.Tensor:
    """[n, 3, size, size] in [-1, 1]: neutral faces without eyewear restrictions beyond the domain's own —
    limited-target portraits ("limited", every one neutral) or neutral photos ("source")."""
    floats, _ = neutral_spec(faces).render(range(n), size, seed=0, split=split)
    return to_tensor(floats).to(device)


def renderer_twins(faces: str, n: int, size: int, split: str = "test", level: int = 1
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The perfect edit, drawn by the renderer: the neutral faces of ``neutral_faces`` and each one's twin with
    only the expression set to ``level`` (every other draw of the face identical). Judging these pairs measures
    what the judge itself allows: the most smiling and kept a flawless edit could score.
    Returns (faces, twins), each [n, 3, size, size] in [-1, 1]."""
    spec = neutral_spec(faces)
    floats, labels = spec.render(range(n), size, seed=0, split=split)
    twins, twin_labels = render_floats(range(n), spec.style, size, 0, spec.stream(split), dict(spec.allowed),
                                       {"expression": level})
    assert all(np.array_equal(getattr(labels, a), getattr(twin_labels, a)) for a in KEPT)
    return to_tensor(floats), to_tensor(twins)


def renderer_edit_scores(instruments: EditInstruments, faces: str, n: int, size: int, num_reference: int,
                         device) -> dict[str, dict[str, float]]:
    """``edit_scores`` of the renderer's perfect edit (``renderer_twins``) as each judge reads it."""
    inputs, twins = (x.to(device) for x in renderer_twins(faces, n, size))
    reference = instruments.realism(domain_reference(faces, num_reference, size).to(device))
    judges = {kind: instruments.judge_for(kind) for kind in DIRECTIONS}
    return {judge.name: edit_scores(judge, instruments, inputs, twins, reference) for judge in judges.values()}


def domain_reference(faces: str, n: int, size: int) -> torch.Tensor:
    """[n, 3, size, size]: renders of the whole domain the faces belong to (smiles included), for realism."""
    spec = DomainSpec.full_target() if faces == "limited" else DomainSpec.source()
    return to_tensor(spec.render(range(n), size, seed=0, split="reference")[0])


# ---- scores ----------------------------------------------------------------------------------------------------

def smiling_share(labels: FaceLabels) -> float:
    return float(np.mean(labels.expression != 0))


def edit_scores(judge: Judge, instruments: EditInstruments, inputs: torch.Tensor, outputs: torch.Tensor,
                reference_features: torch.Tensor, trainer: Judge | None = None) -> dict[str, float]:
    """Smiling share and attributes kept (both read by ``judge``), PSNR, realism FD and S_dir of outputs
    [N, C, H, W] against their inputs; with ``trainer`` (the instrument the edit was trained with) also its own
    smiling reading, ``smiling_by_trainer``, to show how far it can be trusted to grade itself."""
    before, after = judge.labels(inputs), judge.labels(outputs)
    kept = {f"kept_{a}": float(np.mean(getattr(after, a) == getattr(before, a))) for a in KEPT}
    own = {} if trainer is None else {"smiling_by_trainer": smiling_share(trainer.labels(outputs))}
    return {"smiling": smiling_share(after), **own, **kept, "kept_mean": float(np.mean(list(kept.values()))),
            "psnr_db": compute_fidelity(inputs, outputs).psnr_db,
            "realism_fd": frechet_distance_of_features(instruments.realism(outputs), reference_features),
            "s_dir_synthclip": instruments.s_dir(inputs, outputs)}


def asyrp_table_row(unet, instruments: EditInstruments, config: EditBenchConfig, device) -> dict:
    """Train Δh on ``unet`` (frozen) with ``config.direction`` and edit the held-out neutral faces; the edit and
    the plain reconstruction scored by the other instrument (``judge_for``)."""
    unet = unet.to(device).eval().requires_grad_(False)
    direction, judge = instruments.direction(config.direction), instruments.judge_for(config.direction)
    inversion, editing = asyrp_schedules(config.asyrp)
    started = time.perf_counter()
    train = neutral_faces(config.faces, config.n_train, config.size, "train", device)
    torch.manual_seed(config.seed)
    delta = DeltaBlock.for_unet(unet).to(device)
    history = train_delta_block(unet, delta, train, invert(unet, train, inversion), direction, editing,
                                config.asyrp)
    trained = time.perf_counter()
    test = neutral_faces(config.faces, config.n_test, config.size, config.eval_split, device)
    result = edit_images(unet, delta, test, direction.name, config.asyrp, seed=config.seed)
    reference = instruments.realism(domain_reference(config.faces, config.num_reference, config.size))
    trainer = instruments.judge_for("classifier" if config.direction == "synthclip" else "synthclip")
    scores = {kind: edit_scores(judge, instruments, test, result[key].clamp(-1, 1), reference, trainer)
              for kind, key in (("edit", "edited"), ("reconstruction", "original"))}
    return {"direction": direction.name, "judge": judge.name, "faces": config.faces, "n_train": config.n_train,
            "n_test": config.n_test, "sgd_steps": len(history),
            "final_directional": float(np.mean([r["directional"] for r in history[-20:]])), **scores,
            "train_seconds": round(trained - started, 1), "edit_seconds": round(time.perf_counter() - trained, 1)}


@dataclass(frozen=True)
class SourceBar:
    """The bar an edit must pass on the source model (neutral photos in; the photo domain has smiles) before a
    fine-tuned model's edit means anything: most faces smile, the reconstruction alone does not, the other
    attributes and the pixels stay the input's. Each reading is the other instrument's (see the judges above)."""

    smiling: float = 0.8                  # share of edited faces read as smiling, at least
    reconstruction_smiling: float = 0.02  # share of reconstructions (no Δh) read as smiling, at most
    kept: float = 0.95                    # mean share of the other attributes kept, at least
    psnr_db: float = 27.0                 # PSNR of the edit to its input, at least

    @property
    def criteria(self) -> tuple[str, ...]:
        """The criteria's names, in order, as ``passes`` keys them (stored results carry these keys)."""
        return (f"smiling ≥ {self.smiling:g}", f"reconstruction smiling ≤ {self.reconstruction_smiling:g}",
                f"kept ≥ {self.kept:g}", f"PSNR ≥ {self.psnr_db:g} dB")

    def name(self, threshold: str) -> str:
        """The criterion on one threshold ("smiling", "reconstruction_smiling", "kept" or "psnr_db"), named as
        :attr:`criteria` and stored results name it."""
        thresholds = [f.name for f in fields(self)]
        if threshold not in thresholds:
            raise KeyError(f"the bar has no threshold {threshold!r}; it has {', '.join(thresholds)}")
        return self.criteria[thresholds.index(threshold)]

    def passes(self, row: dict) -> dict[str, bool]:
        """{criterion: met} for one run's scores (``asyrp_table_row``) or their means over seeds."""
        edit, plain = row["edit"], row["reconstruction"]
        met = (edit["smiling"] >= self.smiling, plain["smiling"] <= self.reconstruction_smiling,
               edit["kept_mean"] >= self.kept, edit["psnr_db"] >= self.psnr_db)
        return dict(zip(self.criteria, met))


SOURCE_BAR = SourceBar()


def passes_source_bar(row: dict) -> dict[str, bool]:
    """The bar the edit must pass on the source model first (``SOURCE_BAR``), criterion by criterion."""
    return SOURCE_BAR.passes(row)


# ---- the edit window -------------------------------------------------------------------------------------------

def smiling_faces(n: int, size: int, style: str, split: str = "test", seed: int = 0) -> torch.Tensor:
    """[n, 3, size, size] in [-1, 1]: renders of ``style`` ("photo" or "portrait") that all smile (smile or open
    smile), every other attribute drawn as in the full domain."""
    spec = DomainSpec(f"smiling-{style}", style, (("expression", (1, 2)),), n)
    floats, labels = spec.render(range(n), size, seed, split)
    assert bool(np.all(labels.expression != 0))
    return to_tensor(floats)


@torch.no_grad()
def smile_survival(unet, classifier, faces: torch.Tensor, timesteps, steps: str = "20", seed: int = 0
                   ) -> dict[int, float]:
    """How long ``unet`` keeps a smile it is handed: for each t, the share of ``faces`` (all smiling) still read
    as smiling after SDEdit from t (noise to t, then the model's deterministic DDIM down to 0, the same noise for
    every t). A smile survives from t when the model's reverse process below t no longer redraws the mouth; an
    Asyrp edit that acts only above that t is undone below it, which is how its edit interval is chosen here."""
    schedule = respace(make_schedule(), steps)
    noise = torch.randn(faces.shape, generator=torch.Generator().manual_seed(seed)).to(faces.device)
    survival = {}
    for t in timesteps:
        out = sdedit_ddim(unet, faces, schedule, t0=int(t), noise=noise).clamp(-1, 1)
        survival[int(t)] = float(np.mean(classifier.predict(out).expression != 0))
    return survival


def edit_window(survival: dict[int, float], kept: float = 0.8, lost: float = 0.2) -> tuple[int, int]:
    """(t_edit, t_edit_upper) from a survival curve, where the model decides the mouth.

    From the largest t you measured, the model has forgotten the input: what survives there is its own share
    of smiles, the base b. Decided share d(t) = (survival(t) − b)/(1 − b) goes from 1 (the smile is kept) to 0
    (redrawn as the model pleases). The window runs from the largest t with d ≥ ``kept`` (an edit made there is
    not undone below it) up to the smallest larger t with d ≤ ``lost`` (above it the mouth is not drawn yet)."""
    ts = sorted(survival)
    base = survival[ts[-1]]
    decided = {t: (survival[t] - base) / max(1 - base, 1e-9) for t in ts}
    lower = max((t for t in ts if decided[t] >= kept), default=ts[0])
    upper = min((t for t in ts if t > lower and decided[t] <= lost), default=ts[-1])
    return lower, upper


def with_window(config: EditBenchConfig, window: tuple[int, int]) -> EditBenchConfig:
    return replace(config, asyrp=replace(config.asyrp, t_edit=window[0], t_edit_upper=window[1]))


# ---- why the judge must be the other instrument -----------------------------------------------------------------

def classifier_smile_margin(classifier) -> Callable[[torch.Tensor], torch.Tensor]:
    """x → [B]: how much more the classifier reads "smiling" (smile or open smile) than "neutral", in logits."""
    def margin(x: torch.Tensor) -> torch.Tensor:
        logits = classifier(x)["expression"]
        return torch.logsumexp(logits[:, 1:], dim=1) - logits[:, 0]
    return margin


def synthclip_smile_margin(synthclip) -> Callable[[torch.Tensor], torch.Tensor]:
    """x → [B]: cosine to SynthCLIP's smiling prompts (smile, open smile: the nearer) minus cosine to its neutral
    ones — the quantity its zero-shot reading of the expression takes the argmax of."""
    levels = level_embeddings(synthclip, "expression")

    def margin(x: torch.Tensor) -> torch.Tensor:
        cosines = F.normalize(synthclip.encode_image(x), dim=-1) @ levels.to(x.device).T
        return cosines[:, 1:].max(dim=1).values - cosines[:, 0]
    return margin


def adversarial_smile(images: torch.Tensor, margin: Callable[[torch.Tensor], torch.Tensor], epsilon: float = 0.03,
                      steps: int = 20) -> torch.Tensor:
    """Projected gradient ascent (Madry et al. 2018) on ``margin``: images [B, 3, H, W] in [-1, 1] changed by at
    most ``epsilon`` per pixel (0.03 ≈ 4/255 of the [0, 1] range) so that one instrument reads "smiling".
    What an edit trained against that instrument may learn instead of a mouth."""
    x = images.clone()
    step = 2.5 * epsilon / steps
    for _ in range(steps):
        x.requires_grad_(True)
        grad, = torch.autograd.grad(margin(x).sum(), x)
        with torch.no_grad():
            x = (images + (x + step * grad.sign() - images).clamp(-epsilon, epsilon)).clamp(-1, 1)
    return x.detach()
