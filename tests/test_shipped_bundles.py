"""The bundles in models/ against the package: every board-side program is the package's
template, and each manifest lists exactly the files of its folder (scripts/checks/shipped_bundles.py)."""

import hashlib
import json
import shutil

import pytest

from scripts.checks import shipped_bundles
from scripts.checks.shipped_bundles import BUNDLES, COMMAND, ROOT, stale_files


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_committed_bundle_matches_the_package(bundle):
    problems = stale_files(bundle)
    assert not problems, "\n".join(problems)


def test_every_shipped_model_has_its_bundle_and_nothing_else_is_one():
    assert sorted(str(path.relative_to(ROOT)) for path in (ROOT / "models").glob("*_bundle")) == sorted(
        BUNDLES
    )
    assert all((ROOT / model).is_file() for model in BUNDLES.values())


def _copy(bundle, tmp_path):
    shutil.copytree(ROOT / bundle, tmp_path / bundle)
    return tmp_path / bundle


def test_a_drifted_or_missing_template_copy_is_named_with_the_command(tmp_path):
    bundle = "models/squeezenet1_1_fmnist_latency_bundle"
    folder = _copy(bundle, tmp_path)
    (folder / "run_bundle.py").write_text("# edited by hand\n")
    (folder / "kprune_profile.py").unlink()
    problems = stale_files(bundle, root=tmp_path)
    assert any(
        f"{bundle}/run_bundle.py differs from kprune/export/templates/run_bundle.py" in p for p in problems
    )
    assert any(f"{bundle}/kprune_profile.py is missing" in p for p in problems)
    assert all(f"Fix: {COMMAND} {bundle}" in p for p in problems)


def test_the_manifest_list_of_files_must_match_the_folder(tmp_path):
    bundle = "models/squeezenet1_1_fmnist_pruned_bundle"
    folder = _copy(bundle, tmp_path)
    (folder / "notes.txt").write_text("not written by kprune bundle\n")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["labels.txt"] = hashlib.sha256(b"other labels").hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    problems = stale_files(bundle, root=tmp_path)
    assert [p.split(". Fix:")[0] for p in problems] == [
        f"{bundle}/notes.txt is not in the manifest's list of files",
        f"{bundle}/labels.txt does not match its sha256 in the manifest",
    ]


def test_the_refresh_command_is_kprune_bundle_with_force():
    assert shipped_bundles.bundle_command("models/squeezenet1_1_fmnist_pruned_bundle") == [
        "kprune",
        "bundle",
        "models/squeezenet1_1_fmnist_pruned.keras",
        "--out",
        "models/squeezenet1_1_fmnist_pruned_bundle",
        "--force",
    ]
