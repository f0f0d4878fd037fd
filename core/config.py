"""Configuration files and environment variables for the agent and the collector, mapped onto their flags.

Every flag is a TOML key and an environment variable; flags win over the
environment, which wins over the file. A key is the flag without its dashes,
'-' written '_' (`--node-id` is `node_id`, env IRONSIGHT_AGENT_NODE_ID); a
dotted flag is a table (`--path.procfs` is `[path] procfs`); the sampler
switches `--collector.NAME` / `--no-collector.NAME` are `[samplers] NAME =
true|false`; repeatable `KEY=VALUE` flags are tables (`[threshold] step_s =
10`). Unknown keys, wrong types, out-of-range values and unreadable files
fail at start with one line naming the file, the key and what was expected.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

SAMPLER_PREFIX = "--collector."


class ConfigError(ValueError):
    pass


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Config key -> the action of its flag."""
    out = {}
    for action in parser._actions:  # argparse keeps no public list of its actions
        for opt in action.option_strings:
            if (
                not opt.startswith("--")
                or opt.startswith("--no-")
                or opt in ("--help", "--config", "--check-config")
            ):
                continue
            name = opt[2:]
            key = "samplers." + name[len("collector.") :] if opt.startswith(SAMPLER_PREFIX) else name
            out[key.replace("-", "_")] = action
    return out


def _flatten(
    table: dict[str, Any], flags: dict[str, argparse.Action], prefix: str = ""
) -> Iterator[tuple[str, Any]]:
    """Dotted keys; a table stays whole where its key is a repeatable NAME=VALUE flag."""
    for key, value in table.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and not isinstance(flags.get(full), argparse._AppendAction):
            yield from _flatten(value, flags, full + ".")
        else:
            yield full, value


def _tokens(source: str, key: str, value: Any, action: argparse.Action) -> list[str]:
    """The flag tokens that say what the key says, checked as the flag's own parser would."""
    opt = next(o for o in action.option_strings if not o.startswith("--no-"))
    if isinstance(action, argparse.BooleanOptionalAction | argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
        if isinstance(action, argparse.BooleanOptionalAction):
            return [opt if value else "--no-" + opt[2:]]
        return [opt] if value else []
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a table of NAME = VALUE, got {value!r}")
        out = []
        for k, v in value.items():
            out += [opt, f"{k}={str(v).lower() if isinstance(v, bool) else v}"]
        return out
    if isinstance(value, bool | dict | list):
        raise ConfigError(f"{source}: {key}: expected a single value, got {value!r}")
    text = str(value)
    if action.type is not None:
        try:
            action.type(text)  # type: ignore[operator]
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {key}: {exc}") from None
    if action.choices is not None and text not in action.choices:
        raise ConfigError(
            f"{source}: {key}: expected one of {', '.join(map(str, action.choices))}, got {text!r}"
        )
    return [opt, text]


def from_file(parser: argparse.ArgumentParser, path: Path) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    flags = _flags(parser)
    out: list[str] = []
    for key, value in _flatten(data, flags):
        action = flags.get(key)
        if action is None:
            raise ConfigError(f"{path}: unknown key {key!r} (keys are the flags: see --help)")
        out += _tokens(str(path), key, value, action)
    return out


def from_env(parser: argparse.ArgumentParser, prefix: str, env: dict[str, str] | None = None) -> list[str]:
    env = dict(os.environ) if env is None else env
    out: list[str] = []
    for key, action in _flags(parser).items():
        name = prefix + key.upper().replace(".", "_")
        if name not in env:
            continue
        raw = env[name]
        value: Any = raw
        if isinstance(action, argparse.BooleanOptionalAction | argparse._StoreTrueAction):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ConfigError(f"${name}: expected true or false, got {raw!r}")
            value = raw.lower() in ("true", "1", "yes")
        elif isinstance(action, argparse._AppendAction):
            value = dict(item.split("=", 1) for item in raw.split(",") if "=" in item)
        out += _tokens(f"${name}", key, value, action)
    return out


def changes(
    old: argparse.Namespace, new: argparse.Namespace, live: Callable[[str], bool], ignore: Iterable[str] = ()
) -> tuple[dict[str, tuple[Any, Any]], list[str]]:
    """For a reload: (keys that may change while running -> (old, new), changed keys that need a restart)."""
    skip = {"check_config", "config_file", "argv", *ignore}
    applied: dict[str, tuple[Any, Any]] = {}
    restart = []
    for key, value in vars(new).items():
        before = getattr(old, key, None)
        if key in skip or before == value:
            continue
        if live(key):
            applied[key] = (before, value)
        else:
            restart.append(key)
    return applied, sorted(restart)


def parse(
    parser: argparse.ArgumentParser, argv: list[str] | None, default_file: Path, env_prefix: str
) -> argparse.Namespace:
    """Flags, over the environment, over the file (--config, or default_file if it exists)."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"TOML file of the same options (default {default_file} if present)",
    )
    parser.add_argument("--check-config", action="store_true", help="check the configuration and exit")
    first, _ = parser.parse_known_args(argv)
    path = first.config or (default_file if default_file.exists() else None)
    try:
        tokens = (from_file(parser, path) if path else []) + from_env(parser, env_prefix)
    except ConfigError as exc:
        parser.error(str(exc))
    args = parser.parse_args([*tokens, *(sys.argv[1:] if argv is None else argv)])
    args.config_file = path
    return args
