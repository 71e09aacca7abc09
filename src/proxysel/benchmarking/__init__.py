"""``proxysel bench``: does a proxy's selection train a target as well as the whole pool?

config.py (BenchConfig), presets.py (tiny, synthetic, cpu, gpu), synthetic.py (the controlled
pool), target.py (train + evaluate one target), runner.py (the bench), report.py (tables, plot).
Named ``benchmarking`` so that it does not shadow the public function ``proxysel.bench``.
"""
