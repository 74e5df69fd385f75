"""Plain dataclass configs and the named presets (`paper`, `small`, `large`).

The `paper` preset transcribes section 4 of the paper (4 DPBlocks, width 768, dropout 0.2,
kernel 3, batch 48, cosine annealing with warm restarts every 20 epochs, floors 0.1 then 0.01 of
the base rate, 400 epochs, replicate and link on). Choices the paper does not make (optimizer,
learning rate, input scaling) are named fields documented in docs/MODEL.md; it standardises the
input features, without which the network does not learn (docs/RESULTS.md).

The `small` preset is the CPU default: the same structure at width 128 with 2 blocks, plus the
regularisation measured to matter on AVE-sized data (dropout on the inputs and before the
classifier, LayerNorm after each layer; docs/RESULTS.md). Every option beyond the paper is a
named field that any preset can switch off.

The `large` preset is the paper's size and schedule with `small`'s regularisation, without
Replicate and Link, for 30 epochs: the paper-size configuration measured to beat `small`
(docs/RESULTS.md, "Paper size").

Each field that users set is declared with `option(default, help, choices)`: that is its one
description, from which the CLI derives its command-line option (`--batch-size` for
train.batch_size, `--residual/--no-residual` for a bool; cli/options.py), and its choices are
what `validate` accepts. Adding an option is adding such a field. Fields declared plainly
(model.kernel_size, train.cycle_epochs, train.lr_floors) are set by the presets and from Python
only. Problems are ConfigErrors keyed by the dotted field ("train.lr: expected a positive
number, found -1.0"), which the CLI words with the flag ("--lr: ...").
"""

from __future__ import annotations

import dataclasses
import math
import typing
import warnings
from dataclasses import asdict, dataclass, field

from avel_dgl.errors import ConfigError, ConfigWarning


def option(default, help: str, choices: tuple = ()) -> dataclasses.Field:
    """A field that is also a command-line option: its help line and, for a closed set of values,
    the choices that `validate` accepts (and the CLI offers)."""
    return field(default=default, metadata={"help": help, "choices": tuple(choices)})


# The names of the networks nn.dpnet.VARIANTS builds, in Table 3's row order (here without torch, for
# the command line's help; tests/test_variants.py checks that the two agree). bilstm, the baseline,
# is built beside them by nn.dpnet.build and is no Table 3 row.
VARIANTS = ("rgat", "rgct", "tcn", "tcn-rgct", "rgct-tcn", "dpnet-parallel", "dpnet-graph-second", "dpnet")


@dataclass
class ModelConfig:
    variant: str = option("dpnet", "Network variant: dpnet, another network of Table 3 (docs/MODEL.md), or bilstm "
                                   "(the baseline).")  # checked by nn.dpnet.build, which builds VARIANTS
    width: int = option(768, "Feature size of every transformation inside the backbone (the hidden width of "
                             "every layer).")
    blocks: int = option(4, "Number of DPBlocks (eq 8), or of the variant's layers.")
    dropout: float = option(0.2, "Dropout inside the blocks, on the RGCT's attended aggregation (eq 16).")
    kernel_size: int = 3  # TCN kernel (eqs 5-6)
    # Beyond the paper (off by default; see docs/MODEL.md for measured effects).
    input_dropout: float = option(0.0, "Dropout on the audio and visual inputs of the backbone (beyond the paper).")
    classifier_dropout: float = option(0.0, "Dropout on the gated features before the segment classifier (beyond "
                                            "the paper).")
    norm: str = option("none", "LayerNorm after each layer, or none (beyond the paper).", choices=("none", "layer"))
    residual: bool = option(False, "Identity paths around layers: add each layer's input to its output where the "
                                   "widths agree (beyond the paper).")
    neighbour_norm: str = option("mean", "Eq 12's aggregation of a node's neighbours under a relation in the RGCT: "
                                         "mean (the paper's), or sqrt, their sum divided by the square root of "
                                         "their count, which keeps the size of the two uncorrelated neighbours "
                                         "that Link gives a node; the same as mean without Link (beyond the "
                                         "paper; it did not change what Link costs, docs/RESULTS.md).",
                                 choices=("mean", "sqrt"))
    init: str = option("swish", "Weight initialisation (the paper states none): swish keeps the features' scale "
                                "through the Swish layers (nn/init.py); torch is PyTorch's per-layer default, which "
                                "leaves the paper-size network on a plateau and suits networks whose LayerNorms "
                                "keep the scale (docs/RESULTS.md, Paper size).", choices=("swish", "torch"))


