import math

import numpy as np
import pytest

from t1jax.errors import TrainingError
from t1jax.train.guards import check_finite


def _metrics(**changes):
    metrics = {"loss": np.float32(1.5), "grad_norm": np.float32(0.3), "update_norm": np.float32(1e-3)}
    metrics.update(changes)
    return metrics


def test_finite_step_passes():
    check_finite("SFT", 7, _metrics(), last_saved=5, hint="h")


@pytest.mark.parametrize("name", ["loss", "grad_norm", "update_norm"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_each_checked_value_stops_the_run(name, value):
    with pytest.raises(TrainingError) as err:
        check_finite("RL", 12, _metrics(**{name: np.float32(value)}), last_saved=10, hint="lower it")
    message = str(err.value)
    assert message.startswith("RL step 12: ") and f"{name} {float(np.float32(value))}" in message
    assert "(step 10) kept" in message and "lower it" in message
    # only the bad value is named
    assert sum(other in message for other in ("loss ", "grad_norm ", "update_norm ")) == 1


def test_no_checkpoint_yet_is_said():
    with pytest.raises(TrainingError, match="none saved yet"):
        check_finite("SFT", 1, _metrics(loss=math.nan), last_saved=None, hint="h")
