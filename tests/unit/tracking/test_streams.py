"""The stream caps: per holder first, then the gateway's; a released slot is taken again."""

from __future__ import annotations

from tracking.streams import Refusal, StreamSlots


def test_a_holder_is_refused_beyond_its_cap_and_everyone_beyond_the_gateways() -> None:
    slots = StreamSlots(total=3, per_holder=2)
    assert slots.take("a") is None and slots.take("a") is None
    assert slots.take("a") is Refusal.HOLDER_FULL
    assert slots.take("b") is None
    assert slots.open() == 3
    # Full: the holder's own cap is named first, then the gateway's.
    assert slots.take("a") is Refusal.HOLDER_FULL
    assert slots.take("b") is Refusal.GATEWAY_FULL
    assert slots.take("c") is Refusal.GATEWAY_FULL


def test_a_released_slot_is_free_again_for_anyone() -> None:
    slots = StreamSlots(total=2, per_holder=2)
    assert slots.take("a") is None and slots.take("a") is None
    slots.release("a")
    assert slots.open() == 1
    assert slots.take("c") is None
    assert slots.take("a") is Refusal.GATEWAY_FULL
    slots.release("a")
    slots.release("c")
    assert slots.open() == 0
    assert slots.take("a") is None and slots.take("a") is None
