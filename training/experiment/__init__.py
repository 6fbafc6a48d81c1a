"""Experiments as git branches, from a laptop: `python -m training.experiment new|sweep|launch|status|
stop|compare|queue|fleet|publish|pull|export|data`. Never imports torch (tests/test_import_directions.py).

One experiment = one branch NAME holding configs/experiments/<module>.py (names.py says how NAME maps to
the module and the outputs directory; training.runpod.names to the pod). commands/ holds one module per
command group and the flags they share; the rest is what they do: gitops (git plumbing), configfile
(writing and validating experiment files), create (new, sweep), launch, status (pods and stop), runs
(reading a run's files), volume (the network volume's S3 API), transfer (pull and data push), compare,
billing, fleet_queue (the fleet's SQLite queue), fleet (the controller and `fleet status`), numbers
(the numeric options' ranges). RunPod's API is training.runpod.client.
"""
