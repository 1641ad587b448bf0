"""`pmatch models`: list the registry's versions, show one, promote one, roll production back."""

from __future__ import annotations

import getpass
import json
import os
from datetime import UTC, datetime

from pmatch.stages.common import print_json, say


def add_arguments(parser) -> None:
    parser.add_argument("--project", help="project folder (default: PMATCH_PROJECT_DIR or .)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "list",
        help="one JSON line per complete version, oldest first",
        description="One JSON line per complete version: version, created_at, model_sha256, "
        "data_version, f1, status (production / previous / other).",
    )
    show = actions.add_parser("show", help="a version's manifest, status and promotion log")
    show.add_argument("version")
    promote = actions.add_parser("promote", help="point production at a complete version")
    promote.add_argument("version")
    promote.add_argument("--reason", help='why (default: "command line by $USER")')
    rollback = actions.add_parser(
        "rollback", help="point production back at its previous version, or at --to VERSION"
    )
    rollback.add_argument("--to", help="the version to roll back to (default: the previous one)")
    rollback.add_argument("--reason", help='why (default: "command line by $USER")')


def _default_reason() -> str:
    try:
        user = os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        user = "unknown user"
    return f"command line by {user}"


def run(args) -> None:
    from pmatch.pipeline import project_settings, workspace
    from pmatch.storage import open_registry, s3_settings

    space = workspace(args.project)
    with s3_settings(project_settings(space)) as settings:
        registry = open_registry(settings)
        ACTIONS[args.action](registry, args)


def _pointer_or_warning(registry) -> dict | None:
    """The production pointer; a damaged one is reported, not fatal, so versions stay listable."""
    from pmatch.registry import RegistryError

    try:
        return registry.production()
    except RegistryError as error:
        say(f"warning: {error}")
        return None


def status_of(version: str, pointer: dict | None) -> str:
    if pointer is None:
        return "other"
    if version == pointer["version"]:
        return "production"
    if version == pointer.get("previous_version"):
        return "previous"
    return "other"


def list_versions(registry, args) -> None:
    pointer = _pointer_or_warning(registry)
    for manifest in registry.versions():
        row = {
            "version": manifest["version"],
            "created_at": manifest.get("created_at"),
            "model_sha256": manifest.get("model_sha256"),
            "data_version": manifest.get("data_version"),
            "f1": manifest.get("f1"),
            "status": status_of(manifest["version"], pointer),
        }
        print(json.dumps(row), flush=True)


def show_version(registry, args) -> None:
    from pmatch.registry import RegistryError

    manifest = registry.manifest(args.version)
    if manifest is None:
        raise RegistryError(
            f"{registry.uri('models', args.version)}: no such complete version; "
            "`pmatch models list` shows them"
        )
    pointer = _pointer_or_warning(registry)
    promotions = [
        entry
        for entry in registry.promotion_log()
        if args.version in (entry.get("from_version"), entry.get("to_version"))
    ]
    print_json(
        {
            "version": args.version,
            "status": status_of(args.version, pointer),
            "in_production": status_of(args.version, pointer) == "production",
            "manifest": manifest,
            "promotions": promotions,
        }
    )


def _current(registry) -> tuple[str | None, bool]:
    """(version in production, whether production.json is damaged and being repaired)."""
    from pmatch.registry import RegistryError

    try:
        pointer = registry.production()
    except RegistryError as error:
        say(f"production.json is damaged ({error}); replacing it")
        return None, True
    return (pointer["version"] if pointer else None), False


def promote_version(registry, args) -> None:
    current, repair = _current(registry)
    if current == args.version:
        say(f"{args.version} is already in production; nothing changed")
        print_json(registry.production())
        return
    pointer = registry.promote(
        args.version,
        reason=args.reason or _default_reason(),
        # A person's action happens now.
        when=datetime.now(UTC).replace(microsecond=0).isoformat(),
        expected_current=current,
        repair=repair,
    )
    say(f"production: {current} -> {pointer['version']}")
    print_json(pointer)


def rollback_version(registry, args) -> None:
    current, repair = _current(registry)
    pointer = registry.rollback(
        to=args.to,
        reason=args.reason or _default_reason(),
        when=datetime.now(UTC).replace(microsecond=0).isoformat(),
        repair=repair,
    )
    if pointer["version"] == current:
        say(f"{current} is already in production; nothing changed")
    else:
        say(f"production rolled back: {current} -> {pointer['version']}")
    print_json(pointer)


ACTIONS = {
    "list": list_versions,
    "show": show_version,
    "promote": promote_version,
    "rollback": rollback_version,
}
