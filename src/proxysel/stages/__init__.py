"""Stages: the steps that read a pool and write a run folder, each resumable by fingerprint.

- ``stages.score``:       ``proxysel score``: the registered signals, shard by shard;
- ``stages.train_proxy``: ``proxysel train-proxy``: fine-tune the proxy, record ppl_epoch, lp, trajectory;
- ``stages.select``:      ``proxysel select``: a registered selector over the stored scores;
- ``stages.inputs``:      reading the pool (and reference set) and recording what was read;
- ``stages.sharded``:     the resumable shard loop the signal stages share.

They compose the components below them (signals, dynamics, selectors, store, data, models) and are
called by the pipeline, the bench and the API above them; none of them imports those.
"""
