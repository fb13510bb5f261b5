"""scripts/common.py: the helpers every script shares (JSON, doc sections, the budget pick)."""

import json

from scripts.common import best_within_budget, load_json, markers, replace_section, write_json


def test_json_is_written_with_its_folder_and_read_back(tmp_path):
    path = tmp_path / "evidence" / "facts.json"
    write_json(path, {"test_accuracy": 0.9223})
    assert path.read_text() == json.dumps({"test_accuracy": 0.9223}, indent=1) + "\n"
    assert load_json(path) == load_json(str(path)) == {"test_accuracy": 0.9223}


def test_section_is_added_once_then_replaced_between_its_markers(tmp_path):
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n\nbefore\n")
    replace_section(doc, "seeds", "Criteria over several seeds", "first")
    replace_section(doc, "seeds", "Criteria over several seeds", "second")
    start, end = markers("seeds")
    text = doc.read_text()
    assert text == f"# Results\n\nbefore\n\n## Criteria over several seeds\n\n{start}\nsecond\n{end}\n"


def test_budget_pick_takes_the_preferred_row_within_the_budget():
    rows = [  # the 60% target is the smallest model within 0.5 point of 93.00%; 70% is not
        {"target": 30, "accuracy": 93.20, "flops": 700},
        {"target": 50, "accuracy": 92.80, "flops": 500},
        {"target": 60, "accuracy": 92.50, "flops": 400},
        {"target": 70, "accuracy": 92.49, "flops": 300},
    ]

    def fewest_flops(reference, budget):
        return best_within_budget(
            rows, budget, drop=lambda r: reference - r["accuracy"], prefer=lambda r: -r["flops"]
        )

    assert fewest_flops(93.00, 0.5)["target"] == 60
    assert fewest_flops(93.00, 0.1)["target"] == 30
    assert fewest_flops(94.00, 0.5) is None


def test_budget_pick_breaks_a_tie_of_targets_by_accuracy():
    rows = [  # results.py: the highest target within 1 point; between criteria, the most accurate
        {"criterion": "l2", "target": 90, "drop": 0.8, "accuracy": 0.915},
        {"criterion": "taylor", "target": 90, "drop": 0.4, "accuracy": 0.919},
        {"criterion": "random", "target": 95, "drop": 3.0, "accuracy": 0.892},
    ]
    best = best_within_budget(
        rows, 1.0, drop=lambda r: r["drop"], prefer=lambda r: (r["target"], r["accuracy"])
    )
    assert best["criterion"] == "taylor"
