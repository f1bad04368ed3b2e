"""The book's build tools: toc syncing, chapter wall times, the reproduction table and the JS vendoring plan."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import load_tool

REPO_ROOT = Path(__file__).resolve().parents[2]


sync_toc = load_tool("sync_toc")
chapter_times = load_tool("chapter_times")
reproduction_table = load_tool("reproduction_table")
vendor_js = load_tool("vendor_js")


# ---------------------------------------------------------------- sync_toc

FULL = {"format": "jb-book", "root": "book/intro", "parts": [
    {"caption": "Getting started", "chapters": [{"file": "book/how-to-run"}, {"file": "notebooks/00_a"}]},
    {"caption": "Foundations", "chapters": [{"file": "notebooks/01_b"}]},
]}


def make_pages(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("# page\n", encoding="utf-8")


def test_toc_keeps_existing_pages_and_drops_empty_parts(tmp_path):
    make_pages(tmp_path, "book/intro.md", "book/how-to-run.md", "notebooks/01_b.ipynb")
    toc = sync_toc.existing_toc(FULL, tmp_path)
    assert toc["parts"] == [
        {"caption": "Getting started", "chapters": [{"file": "book/how-to-run"}]},
        {"caption": "Foundations", "chapters": [{"file": "notebooks/01_b"}]},
    ]
    make_pages(tmp_path, "notebooks/00_a.ipynb")
    assert sync_toc.existing_toc(FULL, tmp_path) == FULL


def test_toc_without_root_page_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        sync_toc.existing_toc(FULL, tmp_path)


def test_committed_toc_is_in_sync_with_the_files():
    assert sync_toc.main(["--check-sync"]) == 0


def test_every_full_toc_entry_is_a_known_page_kind():
    full = sync_toc.yaml.safe_load(sync_toc.FULL_TOC.read_text(encoding="utf-8"))
    entries = sync_toc.all_entries(full)
    assert entries[0] == "book/intro" and len(entries) == len(set(entries)) == 17
    assert all(e.startswith(("book/", "notebooks/")) for e in entries)


# ---------------------------------------------------------------- chapter_times

def notebook_with_stdout(*texts: str) -> dict:
    outputs = [{"output_type": "stream", "name": "stdout", "text": text} for text in texts]
    return {"cells": [{"cell_type": "markdown", "source": "# Forward process\n\ntext", "metadata": {}},
                      {"cell_type": "code", "source": "", "metadata": {}, "outputs": outputs}]}


def test_wall_time_lines_are_parsed_and_the_last_per_mode_wins():
    notebook = notebook_with_stdout(
        "WALL_TIME mode=quick hardware=CPU x86_64 x2 seconds=12.0\n",
        "loss 0.1\nWALL_TIME mode=quick hardware=CPU x86_64 x2 seconds=14.5\n",
        "WALL_TIME mode=full hardware=NVIDIA H100 80GB HBM3 (CUDA 12.4) seconds=3720\n",
    )
    times = chapter_times.wall_times(notebook)
    assert times["quick"] == chapter_times.WallTime("quick", "CPU x86_64 x2", 14.5)
    assert times["full"].hardware == "NVIDIA H100 80GB HBM3 (CUDA 12.4)" and times["full"].seconds == 3720
    assert chapter_times.chapter_title(notebook, "x") == "Forward process"


def test_wall_time_table_says_not_yet_run_where_nothing_was_measured(tmp_path):
    measured = tmp_path / "01_forward_process.ipynb"
    measured.write_text(json.dumps(notebook_with_stdout("WALL_TIME mode=quick hardware=CPU seconds=75\n")))
    rows = chapter_times.collect([measured, tmp_path / "02_missing.ipynb"], extras=[])
    table = chapter_times.table(rows)
    assert "| [`01_forward_process`](../notebooks/01_forward_process.ipynb) Forward process | 1 min 15 s on CPU | not yet run |" in table
    assert "| `02_missing` not yet written | not yet run | not yet run |" in table
    assert table.endswith("| **all chapters, one after another** | — | — |\n")   # a total needs every chapter


def test_recorded_runs_fill_the_mode_the_committed_outputs_lack(tmp_path):
    committed = tmp_path / "01_forward_process.ipynb"
    committed.write_text(json.dumps(notebook_with_stdout("WALL_TIME mode=full hardware=GPU seconds=7\n")))
    executed = tmp_path / "quick"
    executed.mkdir()
    quick_run = executed / committed.name
    quick_run.write_text(json.dumps(notebook_with_stdout("WALL_TIME mode=quick hardware=CPU seconds=30\n")))
    record = tmp_path / "recorded_runs.json"
    assert chapter_times.record_runs([quick_run], record) == {
        "01_forward_process": {"quick": chapter_times.WallTime("quick", "CPU", 30.0)}}
    quick_run.write_text(json.dumps(notebook_with_stdout("WALL_TIME mode=quick hardware=CPU seconds=20\n")))
    chapter_times.record_runs([quick_run], record)                                # a later run replaces it
    table = chapter_times.table(chapter_times.collect([committed], [], chapter_times.read_record(record)))
    assert "| [`01_forward_process`](../notebooks/01_forward_process.ipynb) Forward process | 20 s on CPU | 7 s on GPU |" in table
    assert "| **all chapters, one after another** | **20 s** | **7 s** |" in table
    assert chapter_times.read_record(tmp_path / "absent.json") == {}


@pytest.mark.parametrize("seconds, text", [(42.4, "42 s"), (185, "3 min 05 s"), (3720, "1 h 02 min")])
def test_seconds_are_formatted_for_reading(seconds, text):
    assert chapter_times.format_seconds(seconds) == text


# ---------------------------------------------------------------- reproduction_table

def test_paper_tables_hold_every_number_of_the_paper():
    sizes = {t.name: (len(t.rows), {len(values) for *_, values in t.rows}) for t in reproduction_table.PAPER_TABLES}
    assert sizes == {"Table 1": (12, {5}), "Table 2": (4, {2}), "Table 3": (6, {3}), "Table 4": (3, {3})}


def test_measured_result_sits_beside_the_paper_value(tmp_path):
    record = {"paper_item": "Table 3", "dataset": "MetFaces", "task": None, "model": "SDFT",
              "metrics": {"FID": 36.0, "LPIPS": 0.4567}, "mode": "full", "hardware": "H100"}
    own = dict(record, paper_item="SynthFaces", dataset="SynthFaces", metrics={"retain_eyewear": 0.58})
    (tmp_path / "r.json").write_text(json.dumps([record, own]))
    (tmp_path / "bench.json").write_text(json.dumps({"img_per_s": 28.9}))  # not a result record: skipped
    results = reproduction_table.load_results((tmp_path,))
    text = reproduction_table.render(results)
    assert "| MetFaces | SDFT | 35.11 → 36.00 | 17.14 | 0.46 → 0.457 | full mode, H100" in text
    assert "| MetFaces | Naive Fine-Tune | 43.45 | 22.81 | 0.474 | not yet run |" in text
    assert "| SynthFaces | SynthFaces |  | SDFT | retain_eyewear 0.580 | full | H100 |" in text


# ---------------------------------------------------------------- vendor_js

def test_vendor_plan_serves_what_config_asks_for():
    config = (REPO_ROOT / "_config.yml").read_text(encoding="utf-8")
    plan = vendor_js.vendor_plan()
    for dest in ("mathjax/tex-mml-chtml.js", "requirejs/require.js", "html-manager/embed-amd.js"):
        assert f"../_vendor/{dest}" in config
        assert dest in plan


# ---------------------------------------------------------------- rivals_table

rivals_table = load_tool("rivals_table")


def test_readme_rivals_table_is_the_one_the_stored_frontier_gives():
    readme = rivals_table.README.read_text(encoding="utf-8")
    block = rivals_table.readme_block(rivals_table.load())
    assert block in readme, "README's rivals table is stale: run python book/tools/rivals_table.py"


def test_rivals_table_rows_come_from_the_summary_with_their_knobs():
    stats = {"mean": 0.5, "sd": 0.25, "n": 3}
    result = {"config": {"methods": [{"label": "naive", "knob": "-"}, {"label": "EWC", "knob": "λ"}]},
              "source": {"retain_mean": 1.0, "style_rate": 0.0},
              "summary": {"naive 0": {"retain_mean": stats}, "EWC 1e+06": {"retain_mean": stats, "fd_full": {
                  "mean": 12.345, "sd": None, "n": 1}}}}
    lines = rivals_table.table(result, [("retain_mean", "retention"), ("fd_full", "FD")])
    assert lines[2:] == ["| source model (no fine-tuning) | 1.00 | – |", "| naive | 0.50±0.25 | – |",
                         "| EWC, λ = 1e+06 | 0.50±0.25 | 12.3 |"]
    assert rivals_table.near_duplicates({"records": [{"metrics": {"near_duplicates": 0.0}}]}) == "none in any run"
    readme = "intro\n" + rivals_table.README_MARKERS[0] + "\nold\n" + rivals_table.README_MARKERS[1] + "\nrest\n"
    assert rivals_table.with_readme_block(readme, "NEW") == "intro\nNEW\nrest\n"


# ---------------------------------------------------------------- editing_tables

editing_tables = load_tool("editing_tables")


def editing_entry(part, model, kind, smiling, recon, seeds=3, sd=0.01):
    stats = lambda mean: {"mean": mean, "sd": sd, "n": seeds}   # noqa: E731
    entry = {"part": part, "model": model, "direction_kind": kind, "window": [300, 500], "seeds": seeds,
             "edit_smiling": stats(smiling), "reconstruction_smiling": stats(recon)}
    for name in ("kept_mean", "psnr_db", "s_dir_synthclip", "realism_fd", "smiling_by_trainer"):
        entry[f"edit_{name}"] = stats(0.5)
    entry["reconstruction_kept_mean"] = stats(0.97)
    return entry


def test_editing_verdict_is_computed_from_the_seeds():
    summary = [editing_entry("table", "naive", "synthclip", 0.02, 0.0),
               editing_entry("table", "SDFT λ=3", "synthclip", 0.40, 0.0),
               editing_entry("table", "SDFT λ=0.1", "synthclip", 0.03, 0.0)]
    words = editing_tables.verdict(summary)
    assert "SDFT λ=3 +0.40 — more than naive" in words and "SDFT λ=0.1 +0.03 — no more than naive" in words
    lines = editing_tables.table2(summary)
    assert lines[2].startswith("| naive | 300–500 | +0.020 ± 0.014 | 0.020 | 0.500 |")
    failed = [editing_entry("table", model, "classifier", 0.001, 0.0) for model in ("naive", "SDFT λ=10")]
    assert editing_tables.verdict(failed).startswith("**No fine-tuned model's edit makes the portraits "
                                                     "smile** (at most 0.001")


def test_a_verdict_with_one_seed_of_a_model_tests_nothing():
    """A cut-off call may leave one seed of a model: its gain is shown, no 'more than' or 'no more than'."""
    summary = [editing_entry("table", "naive", "classifier", 0.73, 0.0, seeds=1),
               editing_entry("table", "SDFT λ=1", "classifier", 0.70, 0.0, seeds=2)]
    assert editing_tables.verdict(summary) == ("Smiles the edit adds (edit − reconstruction), naive +0.73: "
                                               "SDFT λ=1 +0.70 (one seed of a model: no test of the difference).")


def test_the_smile_share_section_says_how_partial_it_is():
    entries = [editing_entry("table", "naive", "classifier", 0.73, 0.0, seeds=1),
               editing_entry("table", "SDFT λ=1", "classifier", 0.70, 0.0, seeds=2)]
    curve = {"0": 1.0, "300": 0.3}
    result = {"config": {"limited_smile_share": 0.02}, "seeds": [0, 1, 2], "device": "H200", "commit": "abcdef0" * 6,
              "wall_seconds": 226.0, "command": "asyrp_editing.py", "summary": entries,
              "survival": {"source": curve, "naive": curve, "SDFT λ=1": curve}, "partial_note": "Cut off.",
              "finish_command": "asyrp_editing.py --resume"}
    page = editing_tables.smile_share_section(result)
    assert page.startswith("**With 2% smiling portraits in the limited target** (a partial run: naive 1 of 3 "
                           "seeds, SDFT λ=1 2 of 3 seeds;")
    assert "| source |" not in page and "| naive | 1.00 | 0.30 |" in page   # the fine-tuned models' curves
    assert page.rstrip().endswith("Cut off.\n\nTo finish it: `asyrp_editing.py --resume`")
    full = {**result, "summary": [{**e, "seeds": 3} for e in entries]}
    full.pop("partial_note"), full.pop("finish_command")
    assert "(3 seeds; H200, commit `abcdef0`, 226 s, `asyrp_editing.py`;" in editing_tables.smile_share_section(full)
    # written by several calls (--previous): each call's commit and the time of all, the calls' note at the end
    earlier = [{"command": "first", "commit": "1234567" * 6, "wall_seconds": 100.0}]
    merged = editing_tables.smile_share_section({**full, "earlier_calls": earlier, "calls_note": "Two calls."})
    assert "(3 seeds; H200, 2 calls, commits `1234567`, `abcdef0`, 326 s in all;" in merged
    assert merged.rstrip().endswith("Two calls.")


def test_a_recipe_chosen_on_validation_photos_is_reported_on_the_test_photos():
    def bar_entry(scale, smiling, psnr, split=None):
        entry = editing_entry("bar", "source", "classifier", smiling, 0.0)
        entry.update(window=[200, 500], lambda_l1=3.0, scale=scale, size=64, judge="SynthCLIP zero-shot",
                     edit_kept_mean={"mean": 0.98, "sd": 0.0, "n": 3}, edit_psnr_db={"mean": psnr, "sd": 0.0, "n": 3},
                     reconstruction_kept_mean={"mean": 0.99, "sd": 0.0, "n": 3},
                     reconstruction_psnr_db={"mean": 34.0, "sd": 0.0, "n": 3},
                     reconstruction_realism_fd={"mean": 2.6, "sd": 0.0, "n": 3},
                     bar={"smiling ≥ 0.8": True, "reconstruction smiling ≤ 0.02": True, "kept ≥ 0.95": True,
                          "PSNR ≥ 27 dB": psnr >= 27})
        return {**entry, "split": split} if split else entry
    test = [bar_entry(1.0, 0.981, 26.9), bar_entry(0.9, 0.962, 27.4)]
    validation = [bar_entry(1.0, 0.98, 27.1, "validation"), bar_entry(0.9, 0.96, 27.5, "validation")]
    words = editing_tables.bar_reading({"summary": test + validation})
    assert words.endswith("**Chosen on the validation photos** (faces the test rows never see): 200–500, λ_L1 3, "
                          "c 1, 64 px, validation photos; on the test photos it fails PSNR ≥ 27 dB (smiling 0.981 ± "
                          "0.010, kept 0.980, PSNR 26.9 dB over 3 seeds).")   # the most smiles on validation
    assert "passed** by the classifier direction with 200–500, λ_L1 3, c 0.9, 64 px." in words   # test rows only
    assert editing_tables.held_out_choice(validation[1:], test).endswith("on the test photos it passes (smiling "
                                                                         "0.962 ± 0.010, kept 0.980, PSNR 27.4 dB "
                                                                         "over 3 seeds).")
    assert editing_tables.held_out_choice(validation[1:], []).endswith("it has no run on the test photos yet.")
    failing = {**validation[0], "bar": {**validation[0]["bar"], "PSNR ≥ 27 dB": False}}
    assert "no setting passes (1 tried)" in editing_tables.held_out_choice([failing], test)
    assert editing_tables.bar_reading({"summary": validation}).startswith("**Chosen on the validation photos**")


def test_editing_table_keeps_rows_of_other_windows_apart_from_the_verdict():
    """A run with --previous carries an earlier call's rows (other windows): the table and its verdict use the
    windows this run chose; the earlier rows are shown apart and cannot overwrite a model's row in the verdict."""
    old = [editing_entry("table", model, "classifier", 0.001, 0.0) for model in ("naive", "SDFT λ=3")]
    new = [dict(editing_entry("table", "naive", "classifier", 0.02, 0.0), window=[100, 300]),
           dict(editing_entry("table", "SDFT λ=3", "classifier", 0.40, 0.0), window=[100, 300])]
    result = {"summary": old + new,
              "table_windows": {"classifier": {"naive": [100, 300], "SDFT λ=3": [100, 300]}}}
    assert editing_tables.table_entries(result, "classifier") == new
    assert editing_tables.table_entries(result, "classifier", current=False) == old
    assert "SDFT λ=3 +0.40 — more than naive" in editing_tables.verdict(editing_tables.table_entries(result,
                                                                                                     "classifier"))
    one_window = {"summary": old, "table_windows": {"classifier": [300, 500]}}    # results before per-model windows
    assert editing_tables.table_entries(one_window, "classifier") == old


