"""The Hugging Face Hub: access, download, and publish (with its card).

- access.py    tokens, local-or-Hub ids, repository checks, dataset loads, the explanation of a refusal
- download.py  a published repository's files, into a directory or the Hub cache
- publish.py   final/ with its card to the Hub; the end of a finished run (after_run)

Below the model, the data and the evaluation, which read through access.py: so never imports them
(a finished run's test-split scoring is handed to after_run; the export is training.model.export).
"""
