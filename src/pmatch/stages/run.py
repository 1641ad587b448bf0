"""`pmatch run`: the main job, through Airflow, on the embedded defaults."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--project", help="project folder (default: PMATCH_PROJECT_DIR or .)")


def run(args) -> None:
    from pmatch.main_job import run_main_job

    run_main_job(args.project)
