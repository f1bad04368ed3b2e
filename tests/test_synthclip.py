"""SynthCLIP: captions true of their faces, the tokenizer, the multi-positive contrastive loss against a written-out
formula and against CLIP's, a tiny CPU training run, gradients through the image encoder, save/load, the message
when no SynthCLIP is shipped; and (class TestShippedSynthClip) the quality the SHIPPED model must have.

Measured (2026-12, `sdft-lite synthfaces train-synthclip`, eval seed = training seed + 1):
  full preset, one H200, 123 s of training (139 s with the report): zero-shot clean 1.000 on every attribute and
    domain, damaged ≥ 0.984, x̂_0 of the source model at t ~ U[200, 600] 0.56–0.89; S_dir 'a face' → 'a smiling
    face': smile pairs 0.559, control pairs −0.008, ROC AUC 1.000.
  quick preset, this 2-core CPU (busy), 169 s in all: clean skin 0.919, expression 0.689, eyewear 0.984,
    hair 1.000, style 1.000; smile 0.408, controls −0.029, AUC 0.990.
"""
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sdft_lite import assets
from sdft_lite.metrics.clip_direction import image_direction, text_direction
from sdft_lite.synthfaces.attributes import ATTRIBUTES, NUM_LEVELS
from sdft_lite.synthfaces.captions import (CONTEXT_LENGTH, EOS, EXPRESSION_PHRASES, MODIFIER_PHRASES, PAD,
                                           STYLE_TEMPLATES, UNK, UNMENTIONED, Tokenizer, captions_of,
                                           compatibility, words_of)
from sdft_lite.synthfaces.synthclip import (SHIPPED_SYNTHCLIP, SYNTHCLIP_TEMPLATES, SynthClip, SynthClipConfig,
                                            SynthClipMissingError, contrastive_loss, load_synthclip,
                                            save_synthclip, smile_direction_check, synthclip_batch,
                                            train_synthclip, unknown_words_message, zero_shot_accuracy)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = SynthClipConfig(size=16, width=8, embed_dim=32, text_width=32, text_layers=1, heads=2, steps=200, batch=32,
                       lr=3e-3)


def random_labels(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(NUM_LEVELS[name], size=n) for name in ATTRIBUTES], axis=1)


# ---- captions ------------------------------------------------------------------------------------------------

def said_in(text: str) -> list[int]:
    """What a caption says, read back from its words alone: one level per attribute or UNMENTIONED (−1);
    −2 where two levels of one attribute are both said (never allowed)."""
    found = {}
    for level, templates in enumerate(STYLE_TEMPLATES):
        found.setdefault("style", []).extend(level for t in templates if text.startswith(t.format("")))
    for level, phrases in enumerate(EXPRESSION_PHRASES):
        found.setdefault("expression", []).extend(level for p in phrases if re.search(rf"\b{p}\b", text))
    for name, table in MODIFIER_PHRASES.items():
        for level, phrases in enumerate(table):
            found.setdefault(name, []).extend(level for p in phrases if re.search(rf"(^|\s){p}\b", text))
    return [(-2 if len(set(found[n])) > 1 else found[n][0]) if found[n] else UNMENTIONED for n in ATTRIBUTES]


def test_captions_are_true_of_their_faces():
    labels = random_labels(3000, seed=0)
    texts, mentions = captions_of(labels, np.random.default_rng(1))
    assert compatibility(labels, mentions).diagonal().all()
    for text, record, face in zip(texts, mentions, labels):
        assert said_in(text) == record.tolist(), text                       # the record is what the words say
        assert all(m in (UNMENTIONED, f) for m, f in zip(record, face)), text


def test_attribute_dropout_and_determinism():
    labels = random_labels(3000, seed=2)
    texts, mentions = captions_of(labels, np.random.default_rng(3))
    rates = (mentions != UNMENTIONED).mean(axis=0)
    assert np.all(np.abs(rates - 0.5) < 0.05), rates
    bare = {t for t, m in zip(texts, mentions) if (m == UNMENTIONED).all()}
    assert "a face" in bare and bare <= {"a face", "a picture of a face", "an image of a face"}
    again, _ = captions_of(labels, np.random.default_rng(3))
    assert again == texts
    _, all_said = captions_of(labels[:50], np.random.default_rng(4), mention_prob=1.0)
    assert (all_said == labels[:50]).all()


