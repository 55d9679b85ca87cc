"""Analysis results: which metrics (``selection``), their layout (``template``), the resumable
results store (``store``) and the provenance attrs every result carries (``provenance``)."""
