"""Envs files (JSON lines, CSV, a JSON array) and env lists: parsed, checked, errors with lines."""

from __future__ import annotations

import sys

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


# --- what Python counts as a line break, inside JSON strings --------------------------


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85"])  # raw in JSON strings
def test_json_lines_keep_unicode_line_breaks_inside_strings(tmp_path, char):
    path = write(tmp_path, "envs.jsonl", f'{{"s": "a{char}b"}}\n{{"s": "{char}"}}\n')
    assert load_envs(path) == [{"s": f"a{char}b"}, {"s": char}]


def test_json_lines_numbers_count_line_feeds_only(tmp_path):
    path = write(tmp_path, "envs.jsonl", '{"s": "a\u2028b\u2029c"}\n\n{"i": 2\n')
    with pytest.raises(cf.ConfigError, match="envs.jsonl line 3: not valid JSON"):
        load_envs(path)


def test_json_lines_with_crlf_line_ends(tmp_path):
    path = tmp_path / "envs.jsonl"
    path.write_bytes(b'{"i": 1}\r\n\r\n{"s": "x\xe2\x80\xa8y"}\r\n[1]\r\n')
    with pytest.raises(cf.ConfigError, match="envs.jsonl line 4: not a JSON object: \\[1\\]$"):
        load_envs(path)
    path.write_bytes(b'{"i": 1}\r\n\r\n{"s": "x\xe2\x80\xa8y"}\r\n')
    assert load_envs(path) == [{"i": 1}, {"s": "x\u2028y"}]


# --- whole numbers over Python's int-string conversion limit ---------------------------


def test_csv_keeps_a_number_too_long_for_int_as_text(tmp_path):
    digits = "1" * 5000
    path = write(tmp_path, "envs.csv", f"i,n\n1,{digits}\n2,-{digits}\n")
    assert load_envs(path) == [{"i": 1, "n": digits}, {"i": 2, "n": "-" + digits}]
    assert check_envs(path, "command")[0]["n"] == digits


def test_a_json_number_too_long_for_int_names_its_line(tmp_path):
    path = write(tmp_path, "envs.jsonl", '{"n": 1}\n{"n": ' + "7" * 5000 + "}\n")
    with pytest.raises(cf.ConfigError, match="envs.jsonl line 2: not valid JSON: .*4300 digits"):
        load_envs(path)


def test_a_command_value_that_cannot_become_text_is_refused():
    with pytest.raises(cf.ConfigError, match="env 1: the value of 'N' cannot be turned into text"):
        check_envs([{"N": 1}, {"N": 10**5000}], "command")
    assert check_envs([{"n": 10**5000}], "script") == [{"n": 10**5000}]  # scripts get the int


# --- names: both modes' rules in the message ---------------------------------------------


@pytest.mark.parametrize("name", ["__builtins__", "__name__", "__file__", "__x__", "__"])
def test_script_mode_refuses_dunder_names(name):
    with pytest.raises(cf.ConfigError) as info:
        check_envs([{"i": 1}, {"i": 2, name: 3}], "script")
    assert str(info.value).startswith(f"env 1: {name!r} would replace a name Python sets")
    assert "not starting and ending with '__'" in str(info.value)
    assert check_envs([{name.upper() + "A": 1}], "command")  # fine as a variable name


def test_script_mode_allows_names_with_underscores_at_one_end():
    envs = [{"_private": 1, "__mangled": 2, "trailing__": 3, "result": 4}]
    assert check_envs(envs, "script") == envs


def test_dunder_names_in_a_file_name_the_line(tmp_path):
    path = write(tmp_path, "envs.csv", "i,__builtins__\n1,2\n")
    with pytest.raises(cf.ConfigError, match="envs.csv line 2: '__builtins__' would replace"):
        check_envs(path, "script")


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        ("script", "script mode: a Python identifier, not a keyword"),
        ("command", "command mode: letters, digits and '_', not starting with a digit; no '='"),
    ],
)
def test_names_with_an_equals_sign_are_refused_in_both_modes(kind, rule):
    with pytest.raises(cf.ConfigError) as info:
        check_envs([{"A": 1}, {"A": 1}, {"A=B": 1}], kind)
    assert str(info.value).startswith("env 2: 'A=B' is not a valid")
    assert rule in str(info.value)


def test_a_name_python_would_spell_differently_is_refused():
    with pytest.raises(cf.ConfigError, match="'ﬁle' reads as 'file' in a script's source"):
        check_envs([{"ﬁle": 1}], "script")
    assert check_envs([{"größe": 1}], "script") == [{"größe": 1}]


# --- command-mode values that cannot become environment variables -------------------------


def test_a_nul_in_a_command_name_or_value_is_refused_with_its_place(tmp_path):
    with pytest.raises(cf.ConfigError) as info:
        check_envs([{"A": "ok"}, {"A": "ok"}, {"A": "a\x00b"}], "command")
    assert str(info.value).startswith("env 2: the value of 'A' holds a NUL character (\\x00)")
    with pytest.raises(cf.ConfigError, match=r"env 0: 'A\\x00' is not a valid environment"):
        check_envs([{"A\x00": "x"}], "command")
    jsonl = write(tmp_path, "envs.jsonl", '{"A": 1}\n\n{"A": "x\\u0000y"}\n')
    with pytest.raises(cf.ConfigError, match="envs.jsonl line 3: the value of 'A' holds a NUL"):
        check_envs(jsonl, "command")
    csv_path = write(tmp_path, "envs.csv", "A,B\n1,2\n3,x\x00y\n")
    with pytest.raises(cf.ConfigError, match="envs.csv line 3: the value of 'B' holds a NUL"):
        check_envs(csv_path, "command")
    assert check_envs(csv_path, "script")[1] == {"A": 3, "B": "x\x00y"}  # fine in Python


def test_a_nul_inside_a_nested_value_is_checked_as_text():
    # str() of a list shows the NUL escaped, so the variable holds "['a\\x00']": fine
    assert check_envs([{"A": ["a\x00"]}], "command") == [{"A": ["a\x00"]}]


def test_a_value_that_cannot_be_encoded_is_refused(tmp_path):
    path = write(tmp_path, "envs.jsonl", '{"A": "ok"}\n{"A": "\\ud800"}\n')
    with pytest.raises(cf.ConfigError, match="envs.jsonl line 2: the value of 'A' cannot be enc"):
        check_envs(path, "command")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's limit")
def test_the_longest_variable_linux_takes_is_accepted_and_one_byte_more_refused():
    from cheerful.durable.envs import ENV_VAR_LIMIT
    from cheerful.durable.modes import CommandTask

    longest = {"AB": "x" * (ENV_VAR_LIMIT - 4)}  # AB= plus the value: limit - 1 bytes
    (env,) = check_envs([longest], "command")
    assert CommandTask('printf %s "${#AB}"')(env).stdout == str(ENV_VAR_LIMIT - 4)
    too_long = {"AB": "x" * (ENV_VAR_LIMIT - 3)}
    with pytest.raises(cf.ConfigError, match="env 0: the value of 'AB' is too long"):
        check_envs([too_long], "command")
    with pytest.raises(OSError, match="Argument list too long"):
        CommandTask("true")(too_long)  # what the task would have met at run time
    assert check_envs([too_long], "script") == [too_long]
