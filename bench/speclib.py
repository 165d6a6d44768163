"""Writing one bench's section of docs/SPEC.md, between its markers
`<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->`; the rest of the
file is left as it is. (bench/run.py keeps its own writer: it owns the
file's skeleton and several sections.)"""
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPEC_MD = ROOT / "docs" / "SPEC.md"


def markers(name):
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def write_section(name, heading, section):
    """Replace the section `name` with `section`; a missing section is added
    at the end under `heading`."""
    begin, end = markers(name)
    text = SPEC_MD.read_text() if SPEC_MD.exists() else "# cocoon — measured promises\n"
    if begin not in text or end not in text:
        text = text.rstrip("\n") + "\n\n" + heading + f"{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    SPEC_MD.write_text(f"{head}{begin}\n{section}\n{end}{tail}")
