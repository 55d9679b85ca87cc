"""The two embedded defaults: `tgo demo` (a ViT on digits, ``image``) and `tgo demo --text` (a decoder and an encoder on pydoc, ``text``)."""
