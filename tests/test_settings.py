"""The training settings have one source: the presets, the values chosen for them on a
dataset, and the config dataclasses of train.fitting.settings. The command lines' defaults and
help must agree with them."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tests.conftest import GENRES
from train import evaluate, newusers
from train import train as train_cli
from train.data import Dataset, random_split
from train.data.prepared import prepare
from train.fitting import settings
from train.fitting.experiment import autorec_configs
from train.fitting.settings import (
    CHOSEN_ON,
    DEFAULT_PRESET,
    PRESETS,
    AutoRecPreset,
    AutoRecTrainConfig,
    RankerTrainConfig,
    TrainConfig,
    preset_with,
)

# Where the help of the next option begins (not within "--blend-mf, --no-blend-mf").
OPTION = re.compile(r"(?<!,)(?=\s--[a-z])")


def help_text(main, capsys) -> str:
    """The options part of ``--help``, whitespace joined (argparse wraps lines anywhere)."""
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    return text[text.index(" options: ") :]  # past the examples of the description


def option_help(text: str, flag: str) -> str:
    """The help paragraph of ``flag`` (``--epochs``) in whitespace-joined ``--help`` output."""
    paragraphs = [p for p in OPTION.split(text) if p.strip().startswith((flag + " ", flag + ","))]
    assert len(paragraphs) == 1, f"{flag} is not described once in --help"
    return paragraphs[0]


def typed(value) -> str:
    """A value as typed on the command line, written here independently of the module."""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return format(value, "g") if isinstance(value, float) else str(value)


def rating_model_fields():
    """(flag, field name, the field's value in each preset) of every rating model option."""
    for config_type, of in (
        (AutoRecPreset, lambda p: p),
        (AutoRecTrainConfig, lambda p: p.training),
    ):
        for f in settings.offered(config_type):
            values = {name: getattr(of(preset), f.name) for name, preset in PRESETS.items()}
            yield settings.flag_of(f), f.name, values


def test_train_help_states_each_presets_values(capsys):
    text = help_text(train_cli.parse_args, capsys)
    for flag, name, values in rating_model_fields():
        paragraph = option_help(text, flag)
        shown = {typed(v) for v in values.values()}
        if len(shown) == 1:
            assert f"every preset: {shown.pop()}" in paragraph, paragraph
        else:
            for preset, value in values.items():
                assert f"{preset}: {typed(value)}" in paragraph, paragraph
        for preset, by_dataset in CHOSEN_ON.items():
            for dataset, chosen in by_dataset.items():
                label = f"{preset} on {dataset}: "
                if name in chosen:
                    assert label + typed(chosen[name]) in paragraph, paragraph
                else:
                    assert label not in paragraph, paragraph
    presets = option_help(text, "--preset")
    for name, preset in PRESETS.items():
        assert f"{name}: {preset.members} autoencoder" in presets
        assert f"up to {preset.training.epochs} epochs" in presets
    assert f"full: {PRESETS['full'].members} autoencoders averaged and blended with" in presets
    chosen = CHOSEN_ON["full"]["ml-100k"]
    network = "-".join(map(str, chosen["hidden_dims"])) + " units (local kernels of "
    assert f"(on ml-100k: {network}{chosen['kernel_dim']}), up to {chosen['epochs']}" in presets
    assert f"(default: {DEFAULT_PRESET})" in presets
    for f in settings.offered(RankerTrainConfig):
        paragraph = option_help(text, settings.flag_of(f, "ranker-"))
        assert f"(default: {typed(getattr(RankerTrainConfig(), f.name))})" in paragraph


def test_train_without_options_trains_the_default_preset():
    args = train_cli.parse_args([])
    assert args.preset == DEFAULT_PRESET
    assert settings.preset_overrides(args) == {}
    assert preset_with(args.preset, **settings.preset_overrides(args)) == PRESETS[DEFAULT_PRESET]
    assert args.seed == AutoRecTrainConfig().seed
    given = settings.given(args, RankerTrainConfig, prefix="ranker-")
    assert RankerTrainConfig(seed=args.seed, **given) == RankerTrainConfig()


def test_every_option_sets_its_own_field():
    examples = {int: "7", float: "0.5"}
    argv, expected = [], {}
    for flag, name, values in rating_model_fields():
        if isinstance(values["fast"], list):
            argv += [flag, "3", "4"]
            expected[name] = [3, 4]
        elif isinstance(values["fast"], bool):  # fast's is False: the flag sets True
            argv += [flag]
            expected[name] = True
        else:
            argv += [flag, examples[type(values["fast"])]]
            expected[name] = type(values["fast"])(examples[type(values["fast"])])
    for f in settings.offered(RankerTrainConfig):
        argv += [settings.flag_of(f, "ranker-"), examples[type(f.default)]]
    args = train_cli.parse_args(argv)
    assert settings.preset_overrides(args) == expected
    chosen = preset_with("fast", **settings.preset_overrides(args))
    assert chosen.members == 7 and chosen.hidden_dims == [3, 4] and chosen.kernel_dim == 7
    assert chosen.blend_mf
    assert chosen.training == AutoRecTrainConfig(
        epochs=7,
        batch_size=7,
        learning_rate=0.5,
        l2=0.5,
        kernel_l2=0.5,
        dropout=0.5,
        patience=7,
        seed=PRESETS["fast"].training.seed,
    )
    ranker = settings.given(args, RankerTrainConfig, prefix="ranker-")
    assert ranker == {"epochs": 7, "patience": 7, "batch_size": 7, "learning_rate": 0.5}
    off = settings.preset_overrides(train_cli.parse_args(["--no-blend-mf"]))
    assert off == {"blend_mf": False} and not preset_with("full", **off).blend_mf


@pytest.mark.parametrize("flag", ["--epochs", "--batch-size", "--patience", "--members"])
def test_the_parser_refuses_what_the_config_refuses(flag, capsys):
    with pytest.raises(SystemExit):
        train_cli.parse_args([flag, "0"])
    assert f"argument {flag}: must be >= 1, got 0" in capsys.readouterr().err
    name = flag[2:].replace("-", "_")
    with pytest.raises(ValueError, match=f"{name} must be >= 1"):
        preset_with("fast", **{name: 0})


def test_unknown_presets_and_settings_are_refused():
    with pytest.raises(ValueError, match="unknown preset 'huge'; known: fast, full"):
        preset_with("huge")
    with pytest.raises(ValueError, match="unknown settings of the rating model: hidden"):
        preset_with("fast", hidden=[3])
    with pytest.raises(ValueError, match="patience must be >= 1"):
        RankerTrainConfig(patience=0)


def test_configs_of_a_run_are_the_presets(ratings, movies, tmp_path):
    dataset = Dataset("synthetic-test", ratings, movies, GENRES, (1.0, 5.0), tmp_path)
    data = prepare(dataset, random_split(ratings, 0.1, 0.1, seed=0))
    for name, preset in PRESETS.items():
        configs = autorec_configs(data, name, seed=3)
        assert (configs.autorec.hidden_dims, configs.autorec.kernel_dim, configs.members) == (
            preset.hidden_dims,
            preset.kernel_dim,
            preset.members,
        )
        assert configs.autorec.hidden_dims is not preset.hidden_dims  # the preset stays as is
        assert configs.training == dataclasses.replace(preset.training, seed=3)
        # The blend's MF is the baseline's: its settings, the run's seed.
        assert configs.mf == (TrainConfig(seed=3) if preset.blend_mf else None)
    assert autorec_configs(data).training == PRESETS[DEFAULT_PRESET].training
    assert PRESETS["full"].blend_mf and not PRESETS["fast"].blend_mf


def test_values_chosen_on_a_dataset_apply_to_it_alone_and_options_win(ratings, movies, tmp_path):
    split = random_split(ratings, 0.1, 0.1, seed=0)
    for name, by_dataset in CHOSEN_ON.items():
        for dataset_name, chosen in by_dataset.items():
            base = PRESETS[name]
            on_it = preset_with(name, dataset_name)
            assert on_it == preset_with(name, **chosen)  # exactly those values, all known fields
            for field, value in chosen.items():  # each one changes the preset
                assert getattr(base, field, getattr(base.training, field, None)) != value, field
            assert preset_with(name, "ml-25m") == base  # other datasets: the preset's own
            dataset = Dataset(dataset_name, ratings, movies, GENRES, (1.0, 5.0), tmp_path)
            configs = autorec_configs(prepare(dataset, split), name, seed=3)
            assert configs.training == dataclasses.replace(on_it.training, seed=3)
            assert configs.autorec.hidden_dims == on_it.hidden_dims
            assert configs.autorec.kernel_dim == on_it.kernel_dim
            # An option given wins over the value chosen on the dataset.
            field = next(iter(chosen))
            given = preset_with(name, dataset_name, **{field: [7] if field == "hidden_dims" else 7})
            assert getattr(given, field, getattr(given.training, field, None)) in (7, [7])
    chosen = CHOSEN_ON["full"]["ml-100k"]
    assert (chosen["hidden_dims"], chosen["kernel_dim"], chosen["l2"]) == ([500, 500], 5, 16.0)
    assert set(CHOSEN_ON["fast"]["ml-100k"]) == {"l2"}  # fast takes only the L2 (see settings)


def test_the_other_command_lines_take_the_presets_from_the_same_place(capsys):
    text = help_text(newusers.parse_args, capsys)
    for name in PRESETS:
        assert settings.describe(name) in option_help(text, "--preset")
    epochs = option_help(text, "--epochs")
    for name, preset in PRESETS.items():
        assert f"{name}: {preset.training.epochs}" in epochs
    assert set(PRESETS) <= set(evaluate.MODELS)


def test_a_preset_made_for_a_dataset_shares_nothing_with_its_chosen_values():
    preset_with("full", "ml-100k").hidden_dims.append(1)
    assert CHOSEN_ON["full"]["ml-100k"]["hidden_dims"] == [500, 500]
