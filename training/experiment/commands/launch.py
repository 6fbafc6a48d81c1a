"""`launch NAME`: rent a RunPod pod that trains an experiment branch (training.experiment.launch)."""

from __future__ import annotations

import dataclasses
import sys

from training.experiment import launch as launching
from training.experiment.commands import flags


def register(commands) -> None:
    launch = commands.add_parser("launch", help="rent a RunPod pod that trains an experiment branch",
                                 epilog=flags.EPILOG)
    launch.add_argument("name", metavar="NAME")
    flags.gpus(launch, "the next tried when RunPod's catalog has none to rent")
    flags.pricing(launch)
    flags.bid(launch, "needed with --spot")
    launch.add_argument("--volume-id", metavar="ID",
                        help=f"network volume, mounted at {launching.VOLUME_MOUNT}; the pod goes to its data center "
                             f"(default: a {launching.POD_VOLUME_GB} GB pod volume, deleted with the pod)")
    launch.add_argument("--image", default=launching.DEFAULT_IMAGE, help="container image (default: %(default)s)")
    launch.add_argument("--fallback-on-demand", action="store_true",
                        help="with --spot: when no spot pod can be had, launch an on-demand pod instead")
    launch.add_argument("--cloud", choices=("SECURE", "COMMUNITY"),
                        help="RunPod cloud (default: SECURE; network volumes exist only there)")
    launch.add_argument("--remote", help="git remote the pod clones (default: the branch's upstream, else origin)")
    launch.add_argument("--config", metavar="PATH", help="config file in the branch (default: its experiment file)")
    launch.add_argument("--wandb-entity", help="W&B entity, for the run URL (default: $WANDB_ENTITY)")
    flags.secrets(launch)
    launch.add_argument("--no-auto-stop", dest="auto_stop", action="store_false",
                        help="keep the pod running after training (default: it stops itself, AUTO_STOP=1)")
    flags.deadman(launch)
    launch.add_argument("--smoke", action="store_true",
                        help="run the smoke run on the pod (python -m training.pod.smoke: every path, small) "
                             "instead of training")
    launch.add_argument("--dry-run", action="store_true", help="print the exact request and send nothing")
    launch.set_defaults(run=cmd_launch)


def cmd_launch(args, argv) -> int:
    from training.experiment import numbers
    from training.experiment.gitops import Git

    numbers.check(args)
    gpus = flags.gpu_list(args.gpu)
    options = launching.LaunchOptions(
        name=args.name, gpu=gpus[0], spot=args.spot, bid=args.bid, volume_id=args.volume_id, image=args.image,
        cloud=args.cloud, remote=args.remote, config=args.config, wandb_entity=args.wandb_entity,
        wandb_secret=args.wandb_secret, hf_secret=args.hf_secret, git_secret=args.git_secret,
        auto_stop=args.auto_stop, fallback_on_demand=args.fallback_on_demand, max_lifetime_h=args.max_lifetime_hours,
        idle_stop_min=args.idle_stop_minutes, dry_run=args.dry_run,
        smoke=args.smoke)
    for gpu in gpus[:-1]:
        try:
            return launching.launch(Git.here(), dataclasses.replace(options, gpu=gpu), sys.stdout)
        except launching.NoCapacity as problem:  # nothing was rented: the catalog said so first
            print(f"note: {problem}; trying the next --gpu", flush=True)
    return launching.launch(Git.here(), dataclasses.replace(options, gpu=gpus[-1]), sys.stdout)
