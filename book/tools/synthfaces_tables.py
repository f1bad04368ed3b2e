"""Write `book/generated/synthfaces_reproduction.md`: the paper's tables and figures, their SynthFaces analogues
measured on the GPU (mean ± sd over seeds), and whether each direction the paper reports reproduces.

Reads `results/synthfaces_full/*.json` (written by `bench/synthfaces_reproduce.py`, merged by
`bench/merge_synthfaces_results.py`), and the retention benchmark on a target with a few smiling portraits from
`results/synthfaces_smile_share_02/benchmark.json` where it exists. A direction "agrees" when our difference has
the paper's sign and exceeds twice its standard error (sd/√n of each side, combined); "no clear difference" when
it is within that; otherwise "opposite". Nothing here is typed in except the paper's numbers (from
`reproduction_table.PAPER_TABLES`).

    python book/tools/synthfaces_tables.py
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import myst  # noqa: E402
from reproduction_table import PAPER_TABLES  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "results" / "synthfaces_full"
SCARCE_RESULTS = REPO_ROOT / "results" / "synthfaces_smile_share_02" / "benchmark.json"   # 2% smiling portraits
OUTPUT = REPO_ROOT / "book" / "generated" / "synthfaces_reproduction.md"
FIGURES = ("frontier.png", "forgetting.png", "grid.png")   # copied beside the page as synthfaces_<name>


def figure(name: str, caption: str) -> list[str]:
    """A numbered, captioned MyST figure of ``results/synthfaces_full/<name>.png`` as copied beside the page."""
    return myst.figure(f"generated/synthfaces_{name}.png", f"fig-synthfaces-{name}", caption)


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def stat(stats: dict) -> tuple[float, float, int]:
    sd = stats.get("sd")
    return stats["mean"], (math.nan if sd is None else sd), stats["n"]


def cell(stats: dict | None, digits: int = 2) -> str:
    if not stats or not stats.get("n"):
        return "—"
    mean, sd, _ = stat(stats)
    text = f"{mean:.{digits}f}"
    return text if math.isnan(sd) else f"{text} ± {sd:.{digits}f}"


def direction(a: dict, b: dict, lower_is_better: bool) -> str:
    """Is a better than b (the paper's claim), judged by twice the standard error of the difference?"""
    (ma, sa, na), (mb, sb, nb) = stat(a), stat(b)
    se = math.sqrt((0 if math.isnan(sa) else sa) ** 2 / na + (0 if math.isnan(sb) else sb) ** 2 / nb)
    gain = (mb - ma) if lower_is_better else (ma - mb)
    if abs(gain) <= 2 * se:
        return "no clear difference"
    return "agrees" if gain > 0 else "opposite"


def paper_value(table: str, dataset: str, task: str | None, model: str, metric: str) -> str:
    for paper in PAPER_TABLES:
        if paper.name != table:
            continue
        for row_dataset, row_task, row_model, values in paper.rows:
            if (row_dataset, row_task, row_model) == (dataset, task, model):
                return values[paper.metrics.index(metric)]
    return "—"


def paper_pair(table, task, better, worse, metric) -> str:
    return "; ".join(f"{d} {paper_value(table, d, task, better, metric)} vs {paper_value(table, d, task, worse, metric)}"
                     for d in ("MetFaces", "AAHQ") if paper_value(table, d, task, better, metric) != "—")


def table_rows(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def claims_table(claims: list[tuple[str, str, dict, dict, bool]]) -> list[str]:
    """claims: (what the paper reports, the paper's numbers, ours better side, ours other side, lower is better)."""
    rows = [[what, paper, f"{cell(a, 3)} vs {cell(b, 3)}", direction(a, b, lower)]
            for what, paper, a, b, lower in claims]
    return table_rows(["the paper's claim", "paper", "ours (SynthFaces, mean ± sd)", "direction"], rows)


def scarce_smiles_section(plain: dict, scarce: dict) -> list[str]:
    """The retention table again, fine-tuned on a limited target in which a few portraits smile (MetFaces has smiles
    scarcely, not never): keep smile and the smiling share of samples beside the plain target's, per model.
    plain, scarce: benchmark.json contents (``summary`` by model label)."""
    a, b = plain["summary"], scarce["summary"]
    share = scarce["config"]["finetune"]["target_smile_share"]
    seeds = len(scarce["config"]["seeds"])
    models = [m for m in ("naive", "SDFT λ=0.1", "SDFT λ=0.3", "SDFT λ=1", "SDFT λ=1, no aux", "SDFT λ=3",
                          "SDFT λ=10") if m in a and m in b]
    out = ["", f"### The same benchmark with {share:.0%} smiling portraits in the limited target", "",
           f"`bench/synthfaces_reproduce.py --parts benchmark --limited-smile-share {share:g}`, {seeds} seeds, "
           f"{scarce['hardware']}; everything else as above (`results/synthfaces_smile_share_02/`). Of the "
           f"{scarce['config']['finetune']['num_images']:,} training portraits, "
           f"{scarce['data']['checks']['limited_train_faces_showing_absent']['expression']} smile; \"smiling "
           f"samples\" is the share of the {scarce['config']['num_noises']:,} shared-noise samples that smile (the "
           f"source model: {cell(b['source']['presence_expression'])}).", ""]
    out += table_rows(
        ["model", "keep smile, no smiles", f"keep smile, {share:.0%}", "smiling samples, no smiles",
         f"smiling samples, {share:.0%}", "FD limited ↓, no smiles", f"FD limited ↓, {share:.0%}"],
        [[m, cell(a[m]["retain_expression"], 3), cell(b[m]["retain_expression"], 3),
          cell(a[m]["presence_expression"], 3), cell(b[m]["presence_expression"], 3),
          cell(a[m]["fd_limited"]), cell(b[m]["fd_limited"])] for m in models])
    out += ["", *claims_table([
        (f"SDFT keeps what the target has scarcely ({share:.0%} smiles)", "Fig. 2 (qualitative)",
         b["SDFT λ=0.1"]["retain_expression"], b["naive"]["retain_expression"], False),
        ("… at λ = 1", "", b["SDFT λ=1"]["retain_expression"], b["naive"]["retain_expression"], False),
        ("… as realistic as naive (FD limited)", "", b["SDFT λ=1"]["fd_limited"], b["naive"]["fd_limited"], True),
    ])]
    return out


def main() -> int:
    bench, translation = load("benchmark.json"), load("translation.json")
    distance, forgetting = load("pair_distance.json"), load("forgetting.json")
    s, t, p = bench["summary"], translation["summary"], distance["summary"]
    seeds = len(bench["config"]["seeds"])
    hardware = bench["hardware"]
    noises, steps = bench["config"]["num_noises"], bench["config"]["sample_steps"]
    out = [
        "<!-- generated by book/tools/synthfaces_tables.py from results/synthfaces_full/; do not edit -->",
        f"All numbers: mean ± sd over {seeds} fine-tuning seeds, measured on {hardware}; every model fine-tuned "
        f"{bench['config']['finetune']['steps']} steps × batch {bench['config']['finetune']['batch']} from the "
        f"shipped source model; {noises} shared noises sampled with {steps}. Files: `results/synthfaces_full/` "
        "(each JSON names its command, commit, device and wall time). \"Retention\" is the fraction of shared "
        "noises whose source sample shows an attribute the limited target lacks and whose fine-tuned sample "
        "still shows it; \"FD\" is the Fréchet distance of the realism net's features to held-out portraits "
        "(lower = more realistic).",
        "",
        "### Table 3 analogue: unconditional generation from shared noise",
        "",
    ]
    models = [m for m in ("scratch", "naive", "SDFT λ=0.1", "SDFT λ=1", "SDFT λ=3", "SDFT λ=10") if m in s]
    out += table_rows(
        ["model", "FD full ↓", "FD limited ↓", "keep dark skin ↑", "keep eyewear ↑", "keep smile ↑",
         "portrait style", "feature distance to source ↓"],
        [[m, cell(s[m]["fd_full"]), cell(s[m]["fd_limited"]), cell(s[m]["retain_dark_skin"]),
          cell(s[m]["retain_eyewear"]), cell(s[m]["retain_expression"]), cell(s[m]["style_rate"]),
          cell(p.get(m, {}).get("realism_feature_distance"), 3)] for m in models])
    out += ["", "The paper's λ is 0.1; on SynthFaces λ = 0.1 is almost naive fine-tuning, λ = 1 is the first "
            "setting that keeps clearly more (see the frontier below).", ""]
    out += claims_table([
        ("SDFT more realistic than naive (FID)", paper_pair("Table 3", None, "SDFT", "Naive Fine-Tune", "FID"),
         s["SDFT λ=0.1"]["fd_full"], s["naive"]["fd_full"], True),
        ("… at λ = 1", "", s["SDFT λ=1"]["fd_full"], s["naive"]["fd_full"], True),
        ("SDFT more realistic than scratch (FID)", paper_pair("Table 3", None, "SDFT", "Scratch", "FID"),
         s["SDFT λ=0.1"]["fd_full"], s["scratch"]["fd_full"], True),
        ("SDFT samples closer to the source's (LPIPS)", paper_pair("Table 3", None, "SDFT", "Naive Fine-Tune",
                                                                   "LPIPS"),
         p["SDFT λ=0.1"]["realism_feature_distance"], p["naive"]["realism_feature_distance"], True),
        ("… at λ = 1", "", p["SDFT λ=1"]["realism_feature_distance"], p["naive"]["realism_feature_distance"], True),
        ("SDFT keeps what the target lacks (Fig. 7, qualitative)", "shown in images",
         s["SDFT λ=0.1"]["retain_mean"], s["naive"]["retain_mean"], False),
        ("… at λ = 1", "", s["SDFT λ=1"]["retain_mean"], s["naive"]["retain_mean"], False),
    ])
    out += ["", "### Table 1 analogue: translation of held-out photos (SDEdit and EGSDE, t0 = "
            f"{translation['t0']}, {translation['steps']}, {translation['n_photos']} photos)", ""]
    out += table_rows(
        ["method · model", "PSNR ↑", "SSIM ↑", "attributes kept ↑", "portrait style", "FD full ↓"],
        [[k, cell(v["PSNR"]), cell(v["SSIM"], 3), cell(v["keep_mean"], 3), cell(v["style_rate"]),
          cell(v["fd_full"], 1)] for k, v in t.items()])
    out += [""]
    claims = []
    for method in ("SDEdit", "EGSDE"):
        for lam in ("0.1", "1"):
            ours, naive = t[f"{method} · SDFT λ={lam}"], t[f"{method} · naive"]
            claims += [(f"{method}: SDFT (λ = {lam}) more faithful than naive (PSNR)",
                        paper_pair("Table 1", method, "SDFT", "Naive Fine-Tune", "PSNR") if lam == "0.1" else "",
                        ours["PSNR"], naive["PSNR"], False),
                       (f"{method}: … (SSIM)", paper_pair("Table 1", method, "SDFT", "Naive Fine-Tune", "SSIM")
                        if lam == "0.1" else "", ours["SSIM"], naive["SSIM"], False),
                       (f"{method}: … keeps more attributes", "", ours["keep_mean"], naive["keep_mean"], False),
                       (f"{method}: … more realistic (FID)",
                        paper_pair("Table 1", method, "SDFT", "Naive Fine-Tune", "FID") if lam == "0.1" else "",
                        ours["fd_full"], naive["fd_full"], True)]
    out += claims_table(claims)
    ablation = bench["config"]["ablation_lam"]
    label = f"SDFT λ={ablation:g}"
    out += ["", f"### Table 4 analogue: the distillation weighting (λ = {ablation:g})", ""]
    rows = {"constant": f"{label}, constant w", "min-SNR-5": f"{label}, min_snr w", "SDFT (P2-form)": label}
    out += table_rows(["weighting", "FD full ↓", "retention (mean of 3) ↑", "portrait style"],
                      [[name, cell(s[k]["fd_full"]), cell(s[k]["retain_mean"]), cell(s[k]["style_rate"])]
                       for name, k in rows.items()])
    out += [""]
    out += claims_table([
        ("SDFT's weighting more realistic than constant (FID)", paper_pair("Table 4", None, "SDFT", "Constant", "FID"),
         s[label]["fd_full"], s[rows["constant"]]["fd_full"], True),
        ("… than min-SNR-5 (FID)", paper_pair("Table 4", None, "SDFT", "Min-SNR-5", "FID"),
         s[label]["fd_full"], s[rows["min-SNR-5"]]["fd_full"], True),
    ])
    out += ["", "Constant and min-SNR weights distil strongly at small t, where the style lives: they keep the "
            "source's attributes *and its photo style* (low portrait rate), so realism suffers, as in the paper.",
            "", f"### Fig. 8 analogue: the auxiliary input (λ = {ablation:g})", ""]
    out += claims_table([("the auxiliary term keeps more of what the target lacks", "Fig. 8 (qualitative)",
                          s[label]["retain_mean"], s[f"{label}, no aux"]["retain_mean"], False),
                         ("… dark skin", "", s[label]["retain_dark_skin"], s[f"{label}, no aux"]["retain_dark_skin"],
                          False)])
    naive_curve = forgetting["curves"]["naive"]
    sdft_curve = forgetting["curves"].get("SDFT λ=1", {})
    out += ["", "### Beyond the paper: the λ frontier and when naive fine-tuning forgets", "",
            *figure("frontier", "The λ frontier of the full benchmark: what each model keeps of the attributes the "
                                "target lacks against its realism and style, mean ± sd over the seeds."),
            *figure("forgetting", "When naive fine-tuning forgets: retention after 100 to 800 fine-tuning steps, "
                                  "naive against SDFT λ = 1 (the table below).")]
    out += table_rows(["fine-tuning steps"] + [str(k) for k in naive_curve],
                      [["naive: retention"] + [cell(v["retain_mean"]) for v in naive_curve.values()],
                       ["SDFT λ = 1: retention"] + [cell(v["retain_mean"]) for v in sdft_curve.values()]])
    out += ["", *figure("grid", "Seed-0 samples of every model from the same eight noises (DDIM, η = 0): each "
                                "column one noise, each row a model, so a row shows what that model kept.")]
    if SCARCE_RESULTS.is_file():
        out += scarce_smiles_section(bench, json.loads(SCARCE_RESULTS.read_text(encoding="utf-8")))
    for name in FIGURES:
        shutil.copy(RESULTS / name, OUTPUT.parent / f"synthfaces_{name}")
    OUTPUT.write_text("\n".join(out) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
