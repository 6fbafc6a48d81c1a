"""What runs on a pod outside the trainer: `python -m training.pod run|stop` and what it drives.

- commands.py    run (the supervisor) and stop (this pod's self-stop); `python -m training.pod`
- supervisor.py  preflight, training with --resume auto, the outcome line, the pod's end
- cluster.py     the torchrun launcher of an Instant Cluster's node
- cuda_build.py  the torch build this host's driver runs (stdlib only: install.sh runs it bare)
- smoke.py       the CUDA path in minutes (launch --smoke, make gpu-check)

Imports: the shared modules of training/, training.runpod; never training.experiment (the laptop).
"""
