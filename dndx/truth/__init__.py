"""Truth: expected peaks and their matching to candidates (:mod:`.labels`), the
labelled training windows (:mod:`.preparation`) and the calibrated cell charge
(:mod:`.charge`).
"""
