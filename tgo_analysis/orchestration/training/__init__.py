"""The demos' seeded training runs: a ViT on digits (``vit``, with the shared training.json log) and a LLaMA decoder on pydoc (``decoder``)."""