@dataclass
class TrainConfig:
    task: str = option("sel", "sel: segment labels; wsel: video labels only (MIL pooling).", choices=("sel", "wsel"))
    epochs: int = option(400, "Training epochs.")
    batch_size: int = option(48, "Videos per training step (the global batch under torchrun).")
    optimizer: str = option("adam", "The optimizer (the paper names none).", choices=("adam", "adamw", "sgd"))
    lr: float = option(1e-4, "Base learning rate.")
    weight_decay: float = option(0.0, "Weight decay of the optimizer.")
    cycle_epochs: int = 20  # cosine annealing with warm restarts: cycle length
    # (first epoch, floor): the learning-rate multiplier anneals from 1 to the floor in force.
    lr_floors: tuple[tuple[int, float], ...] = ((0, 0.1), (300, 0.01))
    input_norm: str = option("none", "Standardise features with the training split's per-feature mean and std, "
                                     "or not.", choices=("none", "standardize"))
    replicate: bool = option(False, "Replicate augmentation (section 3.4); SEL only.")
    link: bool = option(False, "Link original and replica graphs (eqs 17-21); needs replicate.")
    seed: int = option(0, "Random seed.")


@dataclass
class Config:
    preset: str = "paper"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Config":
        train = dict(d["train"])
        train["lr_floors"] = tuple(tuple(x) for x in train["lr_floors"])
        # Configs written before the `init` field were initialised by PyTorch's defaults.
        model = {"init": "torch", **d["model"]}
        return Config(preset=d["preset"], model=ModelConfig(**model), train=TrainConfig(**train))


def _paper() -> Config:
    return Config("paper", ModelConfig(), TrainConfig(replicate=True, link=True, input_norm="standardize"))


def _small() -> Config:
    """A CPU-sized DPNet for the demo: the paper's structure, narrower and shorter, regularised as
    measured in docs/RESULTS.md (input dropout, classifier dropout, LayerNorm). PyTorch's
    initialisation: the LayerNorms keep the features' scale, and the larger `swish` weights only
    slow Adam down (3 seeds: val 35-37% against 68-70% after one epoch, test 1.6 points lower
    after 30; docs/RESULTS.md, "Paper size"). Replicate on (SEL only: a WSEL run leaves it off,
    `resolve_config`), Link off: Replicate adds 1.3 points on every seed and Link takes 3 off
    again here, for the measured reason in docs/REPLICATE_LINK.md."""
    return Config(
        "small",
        ModelConfig(width=128, blocks=2, input_dropout=0.5, classifier_dropout=0.5, norm="layer", init="torch"),
        TrainConfig(epochs=30, batch_size=32, lr=1e-3, cycle_epochs=10, lr_floors=((0, 0.1),),
                    input_norm="standardize", replicate=True),
    )


def _large() -> Config:
    """The paper's size and schedule (width 768, 4 DPBlocks, batch 48, Adam 1e-4, restarts every
    20 epochs) with `small`'s regularisation and initialisation, without Replicate and Link, for
    30 epochs: on the full-size real-span set it beat `small` (test 81.9 ± 0.7% against
    80.7 ± 0.4% O-AVE, 3 seeds, ahead on each) at about 20x the cost per epoch (docs/RESULTS.md,
    "Paper size"). For a GPU, or a CPU with hours to spare."""
    return Config(
        "large",
        ModelConfig(input_dropout=0.5, classifier_dropout=0.5, norm="layer", init="torch"),
        TrainConfig(epochs=30, input_norm="standardize"),
    )


