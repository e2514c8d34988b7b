"""The bench script against an emulated Feetech bus (fixtures `simgate_bus`, `simgate_bus_faults`),
healthy and under each fault kind the plugin injects."""

import pytest
from reach_agent.bus_script import Bus, BusLost

from simgate.testing import BusFaults

IDS = range(1, 7)


def test_reads_every_servo(simgate_bus):
    bus = Bus(simgate_bus.port)
    try:
        assert bus.ping(IDS) == list(IDS)
        pos = bus.positions(IDS)
        assert all(p is not None and 0 <= p < 4096 for p in pos.values())
    finally:
        bus.close()


@pytest.mark.parametrize("simgate_bus_faults", [
    BusFaults(drop_reply_prob=0.3),
    BusFaults(corrupt_prob=0.3),
    BusFaults(latency_ms=8.0),
], ids=["dropped-replies", "corrupt-checksums", "latency"])
def test_retries_ride_out_a_noisy_bus(simgate_bus):
    bus = Bus(simgate_bus.port, retries=8)
    try:
        assert all(p is not None for p in bus.positions(IDS).values())
    finally:
        bus.close()


@pytest.mark.parametrize("simgate_bus_faults", [BusFaults(dead_ids=frozenset({3}))], ids=["dead-id"])
def test_a_dead_servo_is_reported(simgate_bus):
    bus = Bus(simgate_bus.port, retries=2)
    try:
        assert bus.ping(IDS) == [1, 2, 4, 5, 6]
        assert bus.positions([3]) == {3: None}
    finally:
        bus.close()


def test_unplug_is_reported_and_replug_recovers(simgate_bus):
    bus = Bus(simgate_bus.port)
    assert bus.ping([1]) == [1]
    simgate_bus.unplug()
    with pytest.raises(BusLost):
        bus.positions(IDS)
    bus.close()
    simgate_bus.replug()
    bus = Bus(simgate_bus.port)
    try:
        assert bus.ping(IDS) == list(IDS)
    finally:
        bus.close()


def test_faults_change_while_it_runs(simgate_bus):
    bus = Bus(simgate_bus.port, retries=0)
    try:
        simgate_bus.set_faults(silent=True)
        assert bus.ping([1, 2]) == []
        simgate_bus.clear_faults()
        assert bus.ping([1, 2]) == [1, 2]
    finally:
        bus.close()