def test_editing_table_names_one_window_or_each_models_own():
    """Read from the table's own entries, so a 64-px table in the bar's window is not described by the 32-px
    table's per-model windows stored beside it."""
    naive = editing_entry("table", "naive", "classifier", 0.02, 0.0)            # window 300–500
    sdft = editing_entry("table", "SDFT λ=3", "classifier", 0.4, 0.0)
    assert editing_tables.window_words([naive, sdft]) == ", window 300–500 for every model"
    assert "each model's own window" in editing_tables.window_words([naive, dict(sdft, window=[100, 300])])
    assert editing_tables.window_words([]) == ""


def test_a_table_whose_edit_passed_the_bar_says_fine_tuning_took_it_away():
    """When no fine-tuned model smiles, the verdict depends on whether the same edit (direction, window, recipe,
    size) passed the bar on the source: then the fine-tuning took the edit away; otherwise the table tests
    nothing."""
    table = [dict(editing_entry("table", f"{model} 64 px", "classifier", smiling, 0.0), size=64, lambda_l1=3.0,
                  scale=0.9) for model, smiling in (("naive", 0.005), ("SDFT λ=10", 0.02))]
    passed = dict(editing_entry("bar", "source", "classifier", 0.962, 0.004), size=64, lambda_l1=3.0, scale=0.9,
                  bar={"smiling ≥ 0.8": True, "kept ≥ 0.95": True})
    other_scale = dict(passed, scale=1.0)
    failed = dict(passed, bar={"smiling ≥ 0.8": True, "kept ≥ 0.95": False})
    on_validation = dict(passed, split="validation")
    assert editing_tables.source_edit([passed, *table], table) is passed
    for summary in ([other_scale], [failed], [on_validation], [dict(passed, size=32)]):
        assert editing_tables.source_edit(summary, table) is None
    mixed = [table[0], dict(table[1], window=[100, 300])]   # each model's own window: no one edit to compare
    assert editing_tables.source_edit([passed], mixed) is None
    words = editing_tables.verdict(table, passed)
    assert "although the same edit makes 0.962 of the source model's photos smile" in words
    assert "which is not the paper's Table 2" in words
    assert "cannot test the paper's claim" in editing_tables.verdict(table)
    default_recipe = dict(passed, scale=1.0)
    del default_recipe["lambda_l1"], default_recipe["scale"]   # an entry that names no recipe used Asyrp's
    assert editing_tables.source_edit([default_recipe], [dict(t, scale=1.0) for t in table]) is default_recipe


