"""Diversity (intra-cluster LPIPS, Ojha et al. 2021) and memorisation (nearest training image; near-duplicate when
nearest / second-nearest < 1/3, Gu et al. 2023) on constructed cases with known answers: identical sets, copies
with noise, disjoint sets (rendered faces against noise), one collapsed cluster. The vectorised matrices are checked
against pair-by-pair loops (LPIPS against ``lpips.LPIPS.forward``), the stand-in distance must be named as such, and
``sdft-lite evaluate`` runs end to end on folders written here.

LPIPS runs on a seeded random trunk (the ImageNet trunk cannot be downloaded here); the stand-in is the SynthFaces
realism net shipped with the package."""
import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from sdft_lite import cli
from sdft_lite.assets import asset_path
from sdft_lite.metrics import distances
from sdft_lite.metrics.distances import feature_distance, lpips_distance, pixel_l2
from sdft_lite.metrics.diversity import intra_cluster_distance
from sdft_lite.metrics.evaluate import PairedSettings, SetSettings, evaluate, format_table
from sdft_lite.metrics.images import list_images, load_images
from sdft_lite.metrics.memorisation import memorisation_report, nearest_training
from sdft_lite.metrics.perceptual import build_lpips
from sdft_lite.sample import save_images
from sdft_lite.synthfaces import render
from sdft_lite.synthfaces.realism import DISTANCE_STAGES, load_realism, realism_distance

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXACT = 1e-12      # float64 distances between identical images (differences, or float64 products of equal rows)
FLOAT32 = 1e-6     # vectorised vs pair-by-pair distances from float32 activations (absolute; values ~0.1)
NOISE = 0.03       # std of the noise on "copies" ([-1, 1] units): well below the spacing of different faces
COPIES = 3         # copies of each training image


@pytest.fixture(scope="module")
def train():
    return render(10, style="portrait", size=32, seed=0, output="tensor")[0]


@pytest.fixture(scope="module")
def fresh():
    """Faces the training set does not contain: a diverse sample set."""
    return render(60, style="portrait", size=32, seed=0, start=100, output="tensor")[0]


@pytest.fixture(scope="module")
def realism():
    return realism_distance()


@pytest.fixture(scope="module")
def realism_net():
    return load_realism(asset_path("synthfaces/realism.pt"))


@pytest.fixture(scope="module")
def random_lpips():
    """Built once: a random VGG-16 takes seconds to initialise on one thread."""
    return build_lpips("vgg", backbone="random", device="cpu")


def noisy_copies(train, seed=0):
    g = torch.Generator().manual_seed(seed)
    copies = train.repeat(COPIES, 1, 1, 1)
    return (copies + NOISE * torch.randn(copies.shape, generator=g)).clamp(-1, 1)


