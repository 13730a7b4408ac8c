"""Flagfiles that work from any directory, and the reference flagfiles shipped in the package.

`expand(argv)` replaces each `--flagfile=PATH` by the flags the file holds, in place (later
flags still override earlier ones), and each `--config=NAME` by the packaged flagfile
`wtl_tf/configs/NAME.cfg`. A `--flagfile=` inside a file is resolved relative to the file
that includes it, so `wtl-train --flagfile=/elsewhere/my_run.cfg` finds its base file from
any working directory and from an installed package. Lines are absl's flagfile format: one
flag per line, `#` and `//` comments.
"""

import os

from wtl_tf.errors import ConfigError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "configs")
_MAX_DEPTH = 10


def config_names():
    return sorted(name[:-len(".cfg")] for name in os.listdir(CONFIG_DIR)
                  if name.endswith(".cfg") and not name.endswith(".base.cfg"))


def config_path(name):
    """The packaged flagfile NAME (with or without .cfg)."""
    name = name[:-len(".cfg")] if name.endswith(".cfg") else name
    path = os.path.join(CONFIG_DIR, f"{name}.cfg")
    if os.sep in name or not os.path.isfile(path):
        raise ConfigError(f"--config={name} is not a shipped configuration; choose one of "
                          f"{', '.join(config_names())} (or pass a file with --flagfile=PATH)")
    return path


def _value(arg, name):
    """The value of `--name=V` / `-name=V`, or None when `arg` is another flag."""
    for prefix in (f"--{name}=", f"-{name}="):
        if arg.startswith(prefix):
            return arg[len(prefix):]
    return None


def expand(argv, base_dir=None, depth=0, including=None):
    """argv with every --flagfile / --config replaced by the flags it holds."""
    if depth > _MAX_DEPTH:
        raise ConfigError(f"flagfiles include each other more than {_MAX_DEPTH} deep "
                          f"(at {including}): is there a cycle?")
    out = []
    args = iter(argv)
    for arg in args:
        if arg in ("--flagfile", "--config"):  # the value as the next argument
            arg = f"{arg}={next(args, '')}"
        config = _value(arg, "config")
        path = _value(arg, "flagfile")
        if config is not None:
            path = config_path(config)
        if path is None:
            out.append(arg)
            continue
        path = os.path.expanduser(path)
        if not os.path.isabs(path) and base_dir is not None:
            path = os.path.join(base_dir, path)
        if not os.path.isfile(path):
            where = f" (included by {including})" if including else ""
            raise ConfigError(f"--flagfile '{path}' does not exist{where}; check the path, or "
                              "use --config=NAME for a shipped configuration")
        with open(path) as f:
            lines = [line.strip() for line in f]
        flags = [line for line in lines
                 if line and not line.startswith("#") and not line.startswith("//")]
        out += expand(flags, os.path.dirname(os.path.abspath(path)), depth + 1, path)
    return out