def test_the_bar_reading_names_what_passes_or_how_far_the_best_setting_falls_short():
    def bar_entry(kept, smiling, recon_kept=0.97, window=(200, 500)):
        entry = editing_entry("bar", "source", "classifier", smiling, 0.0)
        entry.update(window=list(window), judge="SynthCLIP zero-shot",
                     edit_kept_mean={"mean": kept, "sd": 0.0, "n": 3},
                     reconstruction_kept_mean={"mean": recon_kept, "sd": 0.0, "n": 3},
                     reconstruction_psnr_db={"mean": 30.0, "sd": 0.0, "n": 3},
                     reconstruction_realism_fd={"mean": 0.1, "sd": 0.0, "n": 3},
                     bar={"smiling ≥ 0.8": smiling >= 0.8, "reconstruction smiling ≤ 0.02": True,
                          "kept ≥ 0.95": kept >= 0.95, "PSNR ≥ 27 dB": True})
        return entry
    short = {"summary": [bar_entry(0.925, 0.86), bar_entry(0.942, 0.34, window=(300, 500))],
             "renderer_edit": {"source": {"SynthCLIP zero-shot": {"smiling": 1.0, "kept_mean": 1.0, "psnr_db": 36.4}}}}
    words = editing_tables.bar_reading(short)
    assert words.startswith("**No setting passes the bar.** Over the 2 classifier-direction settings, the most any "
                            "keeps is 0.942 (300–500, smiling 0.34); of those that make ≥ 0.8 smile, 0.925 (200–500)")
    assert "keeps only 0.970, so the bar leaves the edit 0.020 to lose, and every setting loses at least 0.028" in words
    assert "smiling 1.000, kept 1.000, PSNR 36.4 dB" in words
    detailed = bar_entry(0.942, 0.34)
    detailed.update({f"{part}_kept_{a}": {"mean": v, "sd": 0.0, "n": 3} for part, values in
                     (("edit", {"style": 0.87, "skin": 0.96}), ("reconstruction", {"style": 0.99, "skin": 0.98}))
                     for a, v in values.items()})
    assert ("Most of the loss is style: the edit keeps 0.870 of it, the reconstruction 0.990; skin 0.960 against "
            "0.980.") in editing_tables.bar_reading({"summary": [detailed]})
    passed = {"summary": [bar_entry(0.96, 0.85)]}
    assert editing_tables.bar_reading(passed) == (
        "**The bar is passed** by the classifier direction with 200–500. Its plain reconstruction (no Δh) keeps "
        "0.970, PSNR 30.0 dB, FD 0.10: the edit's FD is read against it.")
    assert editing_tables.bar_reading({"summary": []}) == ""
    larger = dict(bar_entry(0.985, 0.96), size=64)   # a 64-px source model's row beside the 32-px ones
    words = editing_tables.bar_reading({"summary": short["summary"] + [larger],
                                        "renderer_edit": short["renderer_edit"]})
    assert words.startswith("**At 32 px, no setting passes the bar.** Over the 2 classifier-direction settings")
    assert "\n\n**At 64 px, the bar is passed** by the classifier direction with 200–500, 64 px. Its plain" in words


