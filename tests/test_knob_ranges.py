"""The prompt knobs' one range check (tcmoa.model.moa.KnobRange), which the app, /fuse, the CLI and Fuser use."""
from __future__ import annotations

import numpy as np
import pytest

from tcmoa.model.moa import ALPHA_RANGE, BETA_RANGE


@pytest.mark.parametrize("value", [True, False, "1.5", "abc", None, b"1", [1.0], float("nan"), np.bool_(True)])
def test_only_real_numbers_pass(value):
    """True is an int to Python and "1.5" parses as a float: both were accepted as numbers."""
    for knob in (ALPHA_RANGE, BETA_RANGE):
        with pytest.raises(ValueError) as caught:
            knob.check(value)
        assert str(caught.value) == f"{knob.name} must be a number in [{knob.low:g}, {knob.high:g}], got {value!r}"


def test_numbers_of_any_real_type_pass_as_floats():
    for value in (0, 1, 2.5, np.float32(0.5), np.int64(3), np.float64(0.0)):
        checked = ALPHA_RANGE.check(value)
        assert type(checked) is float and checked == float(value)
    assert BETA_RANGE.check(-0.5) == -0.5 and BETA_RANGE.check(0.5) == 0.5