PRESETS = {"paper": _paper, "small": _small, "large": _large}
SECTIONS = {"train": TrainConfig, "model": ModelConfig}  # Config's attribute -> its dataclass (options in this order)


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError("preset", f"expected one of {', '.join(PRESETS)}, found '{name}'")
    return PRESETS[name]()


def replace(config: Config, **overrides) -> Config:
    """A copy of `config` with `section.field=value` overrides, e.g. replace(c, **{"train.epochs": 5})."""
    model, train = dataclasses.replace(config.model), dataclasses.replace(config.train)
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        target = {"model": model, "train": train}.get(section)
        if target is None or not hasattr(target, name):
            raise ConfigError(key, "not a config field (expected model.<field> or train.<field>)")
        setattr(target, name, value)
    return Config(config.preset, model, train)


def option_fields(sections: dict[str, type] | None = None) -> dict[str, tuple[dataclasses.Field, type]]:
    """Dotted name -> (field, its type) of every field declared with `option`, in declaration order.
    sections: {attribute: dataclass}, SECTIONS by default."""
    found = {}
    for section, cls in (sections or SECTIONS).items():
        types = typing.get_type_hints(cls)  # the annotations are strings (from __future__ import annotations)
        found.update({f"{section}.{f.name}": (f, types[f.name]) for f in dataclasses.fields(cls)
                      if "help" in f.metadata})
    return found


def field_names(sections: dict[str, type] | None = None) -> dict[str, str]:
    """Short name -> dotted field, for every field declared with `option` ('batch_size' ->
    'train.batch_size'): the keyword `resolve_config` takes for it and the name of its
    command-line option (sections: see `option_fields`)."""
    names = {}
    for key in option_fields(sections):
        name = key.rpartition(".")[2]
        if name in names:  # one name for two fields: a config with such fields needs a wording of its own
            raise ValueError(f"config fields {names[name]} and {key} would both be --{name.replace('_', '-')}")
        names[name] = key
    return names


def value(config: Config, key: str):
    """The value of dotted field `key` in `config`."""
    section, _, name = key.partition(".")
    return getattr(getattr(config, section), name)


def flatten(config: Config) -> dict:
    """{"preset": ..., "model.width": ..., "train.epochs": ...}: every field under its dotted name."""
    d = config.to_dict()
    return {"preset": d["preset"], **{f"{section}.{k}": v for section in ("model", "train")
                                      for k, v in d[section].items()}}


def differences(a: Config, b: Config) -> list[tuple[str, object, object]]:
    """(dotted field, value in a, value in b) for every field where the two configs differ."""
    fa, fb = flatten(a), flatten(b)
    return [(k, fa.get(k), fb.get(k)) for k in {**fa, **fb} if fa.get(k) != fb.get(k)]


# Adam moves every weight by about lr per step, so a layer's output moves by about lr * fan_in:
# the product is the step size that matters. Measured (docs/RESULTS.md, "Paper size"): 0.08-0.23
# trains (small 1e-3 x 128, paper 1e-4 to 3e-4 x 768); 0.77 (small's 1e-3 at width 768) kept the
# network on one class for every epoch tried.
ADAM_STEP_LIMIT = 0.3
ADAM_OPTIMIZERS = ("adam", "adamw")  # the optimizers the limit and the width scaling apply to


def at_width(config: Config, width: int) -> Config:
    """`config` at model.width `width`. Wider than its own, an Adam learning rate is scaled by
    old width / new width, which keeps lr x width and so the size of Adam's steps (above): `small`
    at width 768 trains with 1.67e-4 where its 1e-3 leaves it on one class (docs/RESULTS.md, Paper
    size). A narrower network keeps the learning rate (its steps only get smaller)."""
    lr = config.train.lr
    if config.train.optimizer in ADAM_OPTIMIZERS and width > config.model.width:
        lr *= config.model.width / width
    return replace(config, **{"model.width": width, "train.lr": lr})


