"""nic: /proc/net/dev and netlink's stats64 agree; TCP counters from /proc/net/snmp."""

from __future__ import annotations

from ironsight.agent.samplers.nic import STATS64_FIELDS, fold_stats64, parse_net_dev, parse_snmp_tcp


def test_net_dev_and_netlink_fold_agree() -> None:
    s64 = dict.fromkeys(STATS64_FIELDS, 1)
    folded = fold_stats64(s64)
    # The kernel prints drop = dropped + missed, frame = 4 error kinds, carrier = 4 error kinds.
    line = "Inter-|\n face |\n  eth9: 1 1 1 2 1 4 1 1 1 1 1 1 1 1 4 1\n"
    assert parse_net_dev(line)["eth9"] == folded


def test_snmp_tcp() -> None:
    text = "Tcp: RtoAlgorithm ActiveOpens RetransSegs CurrEstab\nTcp: 1 5 227 3\n"
    v = parse_snmp_tcp(text)
    assert v["retrans_segs"] == 227 and v["active_opens"] == 5 and v["curr_estab"] == 3
    assert v["in_segs"] is None
    assert parse_snmp_tcp("Ip: 1\nIp: 2\n") == {}
