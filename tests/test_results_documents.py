"""The continual results document and README's summary of it are what the committed run
records give (experiments/continual_report.py), and every record names its machine and
commit."""

import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import continual_report  # noqa: E402


def test_continual_results_document_is_generated_from_the_records():
    with open(continual_report.DOCUMENT) as f:
        committed = f.read()
    assert continual_report.document(continual_report.load()) == committed


def test_readme_continual_summary_is_generated_from_the_records():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    begin, end = continual_report.SUMMARY_MARKERS
    assert readme.count(begin) == 1 and readme.count(end) == 1
    block = readme[readme.index(begin) + len(begin):readme.index(end)]
    assert block.strip() == continual_report.summary(continual_report.load()).strip()


def test_every_continual_record_names_its_settings_seed_commit_and_machine():
    paths = glob.glob(os.path.join(continual_report.RECORDS, "*", "*.json"))
    assert paths
    for path in paths:
        with open(path) as f:
            record = json.load(f)
        assert record["settings"]["seed"] == record["seed"], path
        assert len(record["commit"].split("+")[0]) == 40, path
        assert "[" in record["hardware"], path  # CPU model [ISA flags]
        assert record["results"], path


def test_mask_step_size_defaults_are_the_validation_streams_choice():
    from wtl_tf.continual import la_maml, osaka
    from wtl_tf.continual import run as continual_run

    chosen = continual_report.chosen_mask_lr(continual_report.load()["validation"])
    assert chosen["sparse_la_maml"] == la_maml.DEFAULT_MASK_LR \
        == continual_run.SPARSE_LA_MAML_MASK_LR
    assert chosen["sparse_continual_maml"] == osaka.DEFAULT_MASK_LR \
        == continual_run.SPARSE_CONTINUAL_MAML_MASK_LR