def noise_images(n, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------------------------------------------------------------------------------------------------------------
# The matrices against pair-by-pair loops


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_matrix_equals_lpips_forward_pair_by_pair(net, random_lpips):
    """LPIPS = ‖e(x) − e(y)‖² (distances.py): every entry of the matrix is lpips.LPIPS.forward on that pair."""
    model = random_lpips if net == "vgg" else build_lpips(net, backbone="random", device="cpu")
    x, y = noise_images(5, seed=1), noise_images(3, seed=2)
    matrix = lpips_distance(model, batch_size=2).matrix(x, y)
    with torch.no_grad():
        loop = torch.tensor([[model(x[i:i + 1], y[j:j + 1]).item() for j in range(3)] for i in range(5)])
    torch.testing.assert_close(matrix, loop.double(), rtol=0, atol=FLOAT32)
    assert lpips_distance(model).matrix(x).diagonal().abs().max() <= EXACT


def test_blocks_and_cache_do_not_change_the_matrix(realism, fresh, monkeypatch):
    whole = realism.matrix(fresh[:20], fresh[20:33])
    monkeypatch.setattr(distances, "CACHE_BYTES", 0)  # every block of the second set embedded again
    torch.testing.assert_close(replace(realism, batch_size=3).matrix(fresh[:20], fresh[20:33]), whole,
                               rtol=0, atol=FLOAT32)


def test_feature_distances_on_vectors(train):
    """A plugged-in extractor's features: cosine (1 − cos) and Euclidean, named "{name} {metric}"; the realism
    net's Euclidean option is zero on identical images."""
    flat = lambda images: images.flatten(1)  # noqa: E731
    x, y = noise_images(4, seed=3).double(), noise_images(3, seed=4).double()
    cos = feature_distance(flat, "flat")
    assert cos.name == "flat cosine" and cos.squared and cos.short == "flat cosine"
    want = 1 - F.cosine_similarity(x.flatten(1)[:, None], y.flatten(1)[None], dim=2)
    torch.testing.assert_close(cos.matrix(x, y), want, rtol=0, atol=EXACT)
    euclid = feature_distance(flat, "flat", "euclidean")
    torch.testing.assert_close(euclid.matrix(x, y), torch.cdist(x.flatten(1), y.flatten(1)), rtol=0, atol=EXACT)
    with pytest.raises(ValueError, match="feature metric"):
        feature_distance(flat, "flat", "manhattan")
    realism_euclid = realism_distance(metric="euclidean")
    assert realism_euclid.name == "synthfaces-realism euclidean" and not realism_euclid.squared
    assert realism_euclid.matrix(train).diagonal().max() == 0


def realism_pair(model, a, b):
    """1/L Σ_l mean_p (1 − cos) over the realism net's stage maps, for one pair, written out independently."""
    total, h_a, h_b = 0.0, model.backbone.stem(a[None]), model.backbone.stem(b[None])
    for index, stage in enumerate(model.backbone.stages, start=1):
        h_a, h_b = stage(h_a), stage(h_b)
        if index in DISTANCE_STAGES:
            total += float((1 - F.cosine_similarity(h_a, h_b, dim=1, eps=1e-30)).mean())
    return total / len(DISTANCE_STAGES)


def brute_force(samples, train, pair):
    """The reference procedure as loops: argmin over training images (first on ties), then all pairs i < j."""
    assignment = []
    for s in samples:
        best, best_j = math.inf, -1
        for j, t in enumerate(train):
            d = pair(s, t)
            if d < best:
                best, best_j = d, j
        assignment.append(best_j)
    means = []
    for k in range(len(train)):
        members = [s for s, a in zip(samples, assignment) if a == k]
        pairs = [pair(members[i], members[j]) for i in range(len(members)) for j in range(i + 1, len(members))]
        means.append(sum(pairs) / len(pairs) if pairs else math.nan)
    return assignment, means


@pytest.mark.parametrize("which", ["pixel", "realism", "lpips"])
def test_clusters_equal_a_brute_force_loop(which, train, fresh, realism, realism_net, random_lpips):
    samples, centres = (fresh[:8], train[:3]) if which == "lpips" else (fresh[:16], train[:4])
    distance, pair = {
        "pixel": (pixel_l2(), lambda a, b: float((a - b).double().pow(2).mean().sqrt())),
        "realism": (realism, lambda a, b: realism_pair(realism_net, a, b)),
        "lpips": (lpips_distance(random_lpips), lambda a, b: float(random_lpips(a[None], b[None]))),
    }[which]
    with torch.no_grad():
        assignment, means = brute_force(samples, centres, pair)
    result = intra_cluster_distance(samples, centres, distance, max_per_cluster=None)
    assert list(result.cluster_sizes) == [assignment.count(k) for k in range(len(centres))]
    for got, want in zip(result.cluster_means, means):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=FLOAT32)
    used = [m for m in means if not math.isnan(m)]
    assert result.clusters_used == len(used) >= 2
    assert result.value == pytest.approx(sum(used) / len(used), abs=FLOAT32)


def test_cluster_cap_draws_a_seeded_subset(train, fresh):
    """At most max_per_cluster members enter the pairwise mean (50 in the authors' code); the draw is seeded."""
    distance = pixel_l2()
    capped = [intra_cluster_distance(fresh, train[:2], distance, max_per_cluster=5, seed=s) for s in (0, 0, 1)]
    assert capped[0].cluster_means == capped[1].cluster_means != capped[2].cluster_means
    assert sum(capped[0].cluster_sizes) == len(fresh) and capped[0].max_per_cluster == 5


# ---------------------------------------------------------------------------------------------------------------
# Constructed cases


def test_identical_sets(train, realism):
    """Samples = the training set: every sample is its own nearest image at distance 0 and a near-duplicate;
    each cluster holds one sample, so no cluster has a pair and the mean is NaN (the reference drops them)."""
    report = memorisation_report(train, train, realism)
    for block in report.by_distance.values():
        assert torch.equal(block.nearest, torch.arange(len(train)))
        assert block.d1.abs().max() <= EXACT and block.share == 1.0
    result = intra_cluster_distance(train, train, realism)
    assert result.cluster_sizes == (1,) * len(train) and result.clusters_used == 0 and math.isnan(result.value)


@pytest.mark.parametrize("which", ["realism", "pixel"])
def test_clusters_of_identical_copies_score_zero(which, train, realism):
    distance = realism if which == "realism" else pixel_l2()
    result = intra_cluster_distance(train.repeat(COPIES, 1, 1, 1), train, distance)
    assert result.cluster_sizes == (COPIES,) * len(train)
    assert max(result.cluster_means) <= EXACT and result.value <= EXACT


