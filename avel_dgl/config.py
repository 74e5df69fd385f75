"""Plain dataclass configs and the named presets (`paper`, `small`).

The `paper` preset transcribes section 4 of the paper (4 DPBlocks, width 768, dropout 0.2,
kernel 3, batch 48, cosine annealing with warm restarts every 20 epochs, floors 0.1 then 0.01 of
the base rate, 400 epochs, replicate and link on). Choices the paper does not make (optimizer,
learning rate, input scaling) are named fields documented in docs/MODEL.md; it standardises the
input features, without which the network does not learn (docs/RESULTS.md).

The `small` preset is the CPU default: the same structure at width 128 with 2 blocks, plus the
regularisation measured to matter on AVE-sized data (dropout on the inputs and before the
classifier, LayerNorm after each layer; docs/RESULTS.md). Every option beyond the paper is a
named field that any preset can switch off.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import asdict, dataclass, field

from avel_dgl.errors import AvelError

TASKS = ("sel", "wsel")
INITS = ("swish", "torch")


@dataclass
class ModelConfig:
    variant: str = "dpnet"  # a name from avel_dgl.nn.dpnet.VARIANTS
    width: int = 768  # feature size of every transformation inside the backbone
    blocks: int = 4  # DPBlocks (eq 8)
    dropout: float = 0.2  # dropout on the RGCT's attended aggregation (eq 16)
    kernel_size: int = 3  # TCN kernel (eqs 5-6)
    # Beyond the paper (off by default; see docs/MODEL.md for measured effects).
    input_dropout: float = 0.0  # dropout on the audio/visual inputs of the backbone
    classifier_dropout: float = 0.0  # dropout on the gated features before the classifier
    norm: str = "none"  # "none" | "layer": LayerNorm on each layer's output
    residual: bool = False  # add each layer's input to its output (where the widths agree)
    # Weight initialisation (the paper states none): "swish" keeps the features' scale through
    # the Swish layers (nn/init.py); "torch" is PyTorch's per-layer default, with which the
    # paper-size network starts on a plateau, and which suits networks whose LayerNorms keep the
    # scale (`small`; docs/RESULTS.md, "Paper size").
    init: str = "swish"


@dataclass
class TrainConfig:
    task: str = "sel"  # "sel" (segment labels) | "wsel" (video labels, MIL pooling)
    epochs: int = 400
    batch_size: int = 48
    optimizer: str = "adam"  # "adam" | "adamw" | "sgd"
    lr: float = 1e-4
    weight_decay: float = 0.0
    cycle_epochs: int = 20  # cosine annealing with warm restarts: cycle length
    # (first epoch, floor): the learning-rate multiplier anneals from 1 to the floor in force.
    lr_floors: tuple[tuple[int, float], ...] = ((0, 0.1), (300, 0.01))
    input_norm: str = "none"  # "none" | "standardize": per-feature z-score from the train split
    replicate: bool = False  # Replicate (section 3.4); SEL only
    link: bool = False  # Link original and replica graphs (eqs 17-21); needs replicate
    seed: int = 0


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
    slow Adam down (val 35% against 69% after one epoch; docs/RESULTS.md, "Paper size")."""
    return Config(
        "small",
        ModelConfig(width=128, blocks=2, input_dropout=0.5, classifier_dropout=0.5, norm="layer", init="torch"),
        TrainConfig(epochs=30, batch_size=32, lr=1e-3, cycle_epochs=10, lr_floors=((0, 0.1),),
                    input_norm="standardize"),
    )


PRESETS = {"paper": _paper, "small": _small}


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        raise AvelError(f"--preset: expected one of {', '.join(PRESETS)}, found '{name}'")
    return PRESETS[name]()


def replace(config: Config, **overrides) -> Config:
    """A copy of `config` with `section.field=value` overrides, e.g. replace(c, **{"train.epochs": 5})."""
    model, train = dataclasses.replace(config.model), dataclasses.replace(config.train)
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        target = {"model": model, "train": train}.get(section)
        if target is None or not hasattr(target, name):
            raise AvelError(f"config: unknown field '{key}'")
        setattr(target, name, value)
    return Config(config.preset, model, train)


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


def validate(config: Config) -> None:
    """Reject option values that cannot work, with a one-line message naming the option."""
    t, m = config.train, config.model
    if t.task not in TASKS:
        raise AvelError(f"--task: expected one of {', '.join(TASKS)}, found '{t.task}'")
    if t.epochs < 1:
        raise AvelError(f"--epochs: expected a positive integer, found {t.epochs}")
    if t.batch_size < 1:
        raise AvelError(f"--batch-size: expected a positive integer, found {t.batch_size}")
    if not (math.isfinite(t.lr) and t.lr > 0):
        raise AvelError(f"--lr: expected a positive number, found {t.lr}")
    if not (math.isfinite(t.weight_decay) and t.weight_decay >= 0):
        raise AvelError(f"--weight-decay: expected a number >= 0, found {t.weight_decay}")
    if not 0 <= t.seed < 2**31:  # DGL takes an int32 seed
        raise AvelError(f"--seed: expected an integer in [0, 2**31), found {t.seed}")
    if t.cycle_epochs < 1:
        raise AvelError(f"train.cycle_epochs: expected a positive integer, found {t.cycle_epochs}")
    if m.width < 1:
        raise AvelError(f"--width: expected a positive integer, found {m.width}")
    if m.blocks < 1:
        raise AvelError(f"--blocks: expected a positive integer, found {m.blocks}")
    for name in ("dropout", "input_dropout", "classifier_dropout"):
        p = getattr(m, name)
        if not 0 <= p < 1:
            raise AvelError(f"--{name.replace('_', '-')}: expected a probability in [0, 1), found {p}")
    if m.init not in INITS:
        raise AvelError(f"--init: expected one of {', '.join(INITS)}, found '{m.init}'")
    if m.kernel_size < 1 or m.kernel_size % 2 == 0:
        raise AvelError(f"model.kernel_size: expected an odd positive integer, found {m.kernel_size}")
    if t.optimizer in ("adam", "adamw") and t.lr * m.width > ADAM_STEP_LIMIT:
        warnings.warn(f"--lr {t.lr:g} at --width {m.width}: Adam steps this large have kept wide networks on one "
                      f"class (docs/RESULTS.md, Paper size); keep lr x width under {ADAM_STEP_LIMIT} (the paper "
                      f"preset: 1e-4 at width 768)")
    if t.link and not t.replicate:
        raise AvelError("--link: needs --replicate (link edges join an original and its replica)")
    if t.task == "wsel" and (t.replicate or t.link):
        raise AvelError("--replicate/--link: only for --task sel (replicas need segment labels), found --task wsel")
