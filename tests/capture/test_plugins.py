"""Plug-in registries: built-in entries dispatch; third-party entries arrive through entry points."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from tests.support import tiny_vit
from tgo_store.capturers import CAPTURERS, Capturer, make_capturer
from tgo_store.errors import TgoError
from tgo_store.sources import SOURCES, DataSource, open_source

PLUGIN = textwrap.dedent('''
    import numpy as np
    import torch
    from tgo_store.capturers.base import TokenLayout, images_to_device, stack_parts
    from tgo_store.sources.base import Batch, PlainSource, spans

    class OnesSource(PlainSource):
        name = "ones"
        def __init__(self, n):
            self.sample_ids = np.arange(n, dtype=np.int64)
            self.labels = np.full(n, -1, np.int64)
        def __len__(self):
            return len(self.sample_ids)
        def fingerprint(self):
            return f"ones-{len(self)}"
        def batches(self, batch_size, start=0, stop=None):
            for lo, hi in spans(len(self), batch_size, start, stop):
                yield Batch(np.ones((hi - lo, 3, 2), np.float32), self.sample_ids[lo:hi], self.labels[lo:hi])

    class OnesEntry:
        name = "ones"
        def can_open(self, spec):
            return spec.startswith("ones:")
        def open(self, spec, options):
            return OnesSource(int(spec.split(":")[1]))

    class DoublerCapturer:
        layer_indices, layer_names, feature_dim = [0, 1], ["in", "double"], 2
        token_indices = np.arange(3)
        token_layout = TokenLayout.uniform("text", 3)
        def prepare(self, inputs, device, dtype):
            return images_to_device(inputs, device, dtype)
        def parts(self, inputs):
            return [[inputs], [2 * inputs]]
        def __call__(self, inputs):
            return stack_parts(self.parts(inputs))

    class DoublerEntry:
        name = "doubler"
        def can_capture(self, model, hook_modules):
            return getattr(model, "is_doubler", False)
        def build(self, model, *, layers, tokens, hook_modules, example):
            return DoublerCapturer()
''')


@pytest.fixture
def fake_plugin(tmp_path, monkeypatch):
    """A package installed only as metadata on sys.path, declaring both entry-point groups."""
    (tmp_path / "tgo_fake_plugin.py").write_text(PLUGIN)
    info = tmp_path / "tgo_fake_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tgo-fake-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[tgo.sources]\nones = tgo_fake_plugin:OnesEntry\n\n[tgo.capturers]\ndoubler = tgo_fake_plugin:DoublerEntry\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    SOURCES.reload()
    CAPTURERS.reload()
    yield
    SOURCES.reload()
    CAPTURERS.reload()


def test_entry_points_register_a_source_and_a_capturer(fake_plugin) -> None:
    assert "ones" in SOURCES.names() and "doubler" in CAPTURERS.names()
    assert SOURCES.names()[-1] == "image-folder"  # the fallback stays last
    source = open_source("ones:5")
    assert isinstance(source, DataSource) and len(source) == 5
    model = torch.nn.Identity()
    model.is_doubler = True
    capturer = make_capturer(model)
    assert isinstance(capturer, Capturer)
    batch = next(source.batches(2))
    out = capturer(capturer.prepare(batch.inputs, "cpu", torch.float32))
    np.testing.assert_array_equal(out[1].numpy(), 2 * batch.inputs)


def test_builtin_entries_dispatch_by_spec_and_model(tmp_path) -> None:
    assert SOURCES.first(lambda e: e.can_open("sklearn:digits:test")).name == "sklearn-digits"
    assert SOURCES.first(lambda e: e.can_open("synthetic:3")).name == "synthetic"
    assert SOURCES.first(lambda e: e.can_open("s3://bucket/x.npz")).name == "array-file"
    assert SOURCES.first(lambda e: e.can_open("text:pydoc")).name == "text"
    assert SOURCES.first(lambda e: e.can_open("memory://imgs")).name == "image-folder"
    assert CAPTURERS.first(lambda e: e.can_capture(tiny_vit(), None)).name == "timm-vit"
    assert CAPTURERS.first(lambda e: e.can_capture(tiny_vit(), ["blocks.0"])).name == "hooks"


def test_a_broken_plugin_is_named(tmp_path, monkeypatch) -> None:
    info = tmp_path / "tgo_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tgo-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tgo.sources]\nbroken = tgo_no_such_module:Entry\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    SOURCES.reload()
    try:
        with pytest.raises(TgoError, match="plug-in broken"):
            open_source("synthetic:2", image_size=4)
    finally:
        monkeypatch.undo()
        SOURCES.reload()


def test_registering_at_run_time() -> None:
    class Fixed:
        name = "fixed"

        def can_open(self, spec: str) -> bool:
            return spec == "fixed:"

        def open(self, spec, options):
            return open_source("synthetic:4", options)

    SOURCES.register(Fixed())
    try:
        assert len(open_source("fixed:", image_size=4, in_chans=1)) == 4
    finally:
        SOURCES.unregister("fixed")
    with pytest.raises(TgoError, match="unknown data spec"):
        open_source("fixed:", image_size=4)
