"""The `pmatch` command's error handling: one line by default, the traceback with --debug."""

from __future__ import annotations

import json
import zipfile

import pytest

from pmatch.cli import main


def corrupt_model_folder(folder):
    """A model folder whose model.keras is a zip cut short, as a killed download leaves it."""
    folder.mkdir()
    with zipfile.ZipFile(folder / "model.keras", "w") as archive:
        archive.writestr("config.json", json.dumps({"padding": "x" * 4096}))
        archive.writestr("model.weights.h5", b"\0" * 4096)
    whole = (folder / "model.keras").read_bytes()
    (folder / "model.keras").write_bytes(whole[: len(whole) // 2])
    (folder / "vocab.json").write_text("{}")
    (folder / "preprocessing.json").write_text(
        json.dumps(
            {
                "image_size": 16,
                "max_tokens": 8,
                "image_features": "pixels",
                "text_features": "tokens",
            }
        )
    )
    return folder


def test_a_truncated_model_is_called_corrupt_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PMATCH_DEBUG", raising=False)
    model = corrupt_model_folder(tmp_path / "model")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("image_path,text\n")

    code = main(
        ["score", "--model", str(model), "--pairs", str(pairs), "--out", str(tmp_path / "out.csv")]
    )

    assert code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"pmatch score: error: {model / 'model.keras'} is corrupt (")
    assert error.endswith("): download or train it again")


def test_debug_raises_with_the_traceback(tmp_path, monkeypatch):
    from pmatch.model.inference import ModelFolderError

    monkeypatch.delenv("PMATCH_DEBUG", raising=False)
    model = corrupt_model_folder(tmp_path / "model")
    arguments = ["score", "--model", str(model), "--pairs", "x.csv", "--out", "y.csv"]
    with pytest.raises(ModelFolderError, match="is corrupt"):
        main(["--debug", *arguments])
    monkeypatch.setenv("PMATCH_DEBUG", "1")
    with pytest.raises(ModelFolderError, match="is corrupt"):
        main(arguments)
