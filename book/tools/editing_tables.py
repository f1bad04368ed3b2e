"""Write `book/generated/editing_tables.md`: Asyrp's smile edit on SynthFaces, judged honestly — the smile-survival
curves, the source-model bar and the Table 2 analogue, mean ± sd over seeds, with the run's command, commit, device
and wall time, and the verdict on the paper's claim computed from the numbers.

Reads `results/synthfaces_editing/editing.json` (written by `bench/asyrp_editing.py`). Nothing here is typed in.

    python book/tools/editing_tables.py
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from sdft_lite.editing.asyrp import AsyrpConfig
from sdft_lite.experiments.editing_table import SHIPPED_SIZE, SOURCE_BAR, plain_label, sized

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "results" / "synthfaces_editing" / "editing.json"
SMILE_SHARE = RESULTS.parent / "smile_share_02" / "editing.json"   # the limited target with a few smiles
OUTPUT = REPO_ROOT / "book" / "generated" / "editing_tables.md"
ASYRP_RECIPE = AsyrpConfig()   # λ_L1 and c of an entry that names no recipe
DIRECTION_NAMES = {"synthclip": "SynthCLIP text (judged by the classifier)",
                   "classifier": "classifier, all heads (judged by SynthCLIP)"}
SHORT_DIRECTION_NAMES = {"synthclip": "SynthCLIP text", "classifier": "classifier"}


def cell(stats: dict, digits: int = 2) -> str:
    """mean ± sd (no sd for one seed)."""
    text = f"{stats['mean']:.{digits}f}"
    return text + (f" ± {stats['sd']:.{digits}f}" if stats.get("n", 1) > 1 else "")


def mean(stats: dict, digits: int = 2) -> str:
    """The mean alone: the tables give ± sd only where the verdict reads it, so that they fit the page (every sd is
    in the results file)."""
    return f"{stats['mean']:.{digits}f}"


def survival_table(curves: dict) -> list[str]:
    ts = sorted({int(t) for curve in curves.values() for t in curve})
    lines = ["| model | " + " | ".join(f"t = {t}" for t in ts) + " |", "|---|" + "---|" * len(ts)]
    for model, curve in curves.items():
        lines.append(f"| {model} | " + " | ".join(f"{curve[str(t)] if str(t) in curve else curve[t]:.2f}"
                                                   for t in ts) + " |")
    return lines


def setting_words(e: dict) -> str:
    """An entry's window, its Δh recipe where it is not Asyrp's (λ_L1 = 3, full strength c = 1), its image size
    where it is not the shipped models' 32 px, and its held-out faces where they are not the test faces."""
    words = f"{e['window'][0]}–{e['window'][1]}"
    if "lambda_l1" in e:
        words += f", λ_L1 {e['lambda_l1']:g}, c {e['scale']:g}"
    if "size" in e:
        words += f", {e['size']} px"
    if "split" in e:
        words += f", {e['split']} photos"
    return words


