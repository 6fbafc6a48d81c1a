"""`data push DIR --volume-id ID`: a dataset folder onto the network volume, from a machine without a
GPU (training.experiment.transfer)."""

from __future__ import annotations

import os

from training.errors import EXIT_OK, UserError
from training.experiment.commands import flags
from training.experiment.volume import add_volume_flag


def register(commands) -> None:
    data = commands.add_parser("data", help="datasets on the network volume", epilog=flags.EPILOG)
    actions = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    push = actions.add_parser("push", epilog=flags.EPILOG, help="upload a local dataset folder to the network volume "
                              "(resumable: files already there are skipped)")
    push.add_argument("directory", metavar="DIR", help="a folder dataset_name reads (metadata.jsonl or .csv beside "
                                                     "the images, split subfolders, or parquet files)")
    add_volume_flag(push, "the network volume to upload to (its data/NAME)")
    push.add_argument("--as", dest="name", metavar="NAME", help="its name on the volume (default: DIR's own name)")
    data.set_defaults(run=cmd_data)


def cmd_data(args, argv) -> int:
    from training.experiment.transfer import push_dataset
    from training.experiment.volume import open_volume

    if not args.volume_id:
        raise UserError("data push: --volume-id ID is required (the network volume to upload to)")
    name = args.name or os.path.basename(os.path.normpath(args.directory))
    flags.check_names([name])
    if not os.path.isdir(args.directory):
        raise UserError(f"data push {args.directory}: no such directory")
    push_dataset(args.directory, open_volume(args.volume_id), name, progress=None)
    return EXIT_OK
