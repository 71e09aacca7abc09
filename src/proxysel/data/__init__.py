"""Data: read a pool into normalised Examples (keeping each record's bytes) and write selections back.

>>> from proxysel.data import read_pool, write_selected  # doctest: +SKIP
>>> pool = read_pool("train.jsonl", on_bad_record="skip")
>>> write_selected(pool.examples[:100], "out")
"""

from proxysel.data.example import FORMATS, Example, Message, Pool, SkippedRecord
from proxysel.data.readers import read_pool
from proxysel.data.writers import write_selected

__all__ = ["FORMATS", "Example", "Message", "Pool", "SkippedRecord", "read_pool", "write_selected"]