def bar_table(summary: list[dict]) -> list[str]:
    lines = ["| direction | window | smiling | own reading | recon. | kept | PSNR | FD | fails |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in sorted((e for e in summary if e["part"] == "bar"), key=lambda e: e.get("size", 32)):   # stable
        failed = ", ".join(k.split(" ")[0] for k, ok in e["bar"].items() if not ok) or "—"
        lines.append(f"| {SHORT_DIRECTION_NAMES[e['direction_kind']]} | {setting_words(e)} | "
                     f"{cell(e['edit_smiling'], 3)} | {mean(e['edit_smiling_by_trainer'], 3)} | "
                     f"{mean(e['reconstruction_smiling'], 3)} | {mean(e['edit_kept_mean'], 3)} | "
                     f"{mean(e['edit_psnr_db'], 1)} | {mean(e['edit_realism_fd'])} | {failed} |")
    return lines


def bar_reading(result: dict) -> str:
    """What the bar's classifier-direction rows say, a paragraph per source model size (the shipped 32-px model
    first; each size is named when there is more than one)."""
    sizes = by_size([e for e in result["summary"] if e["part"] == "bar" and e["direction_kind"] == "classifier"])
    renderer = result.get("renderer_edit", {})
    paragraphs = []
    for size, entries in sizes.items():
        test = [e for e in entries if "split" not in e]
        reading = size_reading(test, renderer.get(sized("source", size), {}),
                               size if len(sizes) > 1 else None) if test else ""
        paragraphs.append((reading + held_out_choice([e for e in entries if "split" in e], test)).strip())
    return "\n\n".join(paragraphs)


def edit_setting(e: dict) -> tuple:
    """What an edit did, whichever held-out faces it was scored on: model, direction, window, Δh recipe (Asyrp's
    where the entry names none) and size."""
    return (e["model"], e["direction_kind"], tuple(e["window"]), e.get("lambda_l1", ASYRP_RECIPE.lambda_l1),
            e.get("scale", ASYRP_RECIPE.scale), e.get("size", SHIPPED_SIZE))


def held_out_choice(validation: list[dict], test: list[dict]) -> str:
    """The setting the validation photos choose (of those passing every criterion there, the one with the most
    smiles: the rule the table's window follows) and what it scores on the test photos, which chose nothing."""
    if not validation:
        return ""
    passing = [e for e in validation if all(e["bar"].values())]
    if not passing:
        return (f" On the validation photos no setting passes ({len(validation)} tried), so a pass on the test "
                "photos above is not a held-out choice.")
    chosen = max(passing, key=lambda e: e["edit_smiling"]["mean"])
    words = f" **Chosen on the validation photos** (faces the test rows never see): {setting_words(chosen)}"
    twin = next((e for e in test if edit_setting(e) == edit_setting(chosen)), None)
    if twin is None:
        return words + "; it has no run on the test photos yet."
    failed = [k for k, ok in twin["bar"].items() if not ok]
    return words + (f"; on the test photos it {'passes' if not failed else 'fails ' + ', '.join(failed)} "
                    f"(smiling {cell(twin['edit_smiling'], 3)}, kept {twin['edit_kept_mean']['mean']:.3f}, PSNR "
                    f"{twin['edit_psnr_db']['mean']:.1f} dB over {twin['seeds']} seeds).")


def size_reading(entries: list[dict], perfect_by_judge: dict, size: int | None) -> str:
    """One source model's bar: the settings that pass, or the most any setting kept, against what the plain
    reconstruction keeps and what the renderer's perfect edit scores with the same judge. ``size``: named when
    the page has more than one."""
    at = f"At {size} px, " if size else ""
    passing = [setting_words(e) for e in entries if all(e["bar"].values())]
    if passing:
        recon = entries[0]   # every setting of a model edits the same faces: one reconstruction
        return (f"**{at}{'t' if at else 'T'}he bar is passed** by the classifier direction with " +
                "; ".join(passing) + f". Its plain reconstruction (no Δh) keeps "
                f"{recon['reconstruction_kept_mean']['mean']:.3f}, PSNR {recon['reconstruction_psnr_db']['mean']:.1f}"
                f" dB, FD {recon['reconstruction_realism_fd']['mean']:.2f}: the edit's FD is read against it.")
    most = max(entries, key=lambda e: e["edit_kept_mean"]["mean"])
    smiling = [e for e in entries if e["bar"][SOURCE_BAR.name("smiling")]]
    words = (f"**{at}{'n' if at else 'N'}o setting passes the bar.** Over the {len(entries)} classifier-direction "
             f"settings, the most any keeps is {most['edit_kept_mean']['mean']:.3f} ({setting_words(most)}, smiling "
             f"{most['edit_smiling']['mean']:.2f})")
    if smiling:
        best = max(smiling, key=lambda e: e["edit_kept_mean"]["mean"])
        words += (f"; of those that make ≥ {SOURCE_BAR.smiling:g} smile, {best['edit_kept_mean']['mean']:.3f} "
                  f"({setting_words(best)})")
    recon = max(e["reconstruction_kept_mean"]["mean"] for e in entries)
    words += (f". The plain reconstruction (inversion and regeneration without Δh) already keeps only {recon:.3f}, "
              f"so the bar leaves the edit {recon - SOURCE_BAR.kept:.3f} to lose, and every setting loses at least "
              f"{recon - most['edit_kept_mean']['mean']:.3f}.")
    kept = [key[len("edit_kept_"):] for key in most if key.startswith("edit_kept_") and key != "edit_kept_mean"]
    drops = {a: most["reconstruction_kept_" + a]["mean"] - most["edit_kept_" + a]["mean"] for a in kept}
    if drops:
        worst = max(drops, key=drops.get)
        words += (f" Most of the loss is {worst}: the edit keeps {most['edit_kept_' + worst]['mean']:.3f} of it, "
                  f"the reconstruction {most['reconstruction_kept_' + worst]['mean']:.3f}" +
                  "".join(f"; {other} {most['edit_kept_' + other]['mean']:.3f} against "
                          f"{most['reconstruction_kept_' + other]['mean']:.3f}"
                          for other in kept if other != worst) + ".")
    perfect = perfect_by_judge.get(entries[0]["judge"])
    if perfect:
        words += (f" The renderer's perfect edit (each test face and its smiling twin, nothing else changed) scores "
                  f"smiling {perfect['smiling']:.3f}, kept {perfect['kept_mean']:.3f}, PSNR "
                  f"{perfect['psnr_db']:.1f} dB with the same judge: the judge does not cap the bar.")
    return words


def smile_gain(e: dict) -> tuple[float, float]:
    """(mean, sd over seeds) of edit smiling − reconstruction smiling (sd: the two sds combined)."""
    mean = e["edit_smiling"]["mean"] - e["reconstruction_smiling"]["mean"]
    return mean, math.hypot(e["edit_smiling"]["sd"], e["reconstruction_smiling"]["sd"])


def table_entries(result: dict, kind: str, current: bool = True) -> list[dict]:
    """The table's summary entries for a direction: those edited with the windows this run chose (``current``), or
    the rest (rows an earlier call edited with other windows, kept through ``--previous``)."""
    windows = result.get("table_windows", {}).get(kind)
    chosen = (lambda e: True) if not windows else (
        (lambda e: list(e["window"]) == list(windows[e["model"]])) if isinstance(windows, dict)
        else (lambda e: list(e["window"]) == list(windows)))
    return [e for e in result["summary"] if e["part"] == "table" and e["direction_kind"] == kind
            and chosen(e) == current]


def by_size(entries: list[dict]) -> dict[int, list[dict]]:
    """Entries grouped by the source model's image size, 32 px (rows without a size) first: each size is its own
    table with its own naive baseline."""
    groups: dict[int, list[dict]] = {}
    for e in entries:
        groups.setdefault(e.get("size", 32), []).append(e)
    return dict(sorted(groups.items()))


def table2(entries: list[dict]) -> list[str]:
    lines = ["| model | window | edit − recon. | smiling | own reading | kept | PSNR | S_dir | FD |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        gain, sd = smile_gain(e)
        lines.append(f"| {e['model']} | {setting_words(e)} | "
                     f"{gain:+.3f}{f' ± {sd:.3f}' if e['seeds'] > 1 else ''} | "
                     f"{mean(e['edit_smiling'], 3)} | {mean(e['edit_smiling_by_trainer'], 3)} | "
                     f"{mean(e['edit_kept_mean'])} | {mean(e['edit_psnr_db'], 1)} | "
                     f"{mean(e['edit_s_dir_synthclip'])} | {mean(e['edit_realism_fd'])} |")
    return lines


COLUMNS = ("Columns: smiling after the edit as the judge reads it (mean ± sd over seeds), and as the instrument "
           "that trained Δh reads it (own reading); smiling of the plain reconstruction (recon.); attributes other "
           "than expression kept from the input (kept); PSNR to the input in dB; S_dir in SynthCLIP's space; the "
           "realism Fréchet distance to renders of the faces' domain (FD). Means over seeds; every sd is in "
           "`results/synthfaces_editing/editing.json`.")


def window_words(entries: list[dict]) -> str:
    """A table's edit window in words, read from its entries: one for every model (e.g. the bar's), or each model's
    own (from its survival curve)."""
    distinct = {tuple(e["window"]) for e in entries}
    if not distinct:
        return ""
    if len(distinct) == 1:
        low, high = distinct.pop()
        return f", window {low}–{high} for every model"
    return ", each model's own window (where its smile-survival curve says it decides the mouth)"


def source_edit(summary: list[dict], entries: list[dict]) -> dict | None:
    """The bar's entry on the source model for the edit every one of ``entries`` made, if it passed the bar (on
    the test photos); None when the table's models edit differently from each other or no such entry passed."""
    settings = {edit_setting(e)[1:] for e in entries}   # the same edit, whichever model made it
    if len(settings) != 1:
        return None
    setting = settings.pop()
    return next((e for e in summary if e["part"] == "bar" and e.get("split", "test") == "test"
                 and edit_setting(e)[1:] == setting and all(e["bar"].values())), None)


def verdict(entries: list[dict], source: dict | None = None) -> str:
    """Does the edit bring out more smiles with SDFT than with naive fine-tuning? Two standard errors apart.
    ``source``: the same edit's passing bar entry on the source model (``source_edit``), when there is one."""
    rows = {plain_label(e["model"]): e for e in entries}   # "naive 64 px" → "naive"
    if "naive" not in rows:
        return ""
    naive, naive_sd = smile_gain(rows["naive"])
    seeds = min(e["seeds"] for e in rows.values())
    largest = max(e["edit_smiling"]["mean"] for e in rows.values())
    if largest < 0.05:   # what the data say, not typed in
        none = (f"**No fine-tuned model's edit makes the portraits smile** (at most {largest:.3f} of them, SDFT "
                "included)")
        if source is None:
            return none + ", so this table cannot test the paper's claim."
        return (none + f", although the same edit makes {source['edit_smiling']['mean']:.3f} of the source "
                "model's photos smile and passes the bar: fine-tuning on the limited target took the edit away from "
                "every model here, SDFT included, which is not the paper's Table 2.")
    words = []
    for model, e in rows.items():
        if model == "naive":
            continue
        gain, sd = smile_gain(e)
        if seeds < 2:
            words.append(f"{model} {gain:+.2f}")
            continue
        se = math.hypot(sd, naive_sd) / math.sqrt(seeds)
        relation = ("more than" if gain - naive > 2 * se else "fewer than" if naive - gain > 2 * se
                    else "no more than")
        words.append(f"{model} {gain:+.2f} — {relation} naive")
    test = (f"two standard errors over {seeds} seeds" if seeds > 1 else
            "one seed of a model: no test of the difference")
    return f"Smiles the edit adds (edit − reconstruction), naive {naive:+.2f}: " + "; ".join(words) + f" ({test})."


def render(result: dict) -> str:
    config = result["config"]
    asyrp = config["asyrp"]
    out = ["% GENERATED by book/tools/editing_tables.py from results/synthfaces_editing/editing.json: do not edit.",
           "", f"{config['n_train']} training and {config['n_test']} held-out neutral faces per run, "
           f"{asyrp['steps']} steps, {asyrp['epochs']} passes, batch {asyrp['batch']}, boosting below "
           f"t = {asyrp['t_boost']}; seeds {', '.join(map(str, result['seeds']))}; {result['device']}, commit "
           f"`{result['commit'][:7]}`, {result['wall_seconds']:.0f} s (`{result['command']}`)."]
    earlier = result.get("earlier_calls", [result["previous"]] if "previous" in result else [])
    if earlier:
        out[-1] += (" Rows and survival curves carried from earlier calls (`--previous`), oldest first: " +
                    "; ".join(f"{call.get('device', 'device not recorded')}, commit `{call['commit'][:7]}`, "
                              f"{call['wall_seconds']:.0f} s (`{call['command']}`)"
                              for call in earlier) + ".")
    out.append("")
    if "survival" in result:
        out += ["**How long a smile survives** SDEdit from t (share of smiling renders in the model's style still "
                "smiling after noising to t and the model's DDIM back):", "", *survival_table(result["survival"]), ""]
    summary = result["summary"]
    if any(e["part"] == "bar" for e in summary):
        out += [f"**The bar, on the source model** (neutral photos; {', '.join(SOURCE_BAR.criteria)}; "
                "each edit judged by the instrument that did not train it: the classifier's "
                "direction by SynthCLIP, SynthCLIP's text direction by the classifier; \"fails\" names the criteria "
                "missed):", "", *bar_table(summary), "",
                bar_reading(result), ""]
    out += [COLUMNS, ""]
    for kind in ("synthclip", "classifier"):
        for size, entries in by_size(table_entries(result, kind)).items():
            at = "" if size == 32 else f" on the {size}-px source model's fine-tunings"
            out += [f"**Table 2 analogue{at}, {DIRECTION_NAMES[kind]}**" + window_words(entries) +
                    " (neutral limited-target portraits):", "", *table2(entries), "",
                    verdict(entries, source_edit(summary, entries)), ""]
            if f"table_{size}_note" in result:   # how a larger model's table was run (written with the call)
                out += [result[f"table_{size}_note"], ""]
        earlier = table_entries(result, kind, current=False)
        if earlier:
            out += [f"The same direction with other windows (an earlier call's rows):", "", *table2(earlier), ""]
    return "\n".join(out)


def seeds_words(entries: list[dict], seeds: list[int]) -> str:
    """"3 seeds", or which model has how many where a call was cut off before every seed was edited."""
    counts = {e["model"]: e["seeds"] for e in entries}
    if set(counts.values()) == {len(seeds)}:
        return f"{len(seeds)} seeds"
    return ("a partial run: " + ", ".join(f"{model} {n} of {len(seeds)} seeds" for model, n in counts.items()))


def provenance(result: dict) -> str:
    """Where a result came from: its one call's command, or, for a file several calls wrote (``--previous``), how
    many calls on which commits and for how long (each call's command stays in the file)."""
    calls = [*result.get("earlier_calls", []), result]
    commits = ", ".join(f"`{c}`" for c in dict.fromkeys(call["commit"][:7] for call in calls if "commit" in call))
    seconds = sum(call.get("wall_seconds", 0.0) for call in calls)
    if len(calls) == 1:
        return f"{result['device']}, commit {commits}, {seconds:.0f} s, `{result['command']}`"
    return f"{result['device']}, {len(calls)} calls, commits {commits}, {seconds:.0f} s in all"


def smile_share_section(result: dict) -> str:
    """The Table 2 analogue when the limited target has a small share of smiling portraits: the models' survival
    curves in the table's order, the table and its verdict, with the notes on how the calls went."""
    share = result["config"]["limited_smile_share"]
    entries = table_entries(result, "classifier")
    curves = result.get("survival", {})
    fine_tuned = {e["model"]: curves[e["model"]] for e in entries if e["model"] in curves}
    out = [f"**With {share:.0%} smiling portraits in the limited target** ({seeds_words(entries, result['seeds'])}; "
           f"{provenance(result)}; `results/synthfaces_editing/smile_share_02/`). How long a smile survives SDEdit "
           "in these models:", "",
           *survival_table(fine_tuned), "",
           f"The edit, {DIRECTION_NAMES['classifier']}{window_words(entries)}:", "",
           *table2(entries), "", verdict(entries)]
    for note in ("partial_note", "calls_note"):
        if note in result:
            out += ["", result[note]]
    if "finish_command" in result:
        out += ["", f"To finish it: `{result['finish_command']}`"]
    return "\n".join(out) + "\n"


def page() -> str:
    """The whole generated page from the stored results: the main run, then the limited target with a few smiles."""
    if not RESULTS.is_file():
        return ("% GENERATED by book/tools/editing_tables.py\n\n*Not yet run: `python bench/asyrp_editing.py --out "
                "results/synthfaces_editing --workers 16` on a GPU.*\n")
    text = render(json.loads(RESULTS.read_text(encoding="utf-8")))
    if SMILE_SHARE.is_file():
        text += "\n" + smile_share_section(json.loads(SMILE_SHARE.read_text(encoding="utf-8")))
    return text


def main() -> int:
    OUTPUT.write_text(page(), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