def test_compatibility_on_hand_made_labels():
    labels = np.array([[0, 1, 2, 3, 0],
                       [4, 0, 0, 0, 1],
                       [1, 2, 1, 2, -1]])             # last face: style unknown (an x̂_0)
    mentions = np.array([[-1, -1, -1, -1, -1],         # "a face"
                         [0, -1, -1, -1, -1],          # very light skin
                         [-1, -1, -1, -1, 1],          # a portrait
                         [4, 0, 0, 0, 1],              # everything about face 1
                         [-1, 2, 1, -1, 0]])           # an open smile with glasses, a photo
    expected = np.array([[1, 1, 0, 0, 0],
                         [1, 0, 1, 1, 0],
                         [1, 0, 1, 0, 1]], dtype=bool)
    assert np.array_equal(compatibility(labels, mentions).numpy(), expected)


# ---- tokenizer -----------------------------------------------------------------------------------------------

def test_tokenizer_round_trip_unknown_words_and_length():
    tokenizer = Tokenizer.default()
    texts, _ = captions_of(random_labels(2000, seed=5), np.random.default_rng(6), mention_prob=1.0)
    ids = tokenizer(texts)
    assert ids.shape == (2000, CONTEXT_LENGTH) and ids.dtype == torch.long
    assert (ids != UNK).all() and ((ids == EOS).sum(dim=1) == 1).all()    # every caption fits, <eos> once
    assert tokenizer.decode(ids) == [" ".join(words_of(t)) for t in texts]
    assert tokenizer.unknown_words(texts + list(SYNTHCLIP_TEMPLATES)) == []
    odd = tokenizer(["A photo of a face with a BEARD, smiling!"])[0]
    assert tokenizer.decode(odd[None]) == ["a photo of a face with a <unk> smiling"]
    assert tokenizer.unknown_words(["a face with a beard", "a hat"]) == ["beard", "hat"]
    assert odd[odd.tolist().index(EOS) + 1:].eq(PAD).all()
    long = tokenizer([" ".join(["face"] * 100)])[0]
    assert long[-1] == EOS and (long[:-1] != PAD).all()                    # cut, as CLIP's tokenizer does


# ---- the loss ------------------------------------------------------------------------------------------------

def loss_written_out(image_emb, text_emb, compatible, scale) -> float:
    """½ [ mean_i Σ_j −q_ij log softmax_j(z_i·) + mean_j Σ_i −p_ij log softmax_i(z_·j) ], pair by pair."""
    n_img, n_txt = compatible.shape
    u = [v / np.sqrt(sum(x * x for x in v)) for v in image_emb.tolist()]
    w = [v / np.sqrt(sum(x * x for x in v)) for v in text_emb.tolist()]
    z = [[scale * sum(a * b for a, b in zip(u[i], w[j])) for j in range(n_txt)] for i in range(n_img)]
    m = compatible.tolist()
    rows = 0.0
    for i in range(n_img):
        log_norm = np.log(sum(np.exp(z[i][k]) for k in range(n_txt)))
        rows += sum(-(m[i][j] / sum(m[i])) * (z[i][j] - log_norm) for j in range(n_txt))
    cols = 0.0
    for j in range(n_txt):
        log_norm = np.log(sum(np.exp(z[k][j]) for k in range(n_img)))
        column = sum(m[k][j] for k in range(n_img))
        cols += sum(-(m[i][j] / column) * (z[i][j] - log_norm) for i in range(n_img))
    return 0.5 * (rows / n_img + cols / n_txt)


