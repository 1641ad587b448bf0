"""Where the pipeline's files live in a project folder; dvc.yaml declares the same paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    """The project folder (where dvc.yaml and params.yaml are) and its pipeline paths.

    dvc.yaml passes these paths to each stage explicitly; the steps DVC does not run
    (gate, deploy, monitor) read them from here, and a test checks both agree.
    """

    root: Path

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def sample_dir(self) -> Path:
        return self.root / "data" / "sample"

    @property
    def preprocessed_dir(self) -> Path:
        return self.root / "data" / "preprocessed"

    @property
    def validate_dir(self) -> Path:
        return self.root / "reports" / "validate"

    @property
    def model_dir(self) -> Path:
        return self.root / "models" / "candidate"

    @property
    def evaluate_dir(self) -> Path:
        return self.root / "reports" / "evaluate"

    @property
    def gate_file(self) -> Path:
        return self.root / "reports" / "gate" / "decision.json"

    @property
    def monitor_dir(self) -> Path:
        return self.root / "reports" / "monitor"

    @property
    def evidently_dir(self) -> Path:
        """Evidently's UI workspace of every monitoring run's report (`make monitor-ui`)."""
        return self.root / ".pmatch" / "evidently"

    @property
    def model_cache(self) -> Path:
        """Downloaded registry versions (immutable, so cached by version id)."""
        return self.root / ".pmatch" / "models"

    def resolve(self, path: str | Path) -> Path:
        """A params or CLI path: relative ones are relative to the project folder."""
        path = Path(path)
        return path if path.is_absolute() else self.root / path
