"""RunPod, as both the laptop and the pod talk to it.

- client.py  the REST API v2 boundary (retries, refusals, pods, logs)
- names.py   pod names: exp-NAME and back
- prices.py  GPU rates, spot or on-demand, and the pod's own rate

Imports nothing heavy (no torch): the laptop CLI imports it.
"""
