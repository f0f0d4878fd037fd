"""The NIC sampler's netlink path on this machine's own interfaces."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironsight.agent.samplers.base import SamplerContext
from ironsight.agent.samplers.nic import (
    IFLA_STATS_LINK_64,
    STATS64_FIELDS,
    Netlink,
    NicSampler,
    fold_stats64,
    parse_ifstats,
    parse_net_dev,
    request,
)


@pytest.fixture
def netlink() -> Iterator[Netlink]:
    try:
        nl = Netlink()
    except OSError as exc:
        pytest.skip(f"no netlink socket in this sandbox: {exc}")
    yield nl
    nl.close()


def test_our_request_is_the_bytes_pyroute2_encodes() -> None:
    from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
    from pyroute2.netlink.rtnl.ifstatsmsg import ifstatsmsg

    msg = ifstatsmsg()
    msg["filter_mask"] = 1 << (IFLA_STATS_LINK_64 - 1)
    msg["header"]["type"] = Netlink.RTM_GETSTATS
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
    msg["header"]["sequence_number"] = 77
    msg.encode()
    assert bytes(request(Netlink.RTM_GETSTATS, 77)) == bytes(msg.data)


def test_our_decoder_and_pyroute2s_read_the_same_bytes_alike(netlink: Netlink) -> None:
    from pyroute2.netlink.rtnl.ifstatsmsg import ifstatsmsg

    bodies = netlink.messages()
    assert bodies, "the kernel reported no interface"
    for body in bodies:
        ifindex, ours = parse_ifstats(body)
        header = struct.pack("=IHHII", len(body) + 16, 92, 0, 0, 0)  # RTM_NEWSTATS
        msg = ifstatsmsg(header + body)
        msg.decode()
        assert msg["ifindex"] == ifindex
        theirs = msg.get_attr("IFLA_STATS_LINK_64")
        assert ours == {k: theirs[k] for k in ours}


def test_netlink_counters_sit_between_two_reads_of_proc_net_dev(netlink: Netlink) -> None:
    before = parse_net_dev(Path("/proc/net/dev").read_text())
    ours = netlink.counters()
    after = parse_net_dev(Path("/proc/net/dev").read_text())
    assert set(ours) == set(before) == {name for _, name in socket.if_nameindex()}
    for name, values in ours.items():
        for column, value in values.items():
            assert before[name][column] <= value <= after[name][column], (name, column)


def test_sampler_uses_netlink_on_the_live_proc() -> None:
    sampler = NicSampler(SamplerContext())
    try:
        if sampler._netlink is None:
            pytest.skip("netlink unavailable here; the /proc/net/dev path is tested on fixtures")
        rows = dict(sampler.sample().rows("nic"))
        assert "lo" in rows
        assert rows["lo"]["up"] in (0, 1) and rows["lo"]["mtu"] == int(
            Path("/sys/class/net/lo/mtu").read_text()
        )
        assert rows["lo"]["rx_bytes"] is not None and rows["lo"]["rx_bytes"] >= 0
    finally:
        sampler.close()


def test_fold_matches_kernel_proc_printing() -> None:
    s = dict.fromkeys(STATS64_FIELDS, 0)
    s.update(
        rx_missed_errors=2,
        rx_dropped=3,
        rx_length_errors=1,
        rx_over_errors=1,
        rx_crc_errors=1,
        rx_frame_errors=1,
    )
    s.update(tx_aborted_errors=1, tx_carrier_errors=1, tx_heartbeat_errors=1, tx_window_errors=1)
    folded = fold_stats64(s)
    assert folded["rx_dropped"] == 5 and folded["rx_frame_errors"] == 4 and folded["tx_carrier_errors"] == 4
