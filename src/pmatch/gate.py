"""The deployment gate: ship a candidate only if its F1 is good enough and beats production."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pmatch.config import GateParams


@dataclass(frozen=True)
class GateDecision:
    deploy: bool
    reasons: list[str] = field(default_factory=list)
    candidate_f1: float | None = None
    production_f1: float | None = None
    production_version: str | None = None

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> GateDecision:
        return cls(**json.loads(Path(path).read_text()))


def _f1(metrics: dict | None) -> float | None:
    """The F1 in a metrics dict, or None when it is absent, not a number, NaN or not in [0, 1]."""
    if not isinstance(metrics, dict):
        return None
    value = metrics.get("f1")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if math.isnan(value) or not 0 <= value <= 1:
        return None
    return float(value)


def decide(
    candidate_metrics: dict | None,
    production_metrics: dict | None,
    production_version: str | None,
    params: GateParams,
) -> GateDecision:
    """Deploy when candidate F1 >= min_f1 and >= production F1 - max_regression.

    Missing or NaN candidate metrics always mean no deploy. A production model whose
    metrics cannot be read is reported, and the candidate is judged on min_f1 alone.
    """
    candidate_f1 = _f1(candidate_metrics)
    production_f1 = _f1(production_metrics)
    reasons = []
    deploy = True
    if candidate_f1 is None:
        return GateDecision(
            False,
            ["candidate metrics are missing or F1 is not a number in [0, 1]: not deploying"],
            None,
            production_f1,
            production_version,
        )
    if candidate_f1 < params.min_f1:
        deploy = False
        reasons.append(f"candidate F1 {candidate_f1:.4f} < gate.min_f1 {params.min_f1:.4f}")
    else:
        reasons.append(f"candidate F1 {candidate_f1:.4f} >= gate.min_f1 {params.min_f1:.4f}")
    if production_version is None:
        reasons.append("no production model yet")
    elif production_f1 is None:
        reasons.append(f"production {production_version} has no readable F1; judged on min_f1 only")
    else:
        floor = production_f1 - params.max_regression
        if candidate_f1 < floor:
            deploy = False
            reasons.append(
                f"candidate F1 {candidate_f1:.4f} is worse than production {production_version} "
                f"F1 {production_f1:.4f} by more than gate.max_regression {params.max_regression}"
            )
        else:
            reasons.append(
                f"candidate F1 {candidate_f1:.4f} >= production {production_version} F1 "
                f"{production_f1:.4f} - max_regression {params.max_regression}"
            )
    return GateDecision(deploy, reasons, candidate_f1, production_f1, production_version)


def read_metrics(path: str | Path) -> dict | None:
    """metrics.json as a dict, or None when the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def run_gate(
    metrics_path: str | Path, registry, params: GateParams, out_path: str | Path
) -> GateDecision:
    """Decides on the candidate at metrics_path against the registry's production model
    and writes the decision (deploy or not, with reasons) to out_path."""
    production_version, production_metrics = registry.production_metrics()
    decision = decide(read_metrics(metrics_path), production_metrics, production_version, params)
    decision.save(out_path)
    return decision
