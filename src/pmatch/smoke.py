"""The smoke test after a deployment: the production model, loaded afresh through the
pointer, must reproduce the scores its canary pairs got at evaluation.

Run as `python -m pmatch.smoke --project DIR --version V` (pmatch.pipeline.deploy starts it
in a new process, so nothing of the deploying process's state is reused). Exit 0 and a JSON
line when it passes; exit 1 and one line "smoke test failed: ..." when it does not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


class SmokeError(RuntimeError):
    """The deployed version failed its smoke test; the message says how."""


def smoke_test(registry, version: str, cache_dir: str | Path, tolerance: float) -> dict:
    """Downloads production through the pointer (verified against its manifest), checks the
    pointer names version, scores the version's canary.csv from its photos (canary/) and
    texts as `pmatch score` does, and compares with expected_score.

    Raises SmokeError naming the pointer, the file or the pair that is off by more than
    tolerance (absolute).
    """
    import numpy as np
    import pandas as pd

    from pmatch.artifacts import CANARY_FILE
    from pmatch.model.inference import Matcher
    from pmatch.score import score_pairs_file

    production, folder = registry.download_production(cache_dir)
    if production != version:
        raise SmokeError(f"production names {production}, not the deployed {version}")
    canary = Path(folder) / CANARY_FILE
    if not canary.is_file():
        raise SmokeError(f"{registry.uri('models', version, CANARY_FILE)}: missing")
    matcher = Matcher.load(folder)
    with tempfile.TemporaryDirectory(prefix="pmatch-smoke-") as temporary:
        scored = Path(temporary) / "scored.csv"
        score_pairs_file(matcher, canary, scored)
        frame = pd.read_csv(scored, dtype={"image_path": str, "text": str}, keep_default_na=False)
    expected = pd.to_numeric(frame["expected_score"], errors="coerce").to_numpy(dtype="float64")
    error = np.abs(frame["score"].to_numpy(dtype="float64") - expected)
    error[np.isnan(error)] = np.inf
    worst = int(np.argmax(error))
    if error[worst] > tolerance:
        raise SmokeError(
            f"canary pair {worst + 1} of {len(frame)} ({frame['image_path'].iloc[worst]}) "
            f"scores {frame['score'].iloc[worst]:.6f}, expected "
            f"{frame['expected_score'].iloc[worst]} (tolerance {tolerance})"
        )
    return {
        "version": version,
        "canary_pairs": int(len(frame)),
        "largest_difference": float(error.max()),
        "tolerance": tolerance,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pmatch.smoke", description=__doc__)
    parser.add_argument("--project", help="project folder (default: PMATCH_PROJECT_DIR or .)")
    parser.add_argument("--version", required=True, help="the version just promoted")
    args = parser.parse_args(argv)
    try:
        from pmatch.config import load_params
        from pmatch.pipeline import project_settings, workspace
        from pmatch.storage import open_registry, s3_settings

        space = workspace(args.project)
        params = load_params(space.params)
        with s3_settings(project_settings(space)) as settings:
            result = smoke_test(
                open_registry(settings),
                args.version,
                space.model_cache,
                params.gate.smoke_tolerance,
            )
    except Exception as error:  # noqa: BLE001 - every failure fails the smoke test, in one line
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"smoke test failed: {message}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
