"""docs/results.md, docs/results/continual.md and README's results summary are what the
committed records give (experiments/results_report.py, continual_report.py), no table in
them lacks a record, and every record names its settings, seed, machine and commit."""

import glob
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import continual_report  # noqa: E402
import results_report  # noqa: E402


def test_continual_results_document_is_generated_from_the_records():
    with open(continual_report.DOCUMENT) as f:
        committed = f.read()
    assert continual_report.document(continual_report.load()) == committed


def test_results_document_is_generated_from_the_records():
    with open(results_report.DOCUMENT) as f:
        committed = f.read()
    assert results_report.document(results_report.load_fewshot()) == committed


def test_readme_results_summary_is_generated_from_the_records():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    begin, end = results_report.SUMMARY_MARKERS
    assert readme.count(begin) == 1 and readme.count(end) == 1
    block = readme[readme.index(begin) + len(begin):readme.index(end)]
    assert block.strip() == results_report.summary(results_report.load_fewshot(),
                                                   continual_report.load()).strip()


def test_every_results_table_in_readme_and_docs_is_generated():
    """A table of measurements (a row with a ± interval) outside the generated documents and
    README's generated block would be a number without a record."""
    generated = [results_report.DOCUMENT, continual_report.DOCUMENT]
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    begin, end = results_report.SUMMARY_MARKERS
    readme = readme[:readme.index(begin)] + readme[readme.index(end):]
    texts = {"README.md": readme}
    for path in glob.glob(os.path.join(ROOT, "docs", "*.md")):
        if path not in generated:
            with open(path) as f:
                texts[os.path.relpath(path, ROOT)] = f.read()
    tables = {name for name, text in texts.items()
              if any(line.startswith("|") and "±" in line for line in text.splitlines())}
    assert not tables, f"hand-written tables in {sorted(tables)}"


def test_every_fewshot_record_names_its_flags_seed_commit_machine_and_episodes():
    paths = glob.glob(os.path.join(results_report.FEWSHOT, "*.json"))
    assert paths
    paths += glob.glob(os.path.join(results_report.PRECISION, "*.json"))
    for path in paths:
        with open(path) as f:
            record = json.load(f)
        assert record["settings"]["seed"] == record["seed"], path
        assert len(record["commit"].split("+")[0]) == 40, path
        assert "[" in record["hardware"], path
        results = record["results"]
        per_task = results["test_per_task"]
        assert len(next(iter(per_task.values()))) == results["test_tasks"], path


def test_every_continual_record_names_its_settings_seed_commit_and_machine():
    paths = glob.glob(os.path.join(continual_report.RECORDS, "*", "*.json"))
    claim = glob.glob(os.path.join(continual_report.RECORDS, "claim", "*", "*.json"))
    pretraining = glob.glob(os.path.join(continual_report.RECORDS, "claim", "*", "pretraining",
                                         "*.json"))
    assert paths and claim
    for path in paths + claim + pretraining:
        with open(path) as f:
            record = json.load(f)
        assert record["settings"]["seed"] == record["seed"], path
        assert len(record["commit"].split("+")[0]) == 40, path
        assert "[" in record["hardware"], path  # CPU model [ISA flags]
        assert record["results"], path
        # A meta-pretrained start names the held-out runs it started from, in order, and
        # their records are committed beside it.
        for seed in record.get("pretrained_on", []):
            name = (f"{record['stream']}_{record['algorithm']}_{record['arm']}_pretrain_"
                    f"s{seed}.json")
            folder = os.path.dirname(path)
            assert os.path.exists(os.path.join(
                folder if folder.endswith("pretraining") else os.path.join(folder, "pretraining"),
                name)), (path, name)


def test_mask_step_size_defaults_are_the_validation_streams_choice():
    from wtl_tf.continual import la_maml, osaka
    from wtl_tf.continual import protocol

    chosen = continual_report.chosen_mask_lr(continual_report.load()["validation"])
    assert chosen["sparse_la_maml"] == la_maml.DEFAULT_MASK_LR \
        == protocol.SPARSE_LA_MAML_MASK_LR
    assert chosen["sparse_continual_maml"] == osaka.DEFAULT_MASK_LR \
        == protocol.SPARSE_CONTINUAL_MAML_MASK_LR


