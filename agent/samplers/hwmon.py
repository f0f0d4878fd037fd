"""Temperatures from hwmon chips (CPU packages, NVMe drives, boards) and thermal zones."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from ironsight.agent.samplers.base import (
    RESCAN_EVERY_S,
    BaseSampler,
    Every,
    SamplerContext,
    listdir,
    read_int_fast,
    read_text,
    register,
)
from ironsight.core.reading import DeviceInfo, Reading, Value

_INVALID = re.compile(r"[^a-z0-9:_]")
_TEMP_FILE = re.compile(r"^temp(\d+)_(input|max|crit|crit_alarm)$")


def clean(name: str) -> str:
    return _INVALID.sub("_", name.lower()).strip("_")


def _device_of(hwmon: Path) -> Path | None:
    dev = hwmon / "device"
    return Path(os.path.realpath(dev)) if dev.exists() else None


def chip_names(hwmons: list[Path]) -> dict[Path, str]:
    """Stable chip names as node_exporter derives them: from the device path
    ("platform_coretemp_0"), adding the chip's own name where several chips
    hang off one device, else the hwmonN folder name (which is unstable)."""
    devices = {h: _device_of(h) for h in hwmons}
    shared = Counter(d for d in devices.values() if d is not None)
    names: dict[Path, str] = {}
    for hwmon, dev in devices.items():
        name = ""
        if dev is not None:
            dev_type, dev_name = clean(dev.parent.name), clean(dev.name)
            name = f"{dev_type}_{dev_name}" if dev_type and dev_name else dev_name
            if name and shared[dev] > 1:
                name = f"{name}_{clean(read_text(hwmon / 'name') or '')}".rstrip("_")
        names[hwmon] = name or clean(Path(os.path.realpath(hwmon)).name)
    return names


def temp_files(hwmon: Path) -> dict[str, dict[str, str]]:
    """{"temp1": {column: path}} for every temperature sensor with an input file."""
    sensors: dict[str, dict[str, str]] = {}
    for folder in (hwmon, hwmon / "device"):
        for f in listdir(folder):
            m = _TEMP_FILE.match(f.name)
            if not m:
                continue
            prop = m.group(2)
            column = {"input": "temp_celsius", "crit_alarm": "temp_crit_alarm"}.get(
                prop, f"temp_{prop}_celsius"
            )
            sensors.setdefault(f"temp{m.group(1)}", {})[column] = str(f)
    return {k: v for k, v in sensors.items() if "temp_celsius" in v}


def read_temps(files: dict[str, str]) -> dict[str, Value]:
    values: dict[str, Value] = {}
    for column, path in files.items():
        raw = read_int_fast(path)
        # Temperatures are millidegrees; the alarm is a 0/1 flag.
        values[column] = (
            None if raw is None else (float(raw) if column == "temp_crit_alarm" else raw / 1000.0)
        )
    return values


@register("hwmon", "hwmon temperatures (CPU, NVMe, board) and thermal zones")
class HwmonSampler(BaseSampler):
    def __init__(self, ctx: SamplerContext) -> None:
        super().__init__(ctx)
        self._sensors: list[tuple[str, dict[str, str]]] = []
        self._zones: list[tuple[str, str]] = []
        self._rescan = Every(RESCAN_EVERY_S)
        self._every = Every()
        self._last = Reading()

    def _hwmons(self) -> list[Path]:
        return [p for p in listdir(self.paths.sys("class", "hwmon")) if p.is_dir()]

    def _scan(self) -> None:
        """Which sensors exist changes with drivers and hotplug: found once a minute, read every tick."""
        self._sensors = [
            (f"{chip}:{sensor}", files)
            for hwmon, chip in chip_names(self._hwmons()).items()
            for sensor, files in temp_files(hwmon).items()
        ]
        self._zones = [
            (zone.name.removeprefix("thermal_zone"), str(zone / "temp"))
            for zone in listdir(self.paths.sys("class", "thermal"))
            if zone.name.startswith("thermal_zone")
        ]

    def sample(self) -> Reading:
        # Sensors refresh about once a second (coretemp caches for one) and some reads are
        # costly (an NVMe drive answers each with an admin command, an ACPI zone runs AML):
        # read at most once a second, the same rows repeated between.
        if not self._every.due():
            return Reading({table: list(rows) for table, rows in self._last.tables.items()})
        if self._rescan.due():
            self._scan()
        reading = Reading()
        for device, files in self._sensors:
            reading.add("hwmon", device, read_temps(files))
        for zone, path in self._zones:
            milli = read_int_fast(path)
            if milli is not None:
                reading.add("thermal", zone, {"temp_celsius": milli / 1000.0})
        self._last = reading
        return reading

    def inventory(self) -> list[DeviceInfo]:
        out = [
            DeviceInfo("hwmon", chip, {"name": read_text(hwmon / "name") or ""})
            for hwmon, chip in chip_names(self._hwmons()).items()
        ]
        for zone in listdir(self.paths.sys("class", "thermal")):
            if zone.name.startswith("thermal_zone"):
                zone_type = read_text(zone / "type") or ""
                out.append(DeviceInfo("thermal", zone.name.removeprefix("thermal_zone"), {"type": zone_type}))
        return out