def validate(config: Config) -> None:
    """Reject values that cannot work with a ConfigError keyed by the field, and warn (ConfigWarning)
    about a learning rate too large for the width."""
    for key, (f, _) in option_fields().items():
        choices = f.metadata["choices"]
        if choices and value(config, key) not in choices:
            raise ConfigError(key, f"expected one of {', '.join(choices)}, found '{value(config, key)}'")
    t, m = config.train, config.model
    rules = [  # (field, whether its value can work, what is expected)
        ("train.epochs", t.epochs >= 1, "a positive integer"),
        ("train.batch_size", t.batch_size >= 1, "a positive integer"),
        ("train.lr", math.isfinite(t.lr) and t.lr > 0, "a positive number"),
        ("train.weight_decay", math.isfinite(t.weight_decay) and t.weight_decay >= 0, "a number >= 0"),
        ("train.seed", 0 <= t.seed < 2**31, "an integer in [0, 2**31)"),  # DGL takes an int32 seed
        ("train.cycle_epochs", t.cycle_epochs >= 1, "a positive integer"),
        ("model.width", m.width >= 1, "a positive integer"),
        ("model.blocks", m.blocks >= 1, "a positive integer"),
        *((f"model.{p}", 0 <= getattr(m, p) < 1, "a probability in [0, 1)")
          for p in ("dropout", "input_dropout", "classifier_dropout")),
        ("model.kernel_size", m.kernel_size >= 1 and m.kernel_size % 2 == 1, "an odd positive integer"),
    ]
    for key, holds, expected in rules:
        if not holds:
            raise ConfigError(key, f"expected {expected}, found {value(config, key)}")
    if t.optimizer in ADAM_OPTIMIZERS and t.lr * m.width > ADAM_STEP_LIMIT:
        warnings.warn(ConfigWarning("train.lr", f"{t.lr:g} at model.width {m.width}: Adam steps this large have kept "
                                    f"wide networks on one class (docs/RESULTS.md, Paper size); keep lr x width "
                                    f"under {ADAM_STEP_LIMIT} (the paper preset: 1e-4 at width 768)"))
    if t.link and not t.replicate:
        raise ConfigError("train.link", "needs train.replicate (link edges join an original and its replica)")
    if t.task == "wsel" and t.replicate:
        raise ConfigError("train.replicate", "only for train.task sel (replicas need segment labels; so is "
                                             "train.link), found train.task wsel")


def resolve_config(preset: str, replicate: bool | None, link: bool | None, **options) -> Config:
    """The preset with the given options applied (keywords: `field_names`' short names; None: left
    as the preset has it). A width above the preset's without an lr scales the preset's Adam
    learning rate to keep lr x width (`at_width`), with a warning saying so. Replicate and link are
    SEL-only: for WSEL they are off unless asked for (which `validate` then rejects with a clear
    message)."""
    names = field_names()
    width = options.pop("width", None)
    config = get_preset(preset)
    config = replace(config, **{names[k]: v for k, v in options.items() if v is not None})
    if width is not None:
        widened = at_width(config, width) if options.get("lr") is None else replace(config, **{"model.width": width})
        if widened.train.lr != config.train.lr:
            warnings.warn(ConfigWarning("train.lr", f"{config.train.lr:g} is preset {preset}'s for model.width "
                                        f"{config.model.width}; at model.width {width} it is scaled to "
                                        f"{widened.train.lr:.3g} to keep lr x width (set train.lr to choose)"))
        config = widened
    if config.train.task == "wsel":
        replicate, link = bool(replicate), bool(link)
    return replace(config, **{k: v for k, v in (("train.replicate", replicate), ("train.link", link))
                              if v is not None})
