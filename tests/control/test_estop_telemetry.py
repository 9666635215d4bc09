"""The Pi's emergency stop button reaches the motor's state and its events (a console shows it)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cloud.feedback.telemetry import MotorTelemetry
from cloud.realtime.motor_events import viewer_payload


def test_estop_is_kept_in_the_motor_state_and_its_events() -> None:
    telemetry = MotorTelemetry.model_validate({"estop": "engaged", "state": "stopped_by_estop"})
    values = telemetry.values()
    assert values == {"estop": "engaged", "state": "stopped_by_estop"}
    assert viewer_payload("motor_01", values) == {"device": "motor_01", **values}


def test_an_unknown_estop_value_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="estop"):
        MotorTelemetry.model_validate({"estop": "maybe"})