def _run(seed, la, ra, bti=0.0):
    return {"seed": seed, "results": {"learning_accuracy": la, "retained_accuracy": ra,
                                      "backward_transfer": bti}}


def test_the_claims_answers_follow_the_rules_fixed_before_the_runs():
    curve = [[_run(s, 0.30, 0.25) for s in range(3)], [_run(s, 0.40, 0.33) for s in range(3)]]
    # Inside the LA range: RA minus the straight line at the arm's LA.
    excess, outside = continual_report.above_curve([_run(0, 0.35, 0.30)], curve)
    assert excess == [pytest.approx(0.01)] and sum(outside.values()) == 0
    beyond = [_run(s, 0.45, 0.40) for s in range(3)]
    excess, outside = continual_report.above_curve(beyond, curve)
    assert outside["dominates"] == 3 and "dominates" in continual_report.claim_answer(excess,
                                                                                         outside)
    below = [_run(s, 0.2, 0.2) for s in range(3)]
    assert continual_report.above_curve(below, curve)[1]["dominated"] == 3
    win = continual_report.placement_answer([0.02, 0.03, 0.025], [0.01, 0.012, 0.011])
    lose = continual_report.placement_answer([0.02, 0.03, 0.025], [-0.01, -0.012, -0.011])
    mixed = continual_report.placement_answer([0.02, -0.03, 0.025], [0.01, 0.012, 0.011])
    assert (win, lose, mixed) == ("learned placement wins", "learned placement loses",
                                  "undecided")


def test_precision_rows_pair_bf16_with_fp32_by_seed():
    def record(name, seed, accuracy):
        return {"name": name, "seed": seed, "results": {"test": {"accuracy": {"mean": accuracy}}}}

    groups = {"omniglot_5way_maml_fp32": [record("f", 0, 0.80), record("f", 1, 0.90),
                                          record("f", 2, 0.70)],
              "omniglot_5way_maml_bf16": [record("b", 1, 0.85), record("b", 0, 0.82)]}
    [(title, label, fp32, bf16, diff)] = results_report.precision_rows(groups)
    assert label == "accuracy" and title.startswith("Omniglot 5-way 1-shot, MAML")
    assert fp32.tolist() == [0.90, 0.80] and bf16.tolist() == [0.85, 0.82]  # seeds 1, 0
    assert diff == pytest.approx([-0.05, 0.02])


def test_first_trace_table_is_generated_from_its_record():
    sys.path.insert(0, ROOT)
    from benchmarks import first_trace

    with open(first_trace.RECORD) as f:
        record = json.load(f)
    assert record["hardware"] and record["commit"] and record["processes"] >= 3
    assert set(record["configs"]) == set(first_trace.shipped_configs())
    with open(first_trace.DOCUMENT) as f:
        text = f.read()
    assert first_trace.document(record, text) == text


def test_precision_table_is_generated_from_its_record_fp32_bf16_and_pytorch_in_one_run():
    sys.path.insert(0, ROOT)
    from benchmarks import precision

    found = precision.records()
    assert found[0][0] == precision.RECORD
    for _, record in found:
        assert record["hardware"] and record["commit"] and record["rounds"] >= 3
        for runs in record["configs"].values():
            assert len(runs["fp32"]) == len(runs["bf16"]) == record["rounds"]
            assert {run["precision"] for run in runs["bf16"]} == {"bfloat16"}
    for runs in found[0][1]["configs"].values():
        assert all(run["torch"] for run in runs["fp32"])  # the seed code, in the same run
    with open(precision.DOCUMENT) as f:
        text = f.read()
    assert precision.document(found, text) == text


def test_the_20way_comparison_takes_the_500_iteration_runs_once_both_methods_have_them():
    short = ("omniglot_20way_maml", "omniglot_20way_sparse_maml")
    longer = ("omniglot_20way_maml_500", "omniglot_20way_sparse_maml_500")
    assert results_report.pair_names({longer[0]: []}, "20") == short  # one method only
    assert results_report.pair_names(dict.fromkeys(longer, []), "20") == longer
    assert results_report.pair_names(dict.fromkeys(longer, []), "5") == (
        "omniglot_5way_maml", "omniglot_5way_sparse_maml")
