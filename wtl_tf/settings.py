"""Settings declared once, next to the code that reads them.

A module that reads a setting declares it (`declare(Setting(...))`): name, kind, default,
help, and — for settings only some runs read — a predicate on the resolved configuration
saying whether this run reads it. Everything else is derived from the declarations:

- the absl flags of the command-line programs (`define_flags`),
- the fields of `wtl_tf.config.ExperimentConfig` (and so config.json / results.json),
- the refusal of a setting the chosen algorithm does not read,
- the settings that may change when a run resumes (`resumable`),
- README's table of which algorithm reads which setting (`wtl_tf.config.settings_table`).

Declaring modules register at import; `wtl_tf.config` imports all of them, and the rules
package imports every link file in it, so a new link file's settings need no edit elsewhere.
"""

import dataclasses
import math
from typing import Callable

from absl import flags

from wtl_tf.errors import ConfigError


KINDS = ("string", "integer", "float", "bool", "enum", "list")
UNSET_HELP = "unset: the dataset's or algorithm's default"


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    kind: str
    default: object
    help: str
    choices: tuple = None  # enum only
    # Whether a run with this resolved configuration reads the setting (None: every run).
    reads: Callable = None
    scope: str = None  # who reads it, in words (README table, refusal message)
    resumable: bool = False  # may change when a run resumes (budgets, output, runtime)
    group: str = "other"
    # Numbers: the range a value must lie in (None: unbounded; `low_open`: strictly above
    # `low`); floats must also be finite.
    low: float = None
    high: float = None
    low_open: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"setting {self.name}: kind must be one of {KINDS}")
        if (self.kind == "enum") != (self.choices is not None):
            raise ValueError(f"setting {self.name}: choices are for kind='enum' only")
        if (self.reads is None) != (self.scope is None):
            raise ValueError(f"setting {self.name}: give both reads= and scope=, or neither")
        if (self.low is not None or self.high is not None) and self.kind not in (
                "integer", "float"):
            raise ValueError(f"setting {self.name}: bounds are for numbers")

    def range_text(self):
        def number(x):
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {number(self.low)}")
        if self.high is not None:
            parts.append(f"<= {number(self.high)}")
        return " and ".join(parts)

    def problem(self, value):
        """Why `value` is not a valid value of this setting (one line), or None. The one
        check behind both the absl validators and the resolution of a configuration."""
        if value is None:
            return None
        if self.kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            return f"--{self.name} must be an integer, got {value!r}"
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"--{self.name} must be a number, got {value!r}"
            if not math.isfinite(value):
                return f"--{self.name} must be a finite number, got {value!r}"
        if self.kind in ("integer", "float"):
            below = self.low is not None and (value <= self.low if self.low_open
                                              else value < self.low)
            above = self.high is not None and value > self.high
            if below or above:
                return f"--{self.name} must be {self.range_text()}, got {value!r}"
        if self.kind == "enum" and value not in self.choices:
            return f"--{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
        return None



_REGISTRY = {}


def declare(*settings):
    """Registers settings; declaring the same name twice is a bug unless identical."""
    for setting in settings:
        known = _REGISTRY.get(setting.name)
        if known is not None and known != setting:
            raise ValueError(f"setting --{setting.name} is declared twice ({known.help!r} and "
                             f"{setting.help!r}); declare it once, where it is read")
        _REGISTRY[setting.name] = setting
    return settings[0] if len(settings) == 1 else settings


def all_settings():
    """Every declared setting, in declaration order."""
    return list(_REGISTRY.values())


def get(name):
    return _REGISTRY[name]


def scoped():
    """Settings that only some runs read."""
    return [s for s in _REGISTRY.values() if s.reads is not None]


def resumable():
    return tuple(s.name for s in _REGISTRY.values() if s.resumable)


def define_flags(flag_values, module_name=None):
    """One absl flag per setting (into `flag_values`, e.g. absl.flags.FLAGS).

    `module_name`: the program `--help` lists them under (absl: the main program's path);
    `--helpfull` lists them by group ("<program> [inner loop]", "[outer loop]", ...)."""
    define = {"string": flags.DEFINE_string, "integer": flags.DEFINE_integer,
              "float": flags.DEFINE_float, "bool": flags.DEFINE_bool, "list": flags.DEFINE_list}
    for s in _REGISTRY.values():
        if s.name in flag_values:
            continue
        group = f"{module_name} [{s.group}]" if module_name else None
        if s.kind == "enum":
            flags.DEFINE_enum(s.name, s.default, list(s.choices), s.help,
                              flag_values=flag_values, module_name=group)
        else:
            default = list(s.default) if s.kind == "list" and s.default is not None else s.default
            help_text = s.help + (f" [{s.range_text()}]" if s.range_text() else "")
            define[s.kind](s.name, default, help_text, flag_values=flag_values,
                           module_name=group)
        if module_name:  # `--help` still lists every setting under the program
            flag_values.register_key_flag_for_module(module_name, flag_values[s.name])
        if s.kind in ("integer", "float"):
            flags.register_validator(s.name, lambda value, s=s: s.problem(value) is None,
                                     message=f"--{s.name} must be {s.range_text() or 'finite'}",
                                     flag_values=flag_values)


