"""`python -m training.pod run|stop`: the pod's own commands (training.pod.commands), as setup_pod.sh calls them."""

import sys

from training.pod.commands import main

sys.exit(main())
