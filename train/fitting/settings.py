"""Every training setting, defined once: what each model's training takes and what it is by
default, the rating model's presets, and the command-line options made from them.

- :class:`AutoRecTrainConfig`: how the rating model (the item autoencoder) is optimized. Its
  defaults are the ``full`` preset's.
- :class:`AutoRecPreset` and :data:`PRESETS`: the network shape, the number of averaged
  members, the blend with matrix factorization and the optimization of each preset, written as
  what it changes from the defaults.
- :data:`CHOSEN_ON`: values of a preset chosen on one dataset's validation data, which replace
  the preset's when that dataset is trained.
- :class:`RankerTrainConfig`: how the ranking model is trained.
- :class:`TrainConfig`: the matrix-factorization baseline's optimization.

Each default has a comment saying why, as in nanoGPT's config block. A field offered on a
command line is declared with :func:`option`, which holds its help text and smallest value;
``python -m train`` and ``python -m train.newusers`` build their options, defaults and help from
these classes (:func:`add_options`, :func:`preset_help`), so no value is written twice. The
precedence, lowest first: a preset's value, its value chosen on the dataset being trained
(:data:`CHOSEN_ON`), an option given on the command line (:func:`preset_with`).
"""

from __future__ import annotations

import argparse
import copy
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import Field, asdict, dataclass, field, fields, replace
from typing import Any


def option(default: Any, help: str, *, minimum: float | None = None, flag: str = "") -> Any:
    """A dataclass field that a command line offers as ``--NAME`` (``--FLAG`` when given;
    a bool as ``--NAME`` / ``--no-NAME``).

    ``help`` is its help text (the values of the presets are appended to it); a value below
    ``minimum`` is refused by the config (``ValueError``) and by the parser."""
    metadata = {"help": help, "minimum": minimum, "flag": flag}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def check_minimums(config: Any) -> None:
    """Raise ``ValueError`` for a field of dataclass ``config`` below its :func:`option`
    minimum."""
    for f in fields(config):
        minimum, value = f.metadata.get("minimum"), getattr(config, f.name)
        if minimum is not None and value < minimum:
            raise ValueError(f"{f.name} must be >= {minimum:g}, got {value}")


