"""Temperatures from hwmon chips (CPU packages, NVMe drives, boards) and thermal zones."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from agent.samplers.base import (
    BaseSampler,
    DeviceInfo,
    Reading,
    Value,
    listdir,
    read_int,
    read_text,
    register,
)

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


def read_temps(hwmon: Path) -> dict[str, dict[str, Value]]:
    sensors: dict[str, dict[str, Value]] = {}
    for folder in (hwmon, hwmon / "device"):
        for f in listdir(folder):
            m = _TEMP_FILE.match(f.name)
            if not m:
                continue
            raw = read_int(f)
            values = sensors.setdefault(f"temp{m.group(1)}", {})
            prop = m.group(2)
            if prop == "crit_alarm":
                values["temp_crit_alarm"] = None if raw is None else float(raw)
            else:
                column = "temp_celsius" if prop == "input" else f"temp_{prop}_celsius"
                values[column] = None if raw is None else raw / 1000.0
    return {k: v for k, v in sensors.items() if "temp_celsius" in v}


@register("hwmon", "hwmon temperatures (CPU, NVMe, board) and thermal zones")
class HwmonSampler(BaseSampler):
    def _hwmons(self) -> list[Path]:
        return [p for p in listdir(self.paths.sys("class", "hwmon")) if p.is_dir()]

    def sample(self) -> Reading:
        reading = Reading()
        for hwmon, chip in chip_names(self._hwmons()).items():
            for sensor, values in read_temps(hwmon).items():
                reading.add("hwmon", f"{chip}:{sensor}", values)
        for zone in listdir(self.paths.sys("class", "thermal")):
            if zone.name.startswith("thermal_zone"):
                milli = read_int(zone / "temp")
                if milli is not None:
                    reading.add(
                        "thermal", zone.name.removeprefix("thermal_zone"), {"temp_celsius": milli / 1000.0}
                    )
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
