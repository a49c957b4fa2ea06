"""Copy artifacts to and from the Modal volume (SL_MODAL_VOLUME, default
subliminal-learning-data; REMOTE is relative to its root).

    python scripts/modal_volume.py upload data/owl/filtered.jsonl owl/filtered.jsonl
    python scripts/modal_volume.py download owl data/owl_from_modal
    python scripts/modal_volume.py ls owl

Folders are copied recursively. Existing files are kept unless --force is given.
"""

from pathlib import Path

from cli import ArgumentParser, repo_module, run_script


def main() -> None:
    modal_client = repo_module("modal_client")
    parser = ArgumentParser(__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload", help="LOCAL file or folder -> REMOTE path on the volume")
    up.add_argument("local", type=Path, metavar="LOCAL")
    up.add_argument("remote", metavar="REMOTE")
    down = sub.add_parser("download", help="REMOTE file or folder -> LOCAL path")
    down.add_argument("remote", metavar="REMOTE")
    down.add_argument("local", type=Path, metavar="LOCAL")
    for p in (up, down):
        p.add_argument("--force", action="store_true", help="Overwrite existing files")
    ls = sub.add_parser("ls", help="List a folder of the volume")
    ls.add_argument("remote", nargs="?", default="/", metavar="REMOTE")
    args = parser.parse_args()

    if args.command == "upload":
        n = modal_client.upload(args.local, args.remote, force=args.force)
        print(f"uploaded {n} file(s) to {args.remote}")
    elif args.command == "download":
        n = modal_client.download(args.remote, args.local, force=args.force)
        print(f"downloaded {n} file(s) to {args.local}")
    else:
        for entry in modal_client.list_volume(args.remote):
            print(entry)


if __name__ == "__main__":
    run_script(main)
