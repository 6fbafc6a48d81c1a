"""Experiments as git branches: `python -m training.experiment new|sweep|launch|status|stop|compare|queue|fleet`.

One experiment = one branch NAME holding configs/experiments/<module>.py (names.py says how NAME maps to
the module, the pod and the outputs directory). Modules: names, gitops (git plumbing), configfile
(writing and validating experiment files), create (new, sweep), runpod_client (the API boundary),
launch, status (pods and stop), runs (reading a run's files), compare, fleet_queue (the fleet's SQLite
queue), fleet (the controller and `fleet status`).
"""