def test_copies_with_noise_are_found(train, fresh, realism):
    """Each noisy copy is assigned to its source, every copy is a near-duplicate under both distances, and the
    copies' intra-cluster distance is a small fraction of a diverse set's."""
    copies = noisy_copies(train)
    report = memorisation_report(copies, train, realism)
    assert list(report.by_distance) == ["synthfaces-realism cosine", "pixel-l2"]
    for block in report.by_distance.values():
        assert torch.equal(block.nearest, torch.arange(len(train)).repeat(COPIES))
        assert block.share == 1.0 and (block.d1 > 0).all()
    assert report.by_distance["pixel-l2"].d1.mean() == pytest.approx(NOISE, rel=0.1)  # RMS of the added noise
    copied, diverse = intra_cluster_distance(copies, train, realism), intra_cluster_distance(fresh, train, realism)
    assert copied.value < 0.2 * diverse.value


@pytest.mark.parametrize("which", ["realism", "pixel", "lpips"])
def test_disjoint_sets_have_no_near_duplicates(which, train, realism, random_lpips):
    """Noise images against rendered faces: no near-duplicate; under the realism net and pixel L2 every noise
    image is also farther from the faces than any face is from its nearest other face (a random LPIPS trunk
    makes no such promise)."""
    distance = {"realism": realism, "pixel": pixel_l2(), "lpips": lpips_distance(random_lpips)}[which]
    block = memorisation_report(noise_images(30), train, distance).by_distance[distance.name]
    assert block.share == 0.0
    if which != "lpips":
        assert block.d1.min() > block.train_nearest.max()


def test_a_collapsed_cluster_lowers_diversity(train, fresh, realism):
    """Replace the members of the largest cluster by copies of one of them: that cluster scores 0, the others do
    not change, and the mean drops. Collapsing every sample onto three faces drops it further."""
    diverse = intra_cluster_distance(fresh, train, realism)
    k = max(range(len(train)), key=lambda c: diverse.cluster_sizes[c])
    members = realism.matrix(fresh, train).argmin(1) == k
    collapsed_set = fresh.clone()
    collapsed_set[members] = fresh[members.nonzero()[0]]
    collapsed = intra_cluster_distance(collapsed_set, train, realism)
    assert collapsed.cluster_sizes == diverse.cluster_sizes
    assert collapsed.cluster_means[k] <= EXACT < diverse.cluster_means[k]
    assert [m for c, m in enumerate(collapsed.cluster_means) if c != k] == \
           [m for c, m in enumerate(diverse.cluster_means) if c != k]
    assert collapsed.value < diverse.value
    three_faces = noisy_copies(fresh[:3].repeat(7, 1, 1, 1), seed=1)
    assert intra_cluster_distance(three_faces, train, realism).value < 0.2 * diverse.value


# ---------------------------------------------------------------------------------------------------------------
# The near-duplicate rule and the report


def test_near_duplicate_ratio_rule():
    """d1/d2 < δ; square roots first for a squared distance; 0/0 counts as 0; δ is a parameter."""
    matrix = torch.tensor([[0.1, 0.5, 0.9], [0.2, 0.5, 0.9], [0.0, 0.0, 1.0], [0.0, 0.3, 1.0]], dtype=torch.float64)
    train = torch.ones(3, 3, dtype=torch.float64)
    block = nearest_training(matrix, train, "test", squared=False)
    assert block.near_duplicate.tolist() == [True, False, True, True]
    assert block.ratio.tolist() == pytest.approx([0.2, 0.4, 0.0, 0.0])
    squared = nearest_training(matrix.pow(2), train, "test", squared=True)
    torch.testing.assert_close(squared.ratio, block.ratio)
    assert nearest_training(matrix, train, "test", False, ratio_threshold=0.5).share == 1.0
    with pytest.raises(ValueError, match="at least 2 training images"):
        nearest_training(matrix[:, :1], train[:1, :1], "test", squared=False)


def test_report_json_and_figure(train, fresh, realism):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    report = memorisation_report(fresh[:12], train, realism, bins=8,
                                 sample_names=[f"s{i}" for i in range(12)], train_names=[f"t{j}" for j in range(10)])
    data = json.loads(json.dumps(report.to_json()))
    block = data["distances"]["synthfaces-realism cosine"]
    assert sum(block["histogram"]["samples"]) == 12 and sum(block["histogram"]["train"]) == 10
    assert len(block["histogram"]["edges"]) == 9 and len(block["per_sample"]) == 12
    assert block["per_sample"][0]["nearest"].startswith("t") and block["ratio_threshold"] == pytest.approx(1 / 3)
    before = plt.get_fignums()
    figure = report.figure()
    assert isinstance(figure, Figure) and len(figure.axes) == 4 and plt.get_fignums() == before


# ---------------------------------------------------------------------------------------------------------------
# The stand-in distance is named, and `sdft-lite evaluate` end to end


