"""``darkroom table`` fills a paper row only from a run on the row's dataset, protocol and model variant.

Fixture ``results.json`` files are written into ``tmp_path`` in the schema of ResultsWriter (``dataset``,
``variant``, ``training``, ``metric_variants``); no training.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import types
from pathlib import Path

import pytest

from experiments import table

REPO = Path(__file__).resolve().parents[1]
ZERO_DCE = {"net": {"class_path": "networks.zero_dce.DCENet", "init_args": {"n_layers": 7, "n_filters": 32,
                                                                             "n_iterations": 8}},
            "loss_form": "official", "exposure_level": 0.6,
            "loss_weights": {"spa": 1.0, "exp": 10.0, "col": 5.0, "tv": 200.0}}
SICE_PROTOCOL = {"pairs": "low_per_sequence=half", "resize": [1200, 900], "resample": "bicubic", "colour": "rgb"}
METRICS = {"psnr": 16.0, "ssim": 0.55, "mae": 100.0, "input_psnr": 10.5, "input_ssim": 0.3, "input_mae": 200.0}


def dataset(name: str = "sice_part2", count: int = 767, paper_count: int | None = 767, unit: str = "pairs",
            named_by: str | None = "count", protocol: dict | None = None) -> dict:
    matches = None if paper_count is None else count == paper_count
    return {"name": name, "named_by": named_by, "count": count, "paper_count": paper_count,
            "count_matches_paper": matches, "unit": unit, "root": f"/data/{name}", "sha256": "ab" * 32,
            "protocol": dict(SICE_PROTOCOL if protocol is None else protocol)}


def write_run(root: Path, name: str, *, paper: str = "zero_dce", init_args: dict | None = None,
              metrics: dict | None = None, when: str = "2026-02-01T00:00:00", variant: str | None = "zero_dce",
              data: dict | None = None, steps: int | None = 1234, pretrained: str | None = None,
              legacy: bool = False) -> Path:
    """One run folder with a results.json; ``legacy``: the schema before ``dataset``/``variant``/``training``."""
    run = root / paper / name
    run.mkdir(parents=True)
    results = {"paper": paper, "metrics": METRICS if metrics is None else metrics, "time": when,
               "run_dir": str(run), "git_commit": "abc123", "checkpoint": str(run / "checkpoints" / "last.ckpt"),
               "pretrained": pretrained, "dataset_root": {"test_root": "/data/Part2"},
               "config": {"model": {"init_args": {**ZERO_DCE, **(init_args or {})}},
                          "data": {"init_args": {"test_root": "/data/Part2"}}}}
    if not legacy:
        results.update({"dataset": dataset() if data is None else data, "variant": variant,
                        "training": {"steps": steps, "epochs": None},
                        "metric_variants": {"psnr": "rgb, data range 1, per-image mean"}})
    (run / "results.json").write_text(json.dumps(results))
    return run


def rows_of(paper: str, name: str, runs: list[dict]) -> dict[str, table.FilledRow]:
    spec = table.load_paper_results(paper)
    t = next(t for t in spec["tables"] if t["name"] == name)
    return {r.method: r for r in table.fill_table(t, paper, runs)}


def spec_table(paper: str, name: str) -> dict:
    return next(t for t in table.load_paper_results(paper)["tables"] if t["name"] == name)


def your_runs_block(md: str) -> str:
    assert "#### Your runs" in md
    return md.split("#### Your runs", 1)[1]


# -- matching ---------------------------------------------------------------------------------------------------

def test_matching_run_fills_the_row_with_delta(tmp_path):
    write_run(tmp_path, "paper_run")
    runs = table.load_runs(tmp_path)
    rows = rows_of("zero_dce", "table2_full_reference", runs)
    assert rows["Zero-DCE"].ours["psnr"] == 16.0 and rows["Zero-DCE"].warning is None
    assert rows["input (no enhancement)"].ours["psnr"] == 10.5
    md = table.render_all("zero_dce", runs, only="table2_full_reference")
    assert "| Zero-DCE | 16.570 | 16.000 | -0.570 | 0.590 | 0.550 | -0.040 |" in md
    assert "paper_run, 1234 steps" in md
    assert "#### Your runs" not in md  # the one run is in the table
    assert "metrics: psnr: rgb, data range 1, per-image mean" in md  # the run's metric definitions are shown


def test_zero_dce_pp_run_never_fills_a_zero_dce_row(tmp_path):
    # Same hyper-parameters as the Zero-DCE rows (n_layers, exposure_level …): only the variant differs.
    write_run(tmp_path, "pp", variant="zero_dce_pp")
    runs = table.load_runs(tmp_path)
    main = rows_of("zero_dce", "table2_full_reference", runs)
    assert main["Zero-DCE"].run is None and main["input (no enhancement)"].run is None
    assert main["Zero-DCE++"].ours["psnr"] == 16.0
    assert main["Zero-DCE"].rejected and "variant zero_dce_pp ≠ zero_dce" in main["Zero-DCE"].rejected[0][1]
    exposure = rows_of("zero_dce", "exposure_level_ablation", runs)
    assert exposure["E=0.6"].run is None
    size = rows_of("zero_dce", "network_size_ablation", runs)
    assert all(r.run is None for r in size.values())
    md = table.render_all("zero_dce", runs, only="exposure_level_ablation")
    block = your_runs_block(md)
    assert "| pp |" in block and "exposure_level_ablation/E=0.6: variant zero_dce_pp ≠ zero_dce" in block


def test_msrs_run_fills_only_the_msrs_table(tmp_path):
    write_run(tmp_path, "msrs_run", paper="refusion", variant="ivif", init_args={"task": "ivif"},
              metrics={"en": 6.6, "qabf": 0.67}, data=dataset("msrs", 361, 361, protocol={"task": "ivif"}))
    runs = table.load_runs(tmp_path)
    assert rows_of("refusion", "ivif_msrs", runs)["ReFusion"].ours["en"] == 6.6
    for other in ("ivif_tno", "ivif_roadscene"):
        row = rows_of("refusion", other, runs)["ReFusion"]
        assert row.run is None and "dataset msrs ≠" in row.rejected[0][1][0]
    md = table.render_all("refusion", runs, only="ivif_tno")
    assert "| ReFusion | – | – | – |" in md and "no run" in md
    assert "msrs_run" in your_runs_block(md)
    full = table.render_all("refusion", runs)
    assert "#### Your runs" not in full  # it fills the MSRS table, so it is nobody's leftover
    assert "| ReFusion | – | 6.600 | – |" in full  # the paper number is not found: no Δ


def test_mif_run_fills_its_modality_only(tmp_path):
    write_run(tmp_path, "ct", paper="refusion", variant="mif", init_args={"task": "mif"}, metrics={"en": 4.9},
              data=dataset("harvard_mri_ct", 21, 21, protocol={}))
    runs = table.load_runs(tmp_path)
    assert rows_of("refusion", "mif_harvard_mri_ct", runs)["ReFusion"].ours["en"] == 4.9
    assert rows_of("refusion", "mif_harvard_mri_pet", runs)["ReFusion"].run is None


def test_custom_11_pair_run_goes_to_your_runs_without_delta(tmp_path):
    write_run(tmp_path, "improvised", metrics={"psnr": 17.22, "ssim": 0.6, "mae": 90.0},
              data=dataset("custom", 11, None, named_by=None))
    runs = table.load_runs(tmp_path)
    rows = rows_of("zero_dce", "table2_full_reference", runs)
    assert all(r.run is None for r in rows.values())
    md = table.render_all("zero_dce", runs, only="table2_full_reference")
    main, block = md.split("#### Your runs", 1)
    assert "17.220" not in main and "0.650" not in main  # neither our number nor a Δ against the paper
    line = next(x for x in block.splitlines() if x.startswith("| improvised |"))
    assert "| custom | 11 pairs | 1234 steps | zero_dce | 17.220 | 0.600 | 90.000 |" in line
    assert "dataset custom ≠ sice_part2" in line
    header = next(x for x in block.splitlines() if x.startswith("| your run |"))
    assert "Δ" not in header


def test_protocol_mismatch_goes_to_your_runs(tmp_path):
    write_run(tmp_path, "small", data=dataset(protocol={**SICE_PROTOCOL, "resize": [600, 450]}))
    write_run(tmp_path, "no_resize_key", data=dataset(protocol={"pairs": "low_per_sequence=half"}))
    runs = table.load_runs(tmp_path)
    assert rows_of("zero_dce", "table2_full_reference", runs)["Zero-DCE"].run is None
    block = your_runs_block(table.render_all("zero_dce", runs, only="table2_full_reference"))
    assert "protocol resize [600, 450] ≠ [1200, 900]" in block
    assert "protocol resize not recorded (paper: [1200, 900])" in block


def test_bf16_evaluation_does_not_fill_an_fp32_paper_row(tmp_path):
    run = write_run(tmp_path, "bf16")
    results = json.loads((run / "results.json").read_text())
    results["precision"] = {"trainer": "32-true", "evaluation": "bf16 networks (autocast), fp32 metrics"}
    (run / "results.json").write_text(json.dumps(results))
    runs = table.load_runs(tmp_path)
    assert rows_of("zero_dce", "table2_full_reference", runs)["Zero-DCE"].run is None
    block = your_runs_block(table.render_all("zero_dce", runs, only="table2_full_reference"))
    assert "evaluated in bf16 networks (autocast), fp32 metrics, not fp32" in block


def test_count_mismatch_fills_the_row_with_a_warning_and_no_delta(tmp_path):
    write_run(tmp_path, "partial", data=dataset(count=11, named_by="config"))
    runs = table.load_runs(tmp_path)
    row = rows_of("zero_dce", "table2_full_reference", runs)["Zero-DCE"]
    assert row.ours["psnr"] == 16.0 and row.warning == "⚠ 11 of 767 pairs"
    md = table.render_all("zero_dce", runs, only="table2_full_reference")
    line = next(x for x in md.splitlines() if x.startswith("| Zero-DCE |"))
    assert line.startswith("| Zero-DCE | 16.570 | 16.000 | n/c | 0.590 | 0.550 | n/c |") and "⚠ 11 of 767 pairs" in line
    assert "-0.570" not in md
    assert "⚠ 11 of 767 pairs: filled, but the test set is not the paper's, so no Δ" in md


def test_full_count_run_is_preferred_over_a_newer_partial_one(tmp_path):
    write_run(tmp_path, "full", when="2026-01-01T00:00:00")
    write_run(tmp_path, "partial", when="2026-03-01T00:00:00", metrics={**METRICS, "psnr": 18.0},
              data=dataset(count=11, named_by="config"))
    row = rows_of("zero_dce", "table2_full_reference", table.load_runs(tmp_path))["Zero-DCE"]
    assert row.ours["psnr"] == 16.0 and row.warning is None and row.n_runs == 2


def test_count_in_results_yaml_wins_over_the_runs_own_claim(tmp_path):
    # The run claims its count matches (its own paper_count is wrong); results.yaml says 767.
    data = {**dataset(count=786, paper_count=786), "count_matches_paper": True}
    write_run(tmp_path, "786", data=data)
    row = rows_of("zero_dce", "table2_full_reference", table.load_runs(tmp_path))["Zero-DCE"]
    assert row.warning == "⚠ 786 of 767 pairs"


def test_mae_is_shown_without_delta_and_with_a_note(tmp_path):
    write_run(tmp_path, "paper_run")
    md = table.render_all("zero_dce", table.load_runs(tmp_path), only="table2_full_reference")
    line = next(x for x in md.splitlines() if x.startswith("| Zero-DCE |"))
    assert "| 98.780 | 100.000 | n/c |" in line
    assert "- mae: the paper's MAE unit/definition is not found" in md and "(Δ not computed)" in md
    spec = spec_table("zero_dce", "exposure_level_ablation")
    assert spec["no_delta"] == ["mae"] and "mae" in spec["metric_notes"]  # encoded in results.yaml


def test_metric_variant_columns_never_fill_the_plain_column(tmp_path):
    write_run(tmp_path, "gtmean", metrics={"psnr_gtmean": 20.0, "ssim_y": 0.7})
    runs = table.load_runs(tmp_path)
    assert rows_of("zero_dce", "table2_full_reference", runs)["Zero-DCE"].run is None
    block = your_runs_block(table.render_all("zero_dce", runs, only="table2_full_reference"))
    assert "psnr_gtmean 20.000" in block


def test_older_results_json_without_dataset_goes_to_your_runs(tmp_path):
    write_run(tmp_path, "old", legacy=True)
    runs = table.load_runs(tmp_path)
    assert all(r.run is None for r in rows_of("zero_dce", "table2_full_reference", runs).values())
    block = your_runs_block(table.render_all("zero_dce", runs, only="table2_full_reference"))
    line = next(x for x in block.splitlines() if x.startswith("| old |"))
    assert "| not recorded | – | unknown | not recorded | 16.000 |" in line
    assert "no dataset recorded (older results.json)" in line


def test_training_length_text():
    assert table.training_text({"training": {"steps": None, "epochs": None, "from": "pretrained"}}) == "official weights"
    assert table.training_text({"training": {"steps": None, "epochs": None}, "pretrained": "/r/epoch=0003.ckpt"}) == (
        "checkpoint epoch=0003.ckpt")
    assert table.training_text({"training": {"steps": 500, "epochs": 2}, "pretrained": "x.pth"}) == (
        "500 steps (2 epochs) from pretrained weights")
    assert table.training_text({"training": {"steps": None, "epochs": 3}}) == "3 epochs"
    assert table.training_text({"training": {"steps": None, "epochs": None, "from": "untrained"}}) == "not trained"
    assert table.training_text({}) == "unknown"


def test_official_weights_and_unknown_test_set(tmp_path):
    write_run(tmp_path, "released", paper="deepfuse", variant="official", steps=None,
              pretrained="DF_model_Epoch99.npz", init_args={"net": {"init_args": {"architecture": "official"}}},
              metrics={"ms_mef_ssim": 0.9, "mef_ssim": 0.91},
              data=dataset("mefb", 100, 100, protocol={"exposures": "all", "resize_max_side": None}))
    write_run(tmp_path, "downscaled", paper="deepfuse", variant="official", init_args={"net": {"init_args": {"architecture": "official"}}},
              steps=None, pretrained="DF_model_Epoch99.npz", metrics={"ms_mef_ssim": 0.95}, data=dataset("mefb", 100, 100, protocol={"resize_max_side": 512}))
    runs = table.load_runs(tmp_path)
    row = rows_of("deepfuse", "mefb_average", runs)["DeepFuse (released DF_model_Epoch99)"]
    assert row.ours["ms_mef_ssim"] == 0.9 and row.provenance["training"] == "official weights"
    # The DeepFuse paper's own test sequences are not found (dataset: null): no run fills that row.
    paper_row = rows_of("deepfuse", "paper_mef_ssim", runs)["DeepFuse"]
    assert paper_row.run is None and "the paper's test set is not found" in paper_row.rejected[0][1]
    md = table.render_all("deepfuse", runs)
    assert "| DeepFuse (released DF_model_Epoch99) | 0.897 | 0.900 | 0.003 | released, official weights |" in md
    line = next(x for x in your_runs_block(md).splitlines() if x.startswith("| downscaled |"))
    assert "| official weights | official |" in line
    assert "mefb_average/DeepFuse (released DF_model_Epoch99): protocol resize_max_side 512 ≠ null" in line


# -- formats ----------------------------------------------------------------------------------------------------

@pytest.fixture
def mixed_runs(tmp_path) -> list[dict]:
    write_run(tmp_path, "paper_run", when="2026-01-01T00:00:00")
    write_run(tmp_path, "partial_small", init_args={"net": {"init_args": {"n_layers": 3, "n_filters": 32, "n_iterations": 8}}}, data=dataset(count=11, named_by="config"))
    write_run(tmp_path, "pp_custom", variant="zero_dce_pp", data=dataset("custom", 11, None, named_by=None))
    write_run(tmp_path, "old", legacy=True)
    return table.load_runs(tmp_path)


def test_csv_reflects_warnings_notes_and_your_runs(mixed_runs):
    text = table.render_all("zero_dce", mixed_runs, "csv", only="network_size_ablation")
    main_text, others_text = text.split("\n\n")
    main = list(csv.DictReader(io.StringIO(main_text)))
    small = next(r for r in main if r["method"] == "3-32-8")
    assert small["psnr ours"] == "16.000" and small["psnr Δ"] == "n/c" and small["warning"] == "⚠ 11 of 767 pairs"
    full = next(r for r in main if r["method"] == "7-32-8")
    assert full["psnr Δ"] == "-0.570" and full["mae Δ"] == "n/c" and "MAE unit/definition is not found" in full["notes"]
    assert "abc123" in full["notes"]  # provenance
    others = {r["your run"]: r for r in csv.DictReader(io.StringIO(others_text))}
    assert set(others) == {"pp_custom", "old"}
    assert others["pp_custom"]["dataset"] == "custom" and others["pp_custom"]["count"] == "11 pairs"
    assert others["pp_custom"]["variant"] == "zero_dce_pp" and others["pp_custom"]["psnr"] == "16.000"
    assert not any("Δ" in k for k in others["old"])


def test_latex_reflects_warnings_notes_and_your_runs(mixed_runs):
    tex = table.render_all("zero_dce", mixed_runs, "latex", only="network_size_ablation")
    assert tex.count(r"\begin{tabular}") == 2 and tex.count(r"\end{tabular}") == 2
    assert r"\textbf{!} 11 of 767 pairs" in tex and "n/c" in tex
    assert r"\multicolumn{12}{p{0.9\linewidth}}{\footnotesize mae: the paper's MAE" in tex
    assert r"your run & dataset & count & training & variant" in tex and r"pp\_custom" in tex
    body = [line for line in tex.splitlines() if not line.startswith("%")]
    assert not any("_" in line.replace(r"\_", "") for line in body)  # every underscore escaped
    assert not {"⚠", "Δ", "≠", "§", "–"} & set("".join(body))


def test_markdown_reflects_warnings_notes_and_your_runs(mixed_runs):
    md = table.render_all("zero_dce", mixed_runs, only="network_size_ablation")
    assert "| 3-32-8 | 14.500 | 16.000 | n/c |" in md and "⚠ 11 of 767 pairs" in md
    assert "| 7-32-8 | 16.570 | 16.000 | -0.570 |" in md
    block = your_runs_block(md)
    assert "| pp_custom |" in block and "| old |" in block and "partial_small" not in block
    assert "\n## " not in md  # the demo counts its own level-2 headings


@pytest.mark.parametrize("paper", sorted(p.parent.name for p in REPO.glob("experiments/*/results.yaml")))
@pytest.mark.parametrize("fmt", ["markdown", "csv", "latex"])
def test_every_paper_renders_with_runs_of_every_kind(paper, fmt, mixed_runs):
    runs = [{**r, "paper": paper} for r in mixed_runs]
    text = table.render_all(paper, runs, fmt)
    name = r"pp\_custom" if fmt == "latex" else "pp_custom"
    assert name in text and "| old |" in text if fmt == "markdown" else name in text  # listed as your runs


# -- results.yaml ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("paper", sorted(p.parent.name for p in REPO.glob("experiments/*/results.yaml")))
def test_every_row_that_takes_runs_declares_dataset_and_variant(paper):
    spec = table.load_paper_results(paper)
    assert table.check_spec(spec) == []
    for t in spec["tables"]:
        for row in t.get("rows") or []:
            if "match" in row:
                req = table.requirements(t, row)
                assert "dataset" in req and req["variant"], f"{paper}/{t['name']}/{row['method']}"


def test_check_spec_flags_a_row_without_variant_or_dataset():
    spec = {"tables": [{"name": "t", "metrics": {"psnr": "max"},
                        "rows": [{"method": "a", "match": {}}, {"method": "b", "dataset": "x", "match": {}}]}]}
    problems = table.check_spec(spec)
    assert any("t/a" in p and "dataset" in p for p in problems)
    assert any("t/b" in p and "variant" in p for p in problems)


def test_fusion_tables_are_split_per_dataset():
    spec = table.load_paper_results("refusion")
    datasets = {t["name"]: t.get("dataset") for t in spec["tables"]}
    assert datasets["ivif_msrs"] == "msrs" and datasets["ivif_tno"] == "tno"
    assert datasets["ivif_roadscene"] == "roadscene"
    assert {datasets[f"mif_harvard_{m}"] for m in ("mri_ct", "mri_pet", "mri_spect")} == {
        "harvard_mri_ct", "harvard_mri_pet", "harvard_mri_spect"}


# -- W&B ------------------------------------------------------------------------------------------------------

def test_wandb_runs_fill_rows_only_with_a_dataset_in_their_config(monkeypatch):
    class FakeRun:
        def __init__(self, name: str, config: dict) -> None:
            self.url = f"https://wandb.ai/e/p/runs/{name}"
            self.summary = {"test/psnr": 16.0, "test/ssim": 0.55, "test/mae": 100.0, "_step": 3}
            self.config = config
            self.metadata = {"git": {"commit": "def456"}}
            self.created_at = "2026-02-01T00:00:00"

    base = {"model": {"init_args": dict(ZERO_DCE)}}
    fake_runs = [FakeRun("plain", base),
                 FakeRun("described", {**base, "dataset": dataset(), "variant": "zero_dce",
                                       "training": {"steps": 500, "epochs": None}})]
    api = types.SimpleNamespace(runs=lambda path, filters: fake_runs)
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=lambda: api))
    monkeypatch.setattr("experiments.env.wandb_configured", lambda: True)
    runs = table.load_wandb_runs("e/p", "zero_dce")
    assert "dataset" not in runs[0] and runs[1]["dataset"]["name"] == "sice_part2"
    rows = rows_of("zero_dce", "table2_full_reference", runs)
    assert rows["Zero-DCE"].run is runs[1] and rows["Zero-DCE"].provenance["training"] == "500 steps"
    md = table.render_all("zero_dce", runs, only="table2_full_reference")
    assert "| plain | not recorded |" in your_runs_block(md)
