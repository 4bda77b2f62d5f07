from empathkit.reports.tables import markdown_table


def test_markdown_cells_never_split_a_row():
    md = markdown_table(["a|b", "c"], [["x | y", "two\nlines"], [1, "already \\| escaped"]])
    lines = md.splitlines()
    assert len(lines) == 4
    assert lines[0] == "| a\\|b | c |"
    assert lines[2] == "| x \\| y | two lines |"
    assert lines[3] == "| 1 | already \\| escaped |"
    assert all(line.replace("\\|", "").count("|") == 3 for line in lines)


def test_deeply_nested_jsonl_line_is_a_data_error(tmp_path):
    import pytest

    from empathkit.errors import DataError
    from empathkit.runs import read_jsonl

    p = tmp_path / "deep.jsonl"
    p.write_text('{"ok": 1}\n' + "[" * 100000 + "]" * 100000 + "\n")
    with pytest.raises(DataError, match="nested deeper") as e:
        read_jsonl(p)
    assert ":2" in str(e.value)
