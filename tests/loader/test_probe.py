"""The probe example trains through the loader: a constant input (the layer-0 CLS token) cannot
beat chance, permuted labels stay near chance, and a later layer beats its permuted baseline."""

from __future__ import annotations

import numpy as np

from tgo_app.training.probe import (
    ACCURACY,
    NULL,
    ProbeConfig,
    probe_accuracy,
    probe_figure,
    split_samples,
)


def test_split_is_seeded_and_disjoint() -> None:
    train, test = split_samples(100, 0.3, 0)
    assert len(test) == 30 and not set(train) & set(test) and len(train) + len(test) == 100
    assert np.array_equal(split_samples(100, 0.3, 0)[1], test) and not np.array_equal(split_samples(100, 0.3, 1)[1], test)


def test_probe_accuracy_against_its_baselines(image_store, tmp_path) -> None:
    res = probe_accuracy(image_store, ProbeConfig(epochs=10), checkpoints=[2], layers=[0, 2], progress=False)
    chance = res.attrs["chance"]
    acc, null = res[ACCURACY].values[0], res[NULL].values[0]
    assert acc[0] <= chance + 1e-12  # layer 0 CLS is the same vector for every image: a constant prediction
    assert (null <= chance + 0.1).all()  # no pairing of vector and label: near chance
    assert acc[1] > null[1] + 0.05 and acc[1] > chance
    fig = probe_figure(res)
    fig.savefig(tmp_path / "probe.png")
    assert (tmp_path / "probe.png").stat().st_size > 1000
