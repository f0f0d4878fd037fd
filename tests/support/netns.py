"""Two network namespaces joined by a veth pair, with loss and partitions by nftables; gone with the test.

This kernel has no netem qdisc (tc says "Specified qdisc kind is unknown"), so
loss is nftables' random drop on each side's output, a partition drops
everything, and delay with jitter comes from delay_proxy.py in the agent's
namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

SUBNET = "10.201.{}.{}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Link:
    def __init__(self) -> None:
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} not found: .ci/run installs iproute2 and nftables")
        if os.geteuid() != 0:
            pytest.fail("network namespaces need root (CI runs the tests as root)")
        tag = f"{os.getpid() % 10000}"
        self.agent_ns, self.collector_ns = f"isa{tag}", f"isc{tag}"
        octet = os.getpid() % 250
        self.agent_ip, self.collector_ip = SUBNET.format(octet, 1), SUBNET.format(octet, 2)
        self.close()  # a previous run killed before its cleanup
        _ip("netns", "add", self.agent_ns)
        _ip("netns", "add", self.collector_ns)
        _ip("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vc{tag}")
        for ns, dev, addr in ((self.agent_ns, f"va{tag}", self.agent_ip),
                              (self.collector_ns, f"vc{tag}", self.collector_ip)):  # fmt: skip
            _ip("link", "set", dev, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            self.nft(ns, "add table inet fault")
            self.nft(ns, "add chain inet fault out { type filter hook output priority 0; }")

    def exec(self, ns: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def nft(self, ns: str, command: str) -> None:
        subprocess.run(self.exec(ns, ["nft", command]), check=True, capture_output=True, timeout=30)

    def loss(self, percent: int) -> None:
        """Each side drops this share of the packets it sends."""
        for ns in (self.agent_ns, self.collector_ns):
            self.nft(ns, f"add rule inet fault out oifname != lo numgen random mod 100 < {percent} drop")

    def partition(self) -> None:
        for ns in (self.agent_ns, self.collector_ns):
            self.nft(ns, "add rule inet fault out oifname != lo drop")

    def heal(self) -> None:
        for ns in (self.agent_ns, self.collector_ns):
            self.nft(ns, "flush chain inet fault out")

    def close(self) -> None:
        for ns in (self.agent_ns, self.collector_ns):  # deleting a namespace deletes its veth end
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