def check_values(config):
    """Raises ConfigError for the first setting whose value lies outside its declaration."""
    for s in _REGISTRY.values():
        problem = s.problem(getattr(config, s.name, None))
        if problem:
            raise ConfigError(problem)


def values_from_flags(flag_values):
    """{setting name: value} from parsed flags (lists as tuples)."""
    values = {}
    for s in _REGISTRY.values():
        value = flag_values[s.name].value
        if s.kind == "list" and value is not None:
            value = tuple(value)
        values[s.name] = value
    return values


# The algorithms' kinds and traits, registered by wtl_tf.algorithms (which imports this
# module): predicates ask about kinds and traits, never about names.
LEARNER_KINDS = ("episodic", "trajectory", "lookahead_replay", "osaka", "warp_sine")
CONTINUAL_LEARNERS = ("lookahead_replay", "osaka", "warp_sine")
_ALGORITHMS = {}


def register_algorithm(name, learner, traits=frozenset()):
    if learner not in LEARNER_KINDS:
        raise ValueError(f"algorithm {name}: learner must be one of {LEARNER_KINDS}")
    _ALGORITHMS[name] = (learner, frozenset(traits))


def learner_kind(c):
    """The kind of learner the run's --algorithm trains (one of LEARNER_KINDS)."""
    if c.algorithm not in _ALGORITHMS:
        raise ConfigError(f"unknown algorithm {c.algorithm!r}; choose one of "
                          f"{', '.join(_ALGORITHMS)}")
    return _ALGORITHMS[c.algorithm][0]


def has_trait(c, trait):
    learner_kind(c)  # an unknown algorithm: the one-line error
    return trait in _ALGORITHMS[c.algorithm][1]


# Predicates for `reads=`, on the resolved configuration.
def maml_family(c):
    """Runs whose learner is a MAML-family MetaLearner (not leap / warp_leap)."""
    return learner_kind(c) == "episodic"


def trajectory_learner(c):
    """leap / warp_leap: the trajectory (Leap) outer loop."""
    return learner_kind(c) == "trajectory"


def few_shot(c):
    """Runs that meta-train on episodes and meta-test on held-out tasks (not the continual
    learners, which learn along a stream)."""
    return learner_kind(c) not in CONTINUAL_LEARNERS


def continual(c):
    return learner_kind(c) in CONTINUAL_LEARNERS


def la_maml_family(c):
    """The La-MAML family (wtl_tf.continual.la_maml): look-ahead updates with replay."""
    return learner_kind(c) == "lookahead_replay"


def osaka_learner(c):
    """continual_maml, sparse_continual_maml (wtl_tf.continual.osaka)."""
    return learner_kind(c) == "osaka"


def sine_learner(c):
    """warpgrad_sine (wtl_tf.continual.sine_run)."""
    return learner_kind(c) == "warp_sine"


def slow_rate_learner(c):
    """sync_la_maml, c_maml: theta steps at the fixed rate eta_theta (--outer_lr)."""
    return has_trait(c, "fixed_theta_rate")


def masked_continual(c):
    """sparse_la_maml, sparse_continual_maml: a binary step mask on the continual update."""
    return has_trait(c, "masked")


def either(*predicates):
    return lambda c: any(p(c) for p in predicates)


FEW_SHOT = "few-shot meta-learning (not the continual learners)"


def chain_learner(c):
    """Learners whose inner loop is a chain of update-rule links (--update_rules): the MAML
    family, the La-MAML family and Continual-MAML."""
    return maml_family(c) or la_maml_family(c) or osaka_learner(c)


def uses_link(*names):
    """A predicate: the run's update chain holds one of the links `names`."""
    return lambda c: chain_learner(c) and bool(set(c.update_rules or ()) & set(names))


def refuse_unread(resolved, given, fill_in):
    """Raises ConfigError for a setting given a non-default value that this run does not read.

    `given` is the configuration as the user gave it, `resolved` after defaults were filled
    in; `fill_in(config)` fills in defaults (a value that resolution itself would produce,
    as in a saved config.json, is not the user's)."""
    for s in scoped():
        value = getattr(given, s.name)
        if value is None or value == s.default or s.reads(resolved):
            continue
        unset = fill_in(dataclasses.replace(given, **{s.name: s.default}))
        same = getattr(unset, s.name)
        if same == value or (s.kind == "list" and tuple(value) == tuple(same or ())):
            continue
        raise ConfigError(f"--{s.name}={value} is not read by --algorithm={resolved.algorithm} "
                          f"with these settings (it applies to: {s.scope}); drop it")