def test_contrastive_loss_matches_the_written_out_formula():
    """float64; agreement to 1e-10 (observed ~1e-15)."""
    generator = torch.Generator().manual_seed(0)
    image_emb = torch.randn(7, 5, dtype=torch.float64, generator=generator)
    text_emb = torch.randn(9, 5, dtype=torch.float64, generator=generator)
    compatible = torch.rand(7, 9, generator=generator) < 0.3
    compatible[torch.arange(7), torch.arange(7)] = True
    compatible[0, 7:] = True
    loss = contrastive_loss(image_emb, text_emb, compatible, torch.tensor(13.0, dtype=torch.float64))
    assert abs(loss.item() - loss_written_out(image_emb, text_emb, compatible, 13.0)) < 1e-10


def test_with_one_positive_each_it_is_clips_loss():
    generator = torch.Generator().manual_seed(1)
    image_emb = torch.randn(6, 4, dtype=torch.float64, generator=generator)
    text_emb = torch.randn(6, 4, dtype=torch.float64, generator=generator)
    logits = 20.0 * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T
    clip = (F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.T, torch.arange(6))) / 2
    loss = contrastive_loss(image_emb, text_emb, torch.eye(6, dtype=torch.bool), 20.0)
    assert abs(loss.item() - clip.item()) < 1e-12
    with pytest.raises(ValueError, match="positive"):
        contrastive_loss(image_emb, text_emb, torch.zeros(6, 6, dtype=torch.bool), 20.0)


# ---- the model -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    """A tiny SynthCLIP trained for 200 steps on CPU (no U-Net), its report, and its initial copy."""
    torch.manual_seed(TINY.seed)
    initial = SynthClip(TINY)
    model, report = train_synthclip(TINY, "cpu", eval_images=64, direction_pairs=16, workers=0, log=None)
    return model, report, initial


def held_out_loss(model: SynthClip) -> float:
    images, tokens, compatible, _ = synthclip_batch(10_000, TINY, model.tokenizer)
    model.eval()
    with torch.no_grad():
        return contrastive_loss(*model(images, tokens), compatible, model.logit_scale()).item()


def test_a_tiny_training_run_lowers_the_loss(tiny):
    model, report, initial = tiny
    before, after = held_out_loss(initial), held_out_loss(model)
    assert after < before - 0.3, (before, after)
    assert report["denoiser"] is False and report["config"]["denoise_prob"] == 0.0
    assert set(report["zero_shot"]) == {"clean", "damaged"}
    assert set(report["zero_shot"]["clean"]) == {"all", "photo", "portrait"}
    assert set(report["zero_shot"]["clean"]["all"]) == set(ATTRIBUTES)
    assert 0.0 <= report["smile_direction"]["auc"] <= 1.0


def test_encode_image_keeps_gradients_at_any_size(tiny):
    model, _, _ = tiny
    x_src = torch.rand(3, 3, 40, 40) * 2 - 1
    x_edit = (x_src + 0.1 * torch.randn_like(x_src)).requires_grad_()
    delta_t = text_direction(model.encode_text, "a face", "a smiling face", SYNTHCLIP_TEMPLATES).float()
    loss = (1 - image_direction(model.encode_image, x_src, x_edit).float() @ delta_t).sum()
    loss.backward()
    assert x_edit.grad is not None and x_edit.grad.abs().sum() > 0
    assert model.encode_image(x_src).shape == (3, TINY.embed_dim)


def test_padding_does_not_change_a_text_embedding(tiny):
    model, _, _ = tiny
    tokens = model.tokenizer(["a face", "a portrait of a laughing face with red hair"])
    with torch.no_grad():
        full, short = model.encode_tokens(tokens), model.encode_tokens(tokens[:, :12])
    assert torch.allclose(full, short, atol=1e-5)


def test_save_load_round_trip(tiny, tmp_path):
    model, _, _ = tiny
    path = save_synthclip(model, tmp_path / "synthclip.pt")
    loaded = load_synthclip(path)
    assert torch.load(path, weights_only=True)["kind"] == "synthfaces-synthclip"
    images, _, _, _ = synthclip_batch(3, TINY, model.tokenizer)
    texts = ["a photo of a smiling face with glasses", "a face"]
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), loaded.encode_image(images))
        assert torch.equal(model.encode_text(texts), loaded.encode_text(texts))
    assert loaded.tokenizer == model.tokenizer and loaded.config == model.config


