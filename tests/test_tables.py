from empathkit.reports.tables import markdown_table


def test_markdown_cells_never_split_a_row():
    md = markdown_table(["a|b", "c"], [["x | y", "two\nlines"], [1, "already \\| escaped"]])
    lines = md.splitlines()
    assert len(lines) == 4
    assert lines[0] == "| a\\|b | c |"
    assert lines[2] == "| x \\| y | two lines |"
    assert lines[3] == "| 1 | already \\| escaped |"
    assert all(line.replace("\\|", "").count("|") == 3 for line in lines)