@dataclass
class TrainConfig:
    """Optimization of the matrix-factorization baseline (pairs, Adam, per-sample L2)."""

    epochs: int = 40  # upper bound; early stopping usually ends sooner
    batch_size: int = 1024  # large batches keep 2 CPU cores busy; 256-4096 give similar RMSE
    learning_rate: float = 3e-3  # Adam
    l2: float = 0.05  # weight of the per-sample L2 on vectors and biases
    patience: int = 3  # epochs without validation improvement before stopping
    seed: int = 0  # drives initialization and shuffling: same seed, same model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AutoRecTrainConfig:
    """Optimization of :class:`~train.fitting.autorec.ItemAutoRec` (item batches, Adam).

    The defaults are the ``full`` preset's; :data:`PRESETS` says what the others change."""

    epochs: int = option(
        60, "upper bound on epochs; early stopping on validation RMSE ends sooner", minimum=1
    )  # the full preset trains to convergence: early stopping, not this bound, ends it
    batch_size: int = option(256, "movies per step", minimum=1)
    learning_rate: float = option(1e-3, "Adam learning rate", flag="lr")
    l2: float = option(256.0, "L2 on the (kernel-masked) weights")
    # Pushes kernel values towards sparsity (as Sparse FC / GLocal-K); unused with dense layers.
    kernel_l2: float = option(0.013, "L2 on the local-kernel values")
    dropout: float = option(0.2, "share of input ratings hidden in each step (denoising)")
    patience: int = option(5, "epochs without a validation gain before stopping", minimum=1)
    seed: int = 0  # drives initialization, shuffling and dropout: same seed, same model

    def __post_init__(self) -> None:
        check_minimums(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AutoRecPreset:
    """A setting of the rating model: network shape, members averaged, blend, optimization.

    The defaults are the ``full`` preset, the served model."""

    # One dense layer (I-AutoRec). Local kernels (kernel_dim > 0, two layers as in Sparse FC /
    # GLocal-K) cost several times more per epoch on 2 cores for no gain we could measure on
    # ML-1M; on ML-100K they gain (CHOSEN_ON).
    # (option gives a list default its own default_factory: no instance shares the list.)
    hidden_dims: list[int] = option([500], "encoder widths; the last is the code size")  # noqa: RUF009
    kernel_dim: int = option(0, "local-kernel dimension; 0 = dense weights", minimum=0)
    # Chosen on ML-1M validation RMSE (seed 0) of the average of the first M members:
    # 1: 0.8359, 2: 0.8318, 3: 0.8308, 4: 0.8300, 6: 0.8297, 8: 0.8294 (366 s in all).
    members: int = option(
        8, "autoencoders trained (seeds SEED, SEED+1000, ...) and averaged", minimum=1
    )
    # Validation RMSE (seed 0) of a least-squares blend of the members' average and MF, against
    # the average alone: ML-100K u1 (4 members, the kernel network) 0.8912 -> 0.8865; ML-1M
    # (8 members) 0.8294 -> 0.8255. The two models' errors differ enough for MF to add.
    blend_mf: bool = option(
        True,
        "blend the autoencoder average with matrix factorization (trained with the baseline's "
        "settings on the same split), weights chosen by least squares on validation",
    )
    # ML-1M seed 0, 2 members, validation RMSE of the blend: 0.8263 with one weight per
    # component, 0.8258 with weights linear in the user's log number of training ratings (8
    # buckets of users by that number, each with its own weights: 0.8256; weights that also
    # vary with the movie's number: 0.8249, but twice the served vector size).
    blend_by_user: bool = option(
        True,
        "let the blend's weights and intercept vary linearly with the user's log number of "
        "training ratings, slopes chosen with the weights on validation",
    )
    training: AutoRecTrainConfig = field(default_factory=AutoRecTrainConfig)

    def __post_init__(self) -> None:
        check_minimums(self)


PRESETS: dict[str, AutoRecPreset] = {
    # One autoencoder with denoising input dropout, no blend: ~0.845 on ML-1M in 10 epochs.
    "fast": AutoRecPreset(members=1, blend_mf=False, training=AutoRecTrainConfig(epochs=12)),
    # The same network trained to convergence, eight times: the served model averages them
    # and blends the average with matrix factorization.
    "full": AutoRecPreset(),
}
DEFAULT_PRESET = "full"  # what python -m train serves

# Values of a preset chosen on one dataset's validation data, by preset, then dataset (its name
# in train.data.DATASETS). When that dataset is trained they replace the preset's own values;
# options given on a command line replace them in turn. Other datasets train with the
# preset's values (on ML-1M the dense full preset stays best for now). --help shows them.
CHOSEN_ON: dict[str, dict[str, dict[str, Any]]] = {
    "fast": {
        # u1 split of ML-100K, validation = 10% of u1.base, seed 0; validation RMSE.
        "ml-100k": {
            # Only the L2: the full preset's dense grid (one member to convergence, l2
            # 64/256/1024 x dropout 0/0.2/0.5) chose l2 64, and that carries over to fast's 12
            # epochs: l2 16/32/64/128/256 gave 0.9094/0.9092/0.9095/0.9114/0.9180 there
            # (dropout 0.2). Its dropout 0.5 does not (0.9123 at l2 64: strong input dropout
            # pays only when training runs to convergence), nor does full's kernel network
            # (0.9175 at its l2 16 and dropout 0.5, 0.9128 with dropout 0.2).
            "l2": 64.0,
        },
    },
    "full": {
        # u1 split of ML-100K, validation = 10% of u1.base, seed 0, one member; validation /
        # test RMSE. The preset's own dense network there (l2 256, dropout 0.2): 0.9041 /
        # 0.9189; the best of l2 64/256/1024 x dropout 0/0.2/0.5 dense: l2 64, dropout 0.5,
        # 0.9017 / 0.9114.
        "ml-100k": {
            # Two layers with local kernels of dimension 5 (as Sparse FC / GLocal-K): every
            # setting of the grid below (0.8926-0.8985) beat the best dense one (0.9017).
            "hidden_dims": [500, 500],
            "kernel_dim": 5,
            # Grid of that network, l2 4/16/32 x dropout 0.3/0.5/0.7: best l2 16, dropout 0.7,
            # 0.8926 / 0.9054 (dropout 0.5: 0.8945 / 0.9055).
            "l2": 16.0,
            "dropout": 0.7,
            # Kernels and strong input dropout learn slower than the dense network: those
            # runs went up to 150 epochs with patience 8.
            "epochs": 150,
            "patience": 8,
        },
        "ml-1m": {
            # Six members rather than eight: with the refit on training + validation that
            # train.evaluate scores (about 0.7x a member's selection time again), eight take
            # ~1,150 s on one thread, over the 15 minutes allowed; six ~870 s. The average
            # of the first M members on validation (seed 0): 6: 0.8297, 8: 0.8294.
            "members": 6,
        },
    },
}


def preset_with(name: str, dataset: str | None = None, **overrides: Any) -> AutoRecPreset:
    """Preset ``name`` as trained on ``dataset``, with ``overrides``.

    ``dataset`` (a name, e.g. ``"ml-100k"``) brings the values :data:`CHOSEN_ON` holds for
    this preset on it; None or a dataset without any keeps the preset's. ``overrides`` are
    fields of :class:`AutoRecPreset` or of its :class:`AutoRecTrainConfig` by name, and win
    over both; None keeps the value."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    chosen = copy.deepcopy(CHOSEN_ON.get(name, {}).get(dataset or "", {}))
    given = chosen | {k: v for k, v in overrides.items() if v is not None}
    ours = {f.name for f in fields(AutoRecPreset)} - {"training"}
    training = {f.name for f in fields(AutoRecTrainConfig)}
    if unknown := sorted(set(given) - ours - training):
        raise ValueError(f"unknown settings of the rating model: {', '.join(unknown)}")
    preset = PRESETS[name]
    return replace(
        preset,
        **{k: v for k, v in given.items() if k in ours},
        training=replace(preset.training, **{k: v for k, v in given.items() if k in training}),
    )


@dataclass
class RankerTrainConfig:
    """How the ranking model (:mod:`model.ranker`) is trained; the grids are searched on
    validation."""

    epochs: int = option(
        60, "upper bound on the deep part's epochs; early stopping picks the best", minimum=1
    )
    patience: int = option(4, "epochs without a validation gain before stopping", minimum=1)
    batch_size: int = option(256, "users per step", minimum=1)
    learning_rate: float = option(1e-3, "Adam learning rate", flag="lr")  # Liang et al. 2018
    seed: int = 0  # initialization, shuffling and dropout of the deep part
    l2_grid: tuple[float, ...] = (200.0, 400.0, 800.0, 1600.0)  # λ of the item-item part
    deep_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    # The predicted rating's weight: z-scores spread over ~10 units per list, stars over 1-4.
    rating_weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)

    def __post_init__(self) -> None:
        check_minimums(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The command line ---------------------------------------------------------------------------


def show(value: object) -> str:
    """A setting's value as it is typed on the command line."""
    if isinstance(value, (list, tuple)):
        return " ".join(show(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def offered(config_type: type) -> list[Field[Any]]:
    """The fields of ``config_type`` that a command line offers (declared with :func:`option`)."""
    return [f for f in fields(config_type) if "help" in f.metadata]


def flag_of(f: Field[Any], prefix: str = "") -> str:
    return "--" + prefix + (f.metadata["flag"] or f.name.replace("_", "-"))


def dest_of(f: Field[Any], prefix: str = "") -> str:
    return prefix.replace("-", "_") + f.name


def _parse(kind: Callable[[str], Any], minimum: float | None) -> Callable[[str], Any]:
    """argparse type of one option: ``kind`` of the text, refused below ``minimum``."""

    def parse(text: str) -> Any:
        value = kind(text)
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value" errors
    return parse


def _values(
    f: Field[Any], sources: Mapping[str, object], chosen: Mapping[str, Mapping[str, Any]]
) -> str:
    """``fast: 12, full: 60``, or ``every preset: 256`` when they agree (``default: ...`` for
    a single source named ``default``), then the values ``chosen`` (label -> field values,
    e.g. ``{"full on ml-100k": {"l2": 16.0}}``) sets: ``; full on ml-100k: 16``."""
    shown = {label: show(getattr(source, f.name)) for label, source in sources.items()}
    if len(set(shown.values())) == 1 and len(shown) > 1:
        text = f"every preset: {next(iter(shown.values()))}"
    else:
        text = ", ".join(f"{label}: {value}" for label, value in shown.items())
    also = [
        f"{label}: {show(values[f.name])}" for label, values in chosen.items() if f.name in values
    ]
    return "; ".join([text, ", ".join(also)]) if also else text


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config_type: type,
    sources: Mapping[str, object],
    prefix: str = "",
    only: Collection[str] | None = None,
    chosen: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """One option per :func:`offered` field of ``config_type`` (or of those in ``only``).

    Each defaults to None, "keep the value of the preset or config", and its help lists the
    value in each of ``sources`` (label -> an instance of ``config_type``), e.g.
    ``{"fast": ..., "full": ...}`` or ``{"default": RankerTrainConfig()}``, then those of
    ``chosen`` (label -> the values it sets by field name, see :func:`chosen_values`). A bool
    field is a pair ``--NAME`` / ``--no-NAME``."""
    hints = typing.get_type_hints(config_type)
    for f in offered(config_type):
        if only is not None and f.name not in only:
            continue
        kind, many = hints[f.name], typing.get_origin(hints[f.name]) is list
        kind = typing.get_args(kind)[0] if many else kind
        described = f"{f.metadata['help']} ({_values(f, sources, chosen or {})})"
        if kind is bool:
            parser.add_argument(
                flag_of(f, prefix),
                dest=dest_of(f, prefix),
                action=argparse.BooleanOptionalAction,
                help=described,
            )
            continue
        parser.add_argument(
            flag_of(f, prefix),
            dest=dest_of(f, prefix),
            type=_parse(kind, f.metadata["minimum"]),
            nargs="+" if many else None,
            metavar=f.name.upper(),
            help=described,
        )


def given(args: argparse.Namespace, config_type: type, prefix: str = "") -> dict[str, Any]:
    """The fields of ``config_type`` that the command line set (see :func:`add_options`)."""
    out = {f.name: getattr(args, dest_of(f, prefix), None) for f in offered(config_type)}
    return {name: value for name, value in out.items() if value is not None}


def add_preset_options(
    parser: argparse.ArgumentParser, default: str, only: Collection[str] | None = None
) -> None:
    """``--preset`` and the options that override one field of it (all, or those in
    ``only``), their help made from :data:`PRESETS` and :data:`CHOSEN_ON`."""
    parser.add_argument("--preset", default=default, choices=list(PRESETS), help=preset_help())
    group = parser.add_argument_group(
        "rating model settings (each overrides the preset's, and its value chosen on the "
        "dataset trained)"
    )
    add_options(group, AutoRecPreset, PRESETS, only=only, chosen=chosen_values())
    training = {name: preset.training for name, preset in PRESETS.items()}
    add_options(group, AutoRecTrainConfig, training, only=only, chosen=chosen_values())


def chosen_values() -> dict[str, dict[str, Any]]:
    """:data:`CHOSEN_ON` labelled for the help: ``{"full on ml-100k": {"l2": 16.0, ...}}``."""
    return {
        f"{name} on {dataset}": values
        for name, by_dataset in CHOSEN_ON.items()
        for dataset, values in by_dataset.items()
    }


def preset_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The rating model settings given on the command line, for :func:`preset_with`."""
    return {**given(args, AutoRecPreset), **given(args, AutoRecTrainConfig)}


def describe(name: str) -> str:
    """One line on preset ``name``: members, blend, network and epochs, and the network and
    epochs chosen on a dataset where they differ (:data:`CHOSEN_ON`)."""
    preset = PRESETS[name]
    members = f"{preset.members} autoencoder" + ("s averaged" if preset.members > 1 else "")
    blend = " and blended with matrix factorization" if preset.blend_mf else ""
    text = f"{name}: {members}{blend}, {_network(preset)}"
    for dataset in CHOSEN_ON.get(name, {}):
        if (network := _network(preset_with(name, dataset))) != _network(preset):
            text += f" (on {dataset}: {network})"
    return text


def _network(preset: AutoRecPreset) -> str:
    kernels = f"local kernels of {preset.kernel_dim}" if preset.kernel_dim else "dense"
    layers = "-".join(map(str, preset.hidden_dims))
    return f"{layers} units ({kernels}), up to {preset.training.epochs} epochs"


def preset_help() -> str:
    return "; ".join(describe(name) for name in PRESETS) + " (default: %(default)s)"
