"""`kprune info MODEL --groups`: the channel groups that pruning acts on."""

import keras
import pytest
from typer.testing import CliRunner

from kprune.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def group_rows(output: str) -> list[dict[str, list[str]]]:
    """The groups table as rows: column header → the cell's lines."""
    rows, headers, current = [], None, None
    for line in output.splitlines():
        if line.startswith("┃") and headers is None:
            headers = [cell.strip() for cell in line.strip("┃").split("┃")]
        elif line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            if cells[0]:  # a group number starts a new row
                current = {header: [] for header in headers}
                rows.append(current)
            for header, cell in zip(headers, cells):
                if cell:
                    current[header].append(cell)
    return rows


def row_of(output: str, producer: str) -> dict[str, list[str]]:
    rows = [row for row in group_rows(output) if producer in row["producers"]]
    assert len(rows) == 1, output
    return rows[0]


@keras.saving.register_keras_serializable(package="kprune_tests")
class ChannelShuffle(keras.layers.Identity):
    """A layer kprune has no handler for: it overrides Identity's call."""

    def call(self, x):
        return keras.ops.flip(x, axis=-1)


@pytest.fixture(scope="module")
def residual_file(tmp_path_factory):
    """Stem conv → nested block with a residual Add → Flatten → Dense."""
    keras.utils.set_random_seed(0)
    layers = keras.layers
    block_in = keras.Input((4, 4, 6))
    x = layers.Conv2D(6, 3, padding="same", name="inner")(block_in)
    block = keras.Model(block_in, layers.Add(name="add")([block_in, x]), name="block")
    inputs = keras.Input((8, 8, 3))
    x = ChannelShuffle(name="shuffle")(inputs)
    x = layers.Conv2D(6, 3, strides=2, padding="same", name="stem")(x)
    x = layers.Flatten(name="flat")(block(x))
    outputs = layers.Dense(3, name="logits")(layers.Dense(5, name="hidden")(x))
    path = tmp_path_factory.mktemp("models") / "residual.keras"
    keras.Model(inputs, outputs, name="residual").save(path)
    return path


def test_squeezenet_groups_show_concat_offsets_and_frozen_output():
    result = invoke("info", "squeezenet1_1", "--input-shape", "32,32,3", "--groups")
    assert result.exit_code == 0, result.output
    assert "26 channel groups, 25 prunable (25 prunable layers)" in result.stdout
    assert "FLOPs" not in result.stdout  # the groups replace the layer table
    assert len(group_rows(result.stdout)) == 26
    expand = row_of(result.stdout, "fire2_expand3x3")
    assert expand["channels"] == ["64"] and expand["prunable"] == ["yes"]
    assert expand["passes / joins"] == ["fire2_concat [64..127 of 128]"]
    assert expand["consumers [span]"] == ["fire3_squeeze1x1 [64..127 of 128]"]
    squeeze = row_of(result.stdout, "fire2_squeeze1x1")
    assert squeeze["consumers [span]"] == ["fire2_expand1x1 [0..15 of 16]", "fire2_expand3x3 [0..15 of 16]"]
    assert " ".join(row_of(result.stdout, "conv10")["prunable"]).startswith("no: frozen by")


def test_coupled_producers_share_a_row_through_a_nested_model(residual_file):
    result = invoke("info", residual_file, "--groups", "--unsupported", "freeze")
    assert result.exit_code == 0, result.output
    coupled = row_of(result.stdout, "stem")
    assert coupled["producers"] == ["stem", "inner"]  # flattened block; its Add couples them
    assert coupled["passes / joins"] == ["add", "flat [0..95 of 96]"]  # 4×4 positions × 6
    assert coupled["consumers [span]"] == ["inner [0..5 of 6]", "hidden [0..95 of 96]"]
    assert " ".join(row_of(result.stdout, "logits")["prunable"]) == ("no: frozen by model output 'logits'")
    assert "3 channel groups, 2 prunable (3 prunable layers)" in result.stdout


def test_unsupported_layer_is_one_error_line_naming_the_fix(residual_file):
    result = invoke("info", residual_file, "--groups")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "shuffle (ChannelShuffle, a subclass of Identity that overrides call)" in lines[0]
    assert "--unsupported freeze" in lines[0]


def test_bad_unsupported_value_is_refused():
    result = invoke("info", "squeezenet1_1", "--groups", "--unsupported", "maybe")
    assert result.exit_code == 1
    assert "`unsupported` must be one of ('error', 'freeze'). Received unsupported='maybe'" in (result.stderr)


def test_without_groups_the_layer_table_is_unchanged(residual_file):
    result = invoke("info", residual_file)
    assert result.exit_code == 0, result.output
    assert "channel groups" not in result.stdout and "FLOPs" in result.stdout
