"""Device names on /metrics: whatever the kernel allows, escaped as the text format wants, read back whole."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ironsight.core.exposition import render
from ironsight.core.reading import Reading
from ironsight.core.schema import device_name


def test_names_with_quotes_backslashes_and_utf8_round_trip_through_the_text_format() -> None:
    names = ["ñic0", '"quoted" nic', "back\\slash", "網卡 1", device_name("eth\udcff0")]
    reading = Reading()
    for i, name in enumerate(names):
        reading.add("nic", name, {"rx_bytes": 100 + i, "up": 1})
    text = render(reading, [], "node-1").decode()
    assert 'device="\\"quoted\\" nic"' in text and 'device="back\\\\slash"' in text  # escaped, not cut
    got = {
        s.labels["device"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "node_network_receive_bytes_total"
    }
    assert got == {name: 100.0 + i for i, name in enumerate(names)}
    assert "eth\\xff0" in got  # the stored form of a name that was not UTF-8
