"""Training dynamics: fine-tune the proxy and record what it learns (ppl_epoch, trajectory, lp, lp_app).

- ``schedule``: the step plan (data order, batches, lr, which steps are scored);
- ``train``: the training loop;
- ``state``: resumable training state (safetensors + JSON);
- ``stage``: the ``train-proxy`` stage of a run directory.
"""