def test_editing_tables_page_is_the_one_the_stored_results_give():
    assert editing_tables.OUTPUT.read_text(encoding="utf-8") == editing_tables.page(), \
        "book/generated/editing_tables.md is stale: run python book/tools/editing_tables.py"


def test_editing_tables_name_the_device_of_every_carried_call():
    result = {"summary": [], "seeds": [0], "device": "CPU x86_64 x2", "commit": "b" * 40, "wall_seconds": 11.0,
              "command": "bench/asyrp_editing.py --parts renderer",
              "config": {"n_train": 100, "n_test": 500, "asyrp": {"steps": "40", "epochs": 5, "batch": 4,
                                                                   "t_boost": 100}},
              "earlier_calls": [{"device": "NVIDIA H200", "commit": "a" * 40, "wall_seconds": 358.0,
                                 "command": "bench/asyrp_editing.py --parts table"}]}
    page = editing_tables.render(result)
    assert "NVIDIA H200, commit `aaaaaaa`, 358 s (`bench/asyrp_editing.py --parts table`)" in page
    assert "CPU x86_64 x2, commit `bbbbbbb`" in page


# ---------------------------------------------------------------- execute_notebooks

def test_consecutive_pieces_of_one_stream_are_joined_and_others_kept():
    import importlib.util
    import nbformat
    spec = importlib.util.spec_from_file_location("execute_notebooks", Path(__file__).resolve().parents[2] / "bench" /
                                                  "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stream = nbformat.v4.new_output
    cell = nbformat.v4.new_code_cell(outputs=[stream("stream", name="stdout", text="a\n"),
                                              stream("stream", name="stdout", text="b\n"),
                                              stream("stream", name="stderr", text="warn\n"),
                                              stream("stream", name="stdout", text="c\n"),
                                              stream("display_data", data={"text/plain": "fig"}),
                                              stream("stream", name="stdout", text="d\n")])
    notebook = nbformat.v4.new_notebook(cells=[cell])
    module.merge_streams(notebook)
    assert [(o.output_type, o.get("text")) for o in notebook.cells[0].outputs] == [
        ("stream", "a\nb\n"), ("stream", "warn\n"), ("stream", "c\n"), ("display_data", None), ("stream", "d\n")]


def test_sidebar_numbers_are_the_chapter_numbers():
    """Numbered parts count on across the book (use_multitoc_numbering), so the k-th numbered page must be
    notebooks/<k>_...: the sidebar then says what the text says ("chapter 4")."""
    full = sync_toc.yaml.safe_load(sync_toc.FULL_TOC.read_text(encoding="utf-8"))
    numbered = [c["file"] for part in full["parts"] if part.get("numbered") for c in part["chapters"]]
    assert numbered == [f"notebooks/{k:02d}_{Path(f).name[3:]}" for k, f in enumerate(numbered, start=1)]
    assert len(numbered) == 10
    config = sync_toc.yaml.safe_load((sync_toc.REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["html"]["use_multitoc_numbering"] is True


def test_banner_says_what_each_mode_took_and_is_written_once(tmp_path):
    import nbformat
    times = {"quick": chapter_times.WallTime("quick", "CPU x86_64 x2 (torch 2.14.1)", 75.0),
             "full": chapter_times.WallTime("full", "NVIDIA H200 (CUDA 13.0, torch 2.11.0)", 32.0)}
    text = chapter_times.banner(times)
    assert "Quick mode: 1 min 15 s on CPU x86_64 x2" in text and "Full mode: 32 s on NVIDIA H200" in text
    assert "full-mode run" in text and "Full mode: not yet run" in chapter_times.banner({"quick": times["quick"]})
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("badge"),
                                                   nbformat.v4.new_markdown_cell("# Title\n\ntext"),
                                                   nbformat.v4.new_code_cell("1")]), path)
    assert chapter_times.write_banner(path, text) and not chapter_times.write_banner(path, text)
    cells = nbformat.read(path, as_version=4).cells
    assert [c.source for c in cells] == ["badge", "# Title", text, "text", "1"]
    assert chapter_times.write_banner(path, "new") and nbformat.read(path, as_version=4).cells[2].source == "new"


