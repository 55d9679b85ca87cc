"""The encoder/decoder sections: drawn only beside a model whose attention runs the other way, each figure
passing the report's checker and each reading following the numbers it reads."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.report import checks, draw_sections
from tgo_analysis.report import encoder_decoder as E

STEPS = [0, 10, 100]


def results(is_decoder: bool, bell: bool, seed: int) -> xr.Dataset:
    """Pooled and tangent results of 3 checkpoints x 4 layers, stamped with the store's model facts."""
    rng = np.random.default_rng(seed)
    profile = np.array([0.2, 0.6, 0.7, 0.25]) if bell else np.array([0.06, 0.08, 0.09, 0.07])
    top1 = np.stack([profile * s for s in (0.2, 1.0, 1.0)])  # at step 0 a bell's contrast is below 0.1
    ids = 8 + rng.random((3, 4))
    low = np.where(rng.random((3, 4)) > 0.3, 1.1, 0.9)
    ci = np.stack([low, low + 0.2], axis=-1)
    coords = {N.CHECKPOINT: STEPS, N.LAYER: np.arange(4), N.BOUND: ["low", "high"]}
    dims = (N.CHECKPOINT, N.LAYER)
    facts = {"model": {"transformers": {"is_decoder": is_decoder}},
             "loss": {"kind": "causal_lm" if is_decoder else "masked_lm"}}
    return xr.Dataset({N.TOP1_SHARE_POOLED: (dims, top1), N.INTRINSIC_DIMENSION_POOLED: (dims, ids),
                       N.TANGENT_ENRICHMENT_VS_PCA_CI: ((*dims, N.BOUND), ci),
                       N.LOCAL_TANGENT_EXCESS_CI: ((*dims, N.BOUND), ci - 1.0)},
                      coords=coords, attrs={"input_attrs": json.dumps(facts)})


def test_sections_appear_only_beside_a_model_of_the_other_direction() -> None:
    decoder, encoder = results(True, True, 0), results(False, False, 1)
    assert E.direction(decoder) == "decoder" and E.direction(encoder) == "encoder"
    assert E.pair(decoder, {"compare": {"the same store": results(True, True, 2)}}) is None
    assert E.pair(decoder, {"compare": {"encoder": encoder}}) == {"decoder": decoder, "encoder": encoder}
    alone = [s.key for s, _ in draw_sections(decoder, {}) if s.group == "encoder_decoder"]
    assert alone == []  # not drawn, and not listed as missing either


def test_each_section_draws_both_models_and_reads_the_numbers() -> None:
    import matplotlib.pyplot as plt

    decoder, encoder = results(True, True, 0), results(False, False, 1)
    options = {"compare": {"encoder": encoder}}
    drawn = [(s, fig) for s, fig in draw_sections(decoder, options) if s.group == "encoder_decoder"]
    assert [s.key for s, _ in drawn] == ["encoder_decoder_anisotropy", "encoder_decoder_dimension",
                                         "encoder_decoder_tangent"]
    for section, fig in drawn:
        assert fig is not None
        problems = checks.check_figure(section.key, fig, section.caption_for(decoder), decoder)
        problems += checks.check_sentences(section.key, section.caption, lambda r, s=section: s.read(r, options),
                                           decoder)
        plt.close(fig)
        assert problems == [], checks.summary(problems)
    anisotropy = drawn[0][0].read(decoder, options)
    assert "(reproduces)" in anisotropy and "at 2 of 3 checkpoints" in anisotropy
    swapped = drawn[0][0].read(encoder, {"compare": {"decoder": decoder}})  # whichever is the main results
    assert "(reproduces)" in swapped
    flat_decoder = results(True, False, 0)
    assert "(does not reproduce)" in drawn[0][0].read(flat_decoder, options)
