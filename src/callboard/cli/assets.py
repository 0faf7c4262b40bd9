"""`callboard assets`: upload, download (sha256-verified) and list stored files."""

from __future__ import annotations

import argparse
import json
import sys
from itertools import islice
from pathlib import Path
from typing import Any

from ..client import Client
from .common import UsageError, add_command, client_flags


def add_commands(commands: Any) -> None:
    assets = add_command(
        commands,
        "assets",
        "upload, download and list assets",
        "Files stored by callboard: job output (namespace 'generated') and uploads "
        "('uploads', at most 10 MiB each by default). Assets belong to a company.",
        [
            "ASSET=$(callboard assets upload brief.pdf --company acme)",
            "callboard assets download $ASSET -o copy.pdf",
            "callboard assets list --company acme --source-task task-7",
        ],
    )
    actions = assets.add_subparsers(dest="action", metavar="ACTION", required=True)

    upload = actions.add_parser(
        "upload",
        help="upload a file; prints the new asset's id",
        description="Upload a file into the company's uploads and print the new asset's id "
        "(--json: the whole asset). A job's input can then name the asset id.",
        epilog="example:\n  callboard assets upload brief.pdf --company acme",
    )
    upload.add_argument("path", metavar="PATH")
    upload.add_argument("--company", help="company name or id")
    upload.add_argument("--content-type", help="default: guessed from the file name")
    client_flags(upload)
    upload.set_defaults(handler=_upload)

    download = actions.add_parser(
        "download",
        help="download an asset, verifying its sha256",
        description="Stream an asset to a file and verify its size and sha256 against the "
        "server's record before keeping it: on a mismatch nothing is written and the "
        "command exits 1. Prints the path written.",
        epilog="examples:\n  callboard assets download ASSET_ID\n"
        "  callboard assets download ASSET_ID -o out/ --company acme",
    )
    download.add_argument("asset_id", metavar="ASSET_ID")
    download.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="file or directory to write (default: the original file name, here)",
    )
    download.add_argument("--company", help="company name or id (default: looked up)")
    download.add_argument(
        "--redirect",
        action="store_true",
        help="take the bytes straight from the object store when the server's storage is "
        "S3 (it hands out a URL valid for 5 minutes); this machine must reach the store",
    )
    client_flags(download)
    download.set_defaults(handler=_download)

    listing = actions.add_parser(
        "list",
        help="list assets, newest first",
        description="List a company's assets (every company your token sees by default).",
        epilog="example:\n  callboard assets list --company acme --source-task task-7 --json",
    )
    listing.add_argument("--company", help="company name or id")
    listing.add_argument("--source-task", metavar="ID", help="only assets of this task")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (50)")
    client_flags(listing)
    listing.set_defaults(handler=_list)


def _upload(client: Client, args: argparse.Namespace) -> None:
    path = Path(args.path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    asset = client.upload(path, args.company, content_type=args.content_type)
    if args.json:
        print(json.dumps(asset.to_dict(), indent=2))
        return
    print(asset.id)
    print(f"uploaded {path.name}: {asset.byte_size} bytes, sha256 {asset.sha256}", file=sys.stderr)


def _download(client: Client, args: argparse.Namespace) -> None:
    if args.output is not None and not Path(args.output).parent.is_dir():
        raise UsageError(f"{args.output}: no such directory")
    done = client.download(args.asset_id, args.output, company=args.company, redirect=args.redirect)
    if args.json:
        print(json.dumps({"path": str(done.path), "asset": done.asset.to_dict()}, indent=2))
        return
    print(done.path)
    print(f"{done.asset.byte_size} bytes, sha256 {done.asset.sha256} verified", file=sys.stderr)


def _list(client: Client, args: argparse.Namespace) -> None:
    assets = list(
        islice(
            client.assets(args.company, source_task_id=args.source_task, page_size=100),
            max(args.limit, 0),
        )
    )
    if args.json:
        print(json.dumps([asset.to_dict() for asset in assets], indent=2))
        return
    for asset in assets:
        print(
            f"{asset.id}  {asset.namespace}  {asset.byte_size}  {asset.content_type}  "
            f"{asset.original_filename}  task={asset.source_task_id or '-'}"
        )