def test_every_chapter_banner_matches_the_measured_times():
    rows = chapter_times.collect(chapter_times.chapter_notebooks(), [],
                                 chapter_times.read_record(chapter_times.RECORD))
    for path, (_, _, times) in zip(chapter_times.chapter_notebooks(), rows):
        cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
                 if chapter_times.BANNER_TAG in c.get("metadata", {}).get("tags", [])]
        assert len(cells) == 1 and "".join(cells[0]["source"]) == chapter_times.banner(times), \
            f"{path.name}: run python book/tools/chapter_times.py --banners"


# ---------------------------------------------------------------- exercises_page

exercises_page = load_tool("exercises_page")


def test_exercises_page_is_the_chapters_own_exercises():
    assert exercises_page.OUTPUT.read_text(encoding="utf-8") == exercises_page.page(), \
        "book/exercises.md is stale: run python book/tools/exercises_page.py"


def test_exercises_section_drops_solutions_and_fixes_links():
    cell = lambda kind, text: {"cell_type": kind, "source": text, "metadata": {}}
    notebook = {"cells": [cell("markdown", "# T"), cell("markdown", "## Exercises\n\n1. See [ch 2](02_x.ipynb)."),
                          cell("markdown", "```{dropdown} Solution\nsecret\n```"), cell("code", "print(1)"),
                          cell("markdown", "2. Next.\n\n````{dropdown} Solution\nmore secret\n````\nafter")]}
    text = exercises_page.exercises_section(notebook)
    assert text == "1. See [ch 2](../notebooks/02_x.ipynb).\n\n2. Next.\n\nafter"
    assert exercises_page.exercises_section({"cells": [cell("markdown", "# T")]}) is None


