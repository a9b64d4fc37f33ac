"""What the simulator holds before the demo's scenario (``reactor demo``, ``reactor
simulate-supermq --seed``): the device's thing, its two channels, its bootstrap config."""

from __future__ import annotations

from reactor.supermq.simulator.state import State

THING = "74f00d13-d370-42c0-b528-04fff995275c"
CHANNEL = "90aae157-d47f-4d71-9a68-b000c0025ae8"
CHANNEL_2 = "925461e6-edfb-4755-9242-8a57199b90a5"
EXTERNAL_ID = "FF-41-EF-BC-90-BC"


def seed(state: State) -> None:
    """What SuperMQ holds before the scenario: the device's thing, its channels, its config."""
    thing = state.add_thing("demo", thing_id=THING)
    state.add_channel("control", channel_id=CHANNEL)
    state.add_channel("data", channel_id=CHANNEL_2)
    state.add_config(
        thing,
        EXTERNAL_ID,
        "demo-external-key",
        [CHANNEL, CHANNEL_2],
        '{"device_id": "12345", "secure_connection": true}',
        "demo",
    )
