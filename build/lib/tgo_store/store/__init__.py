"""The store itself: its schema, creation and appends, refusals, commit records, layout and writes.

Everything that decides which bytes a tgo store holds and when a block counts as written;
capture (``tgo_store.capture``) hands it blocks and knows nothing of Zarr.
"""