@pytest.fixture
def no_lpips_trunk(tmp_path, monkeypatch):
    """An empty torchvision cache: LPIPS's ImageNet trunk is missing, as it is on any machine without it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture
def folders(tmp_path, train, fresh):
    """train/: 10 faces; samples/: a noisy copy of each plus 20 new faces (PNG, as the samplers write them)."""
    save_images(train, tmp_path / "train")
    save_images(torch.cat([noisy_copies(train)[:10], fresh[:20]]), tmp_path / "samples")
    return tmp_path


def test_the_stand_in_is_named_never_lpips(folders, no_lpips_trunk, realism):
    settings = SetSettings(features=lambda device, metric: realism_distance(metric=metric, device=device))
    report = evaluate(folders / "samples", train_dir=folders / "train", print_table=False, sets=settings)
    assert [r.metric for r in report.rows] == ["diversity", "memorisation", "memorisation_l2"]
    assert report.unavailable == {}
    for row in report.rows:
        assert "LPIPS" not in row.title and "lpips" not in row.model
    assert report.rows[0].title == "intra-cluster distance (synthfaces-realism cosine)"
    assert "vgg16-397923af.pth" in report.rows[0].details["distance_note"]
    assert "NOT LPIPS" in format_table(report)

    no_stand_in = evaluate(folders / "samples", train_dir=folders / "train", print_table=False)
    assert set(no_stand_in.unavailable) == {"diversity", "memorisation"}
    assert "vgg16-397923af.pth" in no_stand_in.unavailable["diversity"]
    assert [r.metric for r in no_stand_in.rows] == ["memorisation_l2"]  # pixel L2 needs no network


def test_lpips_is_used_when_its_trunk_is_present(folders, no_lpips_trunk, tmp_path):
    """With torchvision's AlexNet file in the cache (here one the test writes), --distance auto is LPIPS."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    state = {k: (v if k.startswith("features") else torch.zeros(()).expand(v.shape))
             for k, v in alexnet(weights=None).state_dict().items()}
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(state, checkpoints / "alexnet-owt-7be5be79.pth")
    settings = SetSettings(features=lambda device, metric: pytest.fail("the stand-in must not be built"))
    report = evaluate(folders / "samples", train_dir=folders / "train", print_table=False,
                      sets=settings, metrics=["diversity"], paired=PairedSettings(lpips_net="alex"))
    assert report.rows[0].title == "intra-cluster LPIPS" and report.rows[0].model == "lpips-alex"


def test_cli_end_to_end(folders, no_lpips_trunk, realism, capsys):
    out, histogram = folders / "results.json", folders / "memorisation.png"
    status = cli.main(["evaluate", "--samples", str(folders / "samples"), "--train", str(folders / "train"),
                       "--metrics", "diversity", "memorisation", "--device", "cpu", "--out", str(out),
                       "--histogram", str(histogram)])
    assert status == 0 and histogram.stat().st_size > 0
    table = capsys.readouterr().out
    assert "intra-cluster distance (synthfaces-realism cosine)" in table and "NOT LPIPS" in table
    metrics = json.loads(out.read_text())["metrics"]

    samples = load_images(list_images(folders / "samples"))
    train = load_images(list_images(folders / "train"))
    expected = intra_cluster_distance(samples, train, realism)
    assert metrics["diversity"]["value"] == pytest.approx(expected.value, abs=EXACT)
    assert metrics["diversity"]["details"]["cluster_sizes"] == list(expected.cluster_sizes)
    blocks = memorisation_report(samples, train, realism).by_distance
    for key, name in (("memorisation", "synthfaces-realism cosine"), ("memorisation_l2", "pixel-l2")):
        assert metrics[key]["value"] == pytest.approx(blocks[name].share, abs=EXACT) == 10 / 30
        per_sample = metrics[key]["details"]["per_sample"]
        assert [p["nearest"] for p in per_sample[:10]] == [f"{j:06d}.png" for j in range(10)]
        assert all(p["near_duplicate"] for p in per_sample[:10]) and not any(p["near_duplicate"]
                                                                             for p in per_sample[10:])

    status = cli.main(["evaluate", "--samples", str(folders / "samples"), "--train", str(folders / "train"),
                       "--metrics", "diversity", "memorisation", "--distance", "lpips", "--device", "cpu"])
    assert status == 2  # LPIPS asked for by name, its trunk missing: reported, no stand-in
    table = capsys.readouterr().out
    assert "vgg16-397923af.pth" in table and "near-duplicates (pixel L2)" in table


def test_input_errors_are_explicit(folders):
    with pytest.raises(ValueError, match="--train"):
        evaluate(folders / "samples", metrics=["diversity"], print_table=False)
    with pytest.raises(ValueError, match="features"):
        evaluate(folders / "samples", train_dir=folders / "train", metrics=["memorisation"], print_table=False,
                 sets=SetSettings(distance="features"))
