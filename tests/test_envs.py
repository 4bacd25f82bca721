"""Envs files (JSON lines, CSV, a JSON array) and env lists: parsed, checked, errors with lines."""

from __future__ import annotations

import pytest

import cheerful as cf
from cheerful.durable.envs import check_envs, load_envs


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_json_lines_skip_blank_lines(tmp_path):
    path = write(tmp_path, "envs.jsonl", '{"i": 1, "name": "a"}\n\n  \n{"i": 2, "x": [1, 2]}\n')
    assert load_envs(path) == [{"i": 1, "name": "a"}, {"i": 2, "x": [1, 2]}]


@pytest.mark.parametrize("suffix", [".json-lines", ".ndjson", ".JSONL"])
def test_other_json_lines_extensions(tmp_path, suffix):
    assert load_envs(write(tmp_path, "e" + suffix, '{"i": 1}\n')) == [{"i": 1}]


def test_csv_converts_numbers(tmp_path):
    text = "i,x,name,code,empty,e\n1,2.5,alpha,007,,1e3\n-3,.5,beta gamma,0,,-2.5E-2\n"
    assert load_envs(write(tmp_path, "envs.csv", text)) == [
        {"i": 1, "x": 2.5, "name": "alpha", "code": "007", "empty": "", "e": 1000.0},
        {"i": -3, "x": 0.5, "name": "beta gamma", "code": 0, "empty": "", "e": -0.025},
    ]


def test_csv_keeps_words_that_look_like_numbers_to_python(tmp_path):
    got = load_envs(write(tmp_path, "e.csv", "a,b,c\nnan,inf,1_000\n"))
    assert got == [{"a": "nan", "b": "inf", "c": "1_000"}]


def test_csv_header_names_are_stripped_and_blank_rows_skipped(tmp_path):
    got = load_envs(write(tmp_path, "e.csv", "i , j\n1,2\n\n,\n3,4\n"))
    assert got == [{"i": 1, "j": 2}, {"i": 3, "j": 4}]


def test_csv_quoted_fields_and_a_bom(tmp_path):
    path = tmp_path / "e.csv"
    path.write_bytes('\ufeffi,text\n1,"a, b"\n2,"two\nlines"\n'.encode())
    assert load_envs(path) == [{"i": 1, "text": "a, b"}, {"i": 2, "text": "two\nlines"}]


def test_a_json_array(tmp_path):
    assert load_envs(write(tmp_path, "e.json", '[{"i": 1}, {"i": 2}]')) == [{"i": 1}, {"i": 2}]


def test_a_json_file_with_json_lines(tmp_path):
    assert load_envs(write(tmp_path, "e.json", '{"i": 1}\n{"i": 2}\n')) == [{"i": 1}, {"i": 2}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"i": 1}\n{"i": 2}\n', [{"i": 1}, {"i": 2}]),
        ('[{"i": 1}]', [{"i": 1}]),
        ("i,j\n1,x\n", [{"i": 1, "j": "x"}]),
    ],
)
def test_an_unknown_extension_is_sniffed(tmp_path, text, expected):
    assert load_envs(write(tmp_path, "envs.txt", text)) == expected


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("envs.jsonl", '{"i": 1}\n\n{"i": 2\n', "envs.jsonl line 3: not valid JSON"),
        ("envs.jsonl", '{"i": 1}\n[1, 2]\n', "envs.jsonl line 2: not a JSON object: [1, 2]"),
        ("envs.jsonl", '{"i": 1}\n"text"\n', "envs.jsonl line 2: not a JSON object"),
        ("envs.jsonl", "", "envs.jsonl: the envs file is empty"),
        ("envs.jsonl", "\n  \n", "envs.jsonl: the envs file is empty"),
        ("envs.csv", "i,j\n1,2\n3\n", "envs.csv line 3: 1 values for the 2 columns"),
        ("envs.csv", "i,j,i\n1,2,3\n", "envs.csv line 1: column 'i' appears twice"),
        ("envs.csv", "i,,j\n1,2,3\n", "envs.csv line 1: the header has an empty column"),
        ("envs.csv", "i,j\n", "envs.csv: the envs file has no envs"),
        ("envs.json", '[{"i": 1}, 2]', "envs.json item 1: not a JSON object"),
        ("envs.json", '[{"i": 1},', "envs.json: not valid JSON"),
    ],
)
def test_errors_name_the_file_and_line(tmp_path, name, text, words):
    with pytest.raises(cf.ConfigError) as info:
        load_envs(write(tmp_path, name, text))
    assert words in str(info.value)


def test_a_missing_file(tmp_path):
    with pytest.raises(cf.ConfigError, match="cannot be read"):
        load_envs(tmp_path / "nope.jsonl")


def test_check_envs_reports_file_lines_for_bad_names(tmp_path):
    path = write(tmp_path, "envs.jsonl", '{"i": 1}\n{"i": 2}\n{"my-var": 3}\n')
    with pytest.raises(cf.ConfigError, match="envs.jsonl line 3: 'my-var' is not a valid Python"):
        check_envs(path, "script")
    with pytest.raises(cf.ConfigError, match="envs.jsonl line 3: 'my-var' is not a valid env"):
        check_envs(path, "command")


def test_check_envs_by_kind():
    assert check_envs([{"i": 1, "x_2": "a"}], "script") == [{"i": 1, "x_2": "a"}]
    assert check_envs(({"I": 1} for _ in range(2)), "command") == [{"I": 1}, {"I": 1}]
    with pytest.raises(cf.ConfigError, match="env 1: 'class' is not a valid Python name"):
        check_envs([{"i": 1}, {"class": 2}], "script")
    with pytest.raises(cf.ConfigError, match="env 0: '1abc' is not a valid environment"):
        check_envs([{"1abc": 1}], "command")
    with pytest.raises(cf.ConfigError, match="env 0: 'A-B' is not a valid environment"):
        check_envs([{"A-B": 1}], "command")


@pytest.mark.parametrize(
    ("envs", "words"),
    [
        ([], "envs is empty"),
        ({"i": 1}, "list of dicts"),
        (42, "list of dicts"),
        ([{"i": 1}, [("i", 2)]], "env 1: an env is a dict"),
        ([{1: "x"}], "env 0: key 1 is not a string"),
    ],
)
def test_bad_env_lists(envs, words):
    with pytest.raises(cf.ConfigError, match=words):
        check_envs(envs, "script")


def test_the_float_pattern_is_strict():
    from cheerful.durable.envs import _convert

    assert _convert("1.") == 1.0
    assert _convert("2e5") == 200000.0
    assert _convert("e5") == "e5"
    assert _convert("1.2.3") == "1.2.3"
    assert _convert(" 12 ") == 12
