"""`pmatch ingest`: merges a delivery (or every pending one) into the training catalogue."""

from __future__ import annotations

from pathlib import Path

from pmatch.stages.common import add_params_argument, params_from, print_json, say


def add_arguments(parser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--delivery", help="a delivery folder or s3:// URI (catalog.csv + photos)")
    which.add_argument(
        "--pending",
        action="store_true",
        help="every delivery in the inbox (PMATCH_INBOX) not ingested yet, oldest first",
    )
    parser.add_argument("--catalog", type=Path, help="catalogue folder (default: data.catalog)")
    parser.add_argument(
        "--reports", type=Path, default=Path("reports/ingest"), help="folder for the reports"
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="no S3: no dvc push, no S3 record (the catalogue is still versioned by DVC)",
    )
    add_params_argument(parser)


def run(args) -> None:
    from pmatch.config import load_settings
    from pmatch.ingest import ingest_delivery, pending_deliveries
    from pmatch.storage import s3_settings

    params = params_from(args)
    catalog = args.catalog or Path(params.data.catalog)
    project_root = args.params.resolve().parent
    settings = load_settings()
    with _no_s3() if args.local else s3_settings(settings) as resolved:
        sources = (
            pending_deliveries(settings.inbox, catalog, resolved)
            if args.pending
            else [args.delivery]
        )
        if not sources:
            say(f"no pending delivery in {settings.inbox}")
        for source in sources:
            say(f"ingesting delivery {source} into {catalog}")
            result = ingest_delivery(source, catalog, params, args.reports, project_root, resolved)
            if result.already_ingested:
                say(
                    f"delivery {result.delivery} was already ingested with the same content: "
                    f"nothing changed (data version {result.data_version})"
                )
            else:
                say(f"report: {result.report_html}")
            print_json(result.as_json())


def _no_s3():
    import contextlib

    return contextlib.nullcontext(None)