def test_unknown_words_message(tiny):
    model, _, _ = tiny
    assert unknown_words_message(model, ["a photo of a face", "a smiling face"]) is None
    message = unknown_words_message(model, ["a face with a beard", "a bearded face"])
    assert message.startswith("SynthCLIP does not know the words: beard, bearded") and "\n" not in message


def test_missing_synthclip_is_one_line_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.delitem(assets.REGISTRY, SHIPPED_SYNTHCLIP, raising=False)
    for call in (load_synthclip, lambda: load_synthclip(tmp_path / "absent.pt")):
        with pytest.raises(SynthClipMissingError) as caught:
            call()
        assert "\n" not in str(caught.value) and "sdft-lite synthfaces train-synthclip --out" in str(caught.value)
    monkeypatch.setitem(assets.REGISTRY, SHIPPED_SYNTHCLIP, ("0" * 64, "SynthCLIP"))
    monkeypatch.setattr(assets, "ASSET_DIR", tmp_path)                     # registered, but the file is absent
    with pytest.raises(SynthClipMissingError, match="train-synthclip"):
        load_synthclip()


def test_the_command_writes_model_and_report(tmp_path, capsys):
    from sdft_lite.cli import main
    out = tmp_path / "clip" / "synthclip.pt"
    assert main(["synthfaces", "train-synthclip", "--out", str(out), "--steps", "2", "--batch", "16",
                 "--eval-images", "16", "--pairs", "4", "--no-denoiser", "--device", "cpu", "--workers", "0"]) == 0
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert "ROC AUC" in capsys.readouterr().out
    load_synthclip(out)


# ---- the shipped model ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    """The shipped SynthCLIP; SDFT_LITE_SYNTHCLIP_UNDER_TEST=PATH checks another file against the same bar."""
    path = os.environ.get("SDFT_LITE_SYNTHCLIP_UNDER_TEST")
    if path is None and SHIPPED_SYNTHCLIP not in assets.REGISTRY:
        pytest.skip(f"{SHIPPED_SYNTHCLIP} is not registered in sdft_lite/assets.py yet")
    return load_synthclip(path)


class TestShippedSynthClip:
    """QUALITY OF THE SHIPPED MODEL (synthfaces/synthclip.pt, trained on a GPU with the full preset). Not a test of
    the code: a model that misses these bars must not ship. Bars set below what the H200-trained model showed
    (clean 1.000, damaged ≥ 0.984, AUC 1.000, smile − control S_dir 0.57); the quick CPU model misses the
    clean-accuracy bar (expression 0.69, skin 0.92)."""

    CLEAN_ACCURACY = 0.97
    DAMAGED_ACCURACY = 0.93
    SMILE_AUC = 0.95
    SMILE_MARGIN = 0.25  # mean S_dir of smile pairs − mean S_dir of control pairs

    def test_reads_every_attribute_zero_shot(self, shipped):
        table = zero_shot_accuracy(shipped, n=1000, seed=7)
        for kind, bar in (("clean", self.CLEAN_ACCURACY), ("damaged", self.DAMAGED_ACCURACY)):
            for domain, row in table[kind].items():
                for name, accuracy in row.items():
                    assert accuracy >= bar, (kind, domain, name, accuracy)

    def test_the_smile_direction_separates_smiles_from_other_changes(self, shipped):
        check = smile_direction_check(shipped, n=200, seed=7)
        assert check["auc"] >= self.SMILE_AUC, check
        assert check["smile_sdir"] - check["control_sdir"] >= self.SMILE_MARGIN, check

    def test_knows_the_words_of_its_templates(self, shipped):
        assert shipped.unknown_words(list(SYNTHCLIP_TEMPLATES) + ["a smiling face", "a face"]) == []
        assert shipped.name == "synthclip"