def test_editing_tables_name_a_recipe_only_where_it_is_not_asyrps():
    assert editing_tables.setting_words({"window": [200, 500]}) == "200–500"
    assert editing_tables.setting_words({"window": [200, 500], "lambda_l1": 10.0, "scale": 0.8}) == \
        "200–500, λ_L1 10, c 0.8"


def test_bar_table_names_the_criteria_an_edit_fails():
    entry = editing_entry("bar", "source", "classifier", 0.864, 0.0)
    entry["bar"] = {"smiling ≥ 0.8": True, "reconstruction smiling ≤ 0.02": True, "kept ≥ 0.95": False,
                    "PSNR ≥ 27 dB": True}
    passing = dict(entry, bar=dict.fromkeys(entry["bar"], True))
    rows = editing_tables.bar_table([entry, passing])[2:]
    assert rows[0].startswith("| classifier | 300–500 | 0.864 ± 0.010 |") and rows[0].endswith("| kept |")
    assert "| 0.500 |" in rows[0] and len(rows[0].split("|")) == 11   # nine columns: they fit the page
    assert rows[1].endswith("| — |")


def test_a_larger_source_models_table_is_its_own_with_its_own_naive_baseline():
    small = [editing_entry("table", "naive", "classifier", 0.02, 0.0),
             editing_entry("table", "SDFT λ=3", "classifier", 0.03, 0.0)]
    large = [dict(editing_entry("table", "naive 64 px", "classifier", 0.01, 0.0), size=64),
             dict(editing_entry("table", "SDFT λ=3 64 px", "classifier", 0.50, 0.0), size=64)]
    groups = editing_tables.by_size(large + small)
    assert list(groups) == [32, 64] and groups[64] == large
    assert "SDFT λ=3 +0.50 — more than naive" in editing_tables.verdict(large)   # named plainly under its heading
    assert "naive +0.01" in editing_tables.verdict(large)        # the 64-px naive, not the 32-px one
    page = editing_tables.render({"config": {"n_train": 1, "n_test": 1, "asyrp": {"steps": "40", "epochs": 5,
                                                                                "batch": 4, "t_boost": 100}},
                                  "seeds": [0, 1, 2], "device": "cpu", "commit": "a" * 40, "wall_seconds": 1.0,
                                  "command": "x", "summary": small + large, "table_64_note": "Two calls."})
    assert "**Table 2 analogue on the 64-px source model's fine-tunings, classifier" in page
    assert page.index("Two calls.") > page.index("the 64-px source model's fine-tunings")   # under its table
