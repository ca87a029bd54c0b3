"""The counter's input encoding against its definition."""

from __future__ import annotations

import numpy as np

from dndx.chain.encoding import N_CHANNELS


def test_encoding_is_its_definition_on_ragged_rows_and_uneven_bins() -> None:
    from dndx.chain.candidates import find_candidates, smooth
    from dndx.chain.encoding import encode_scored_candidates

    rng = np.random.default_rng(7)
    lengths = np.array([40, 33, 0, 40])
    samples = np.where(np.arange(40) < lengths[:, None], rng.normal(0, 3, (4, 40)), 0).astype(
        np.float32
    )
    candidates = find_candidates(samples, lengths, 1.0, 1, 1, 0.0)
    probability = rng.random(len(candidates.values))
    smoothed = smooth(samples)
    for n_bins, width in ((12, 3.0), (9, 4.2857142857142856), (20, 1.5)):
        out = encode_scored_candidates(
            samples, lengths, candidates, probability, 0.5, n_bins, width
        )
        start = 0
        for row, found in enumerate(candidates):
            p = probability[start : start + len(found)]
            start += len(found)
            height = smoothed[row, found].astype(np.float64)
            unit = max(float(np.median(height[p >= 0.5])) if (p >= 0.5).any() else 1.0, 1e-6)
            expected = np.zeros((n_bins, N_CHANNELS))
            for sample, score, h in zip(found, p, height, strict=True):
                if int(sample / width) < n_bins:
                    expected[int(sample / width)] += [
                        score >= 0.5,
                        (score >= 0.5) * h / unit,
                        score,
                        0,
                    ]
            columns = (np.arange(lengths[row]) / width).astype(int)
            for b in range(n_bins):
                values = samples[row, : lengths[row]][columns == b].astype(np.float64)
                expected[b, 3] = values.mean() / unit if len(values) else 0.0
            np.testing.assert_allclose(out.encoded[row], expected, rtol=1e-6, atol=1e-7)
        assert 0 < out.detected.sum() < len(out.detected)
