"""The docs against the code: README.md and docs/*.md say what the program accepts and exports.

Every stack-config key the model accepts (`components/config*.py`: every field's alias, the
sections' flat keys, and the keys of the entries of `hosts`, `mqttClients` and `mqttAcl`) is in
exactly one key table, with its default where the table gives one as a literal, and every key
of a key table is one the model accepts. Every `pulumi.export` of `__main__.py` is in the
outputs table and every row there is exported. The README's layout names every file of the
program's directories, and every `.py`/`.md` file it names exists. Every relative link resolves.

A key table is a markdown table whose first header cell is `key` (top-level keys) or
`` `<list>[]` key `` (the keys of that list's entries); the outputs table's is `output`.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import AliasGenerator, BaseModel
from pydantic.fields import FieldInfo

from components.config import SECTIONS, StackConfig, config_keys
from components.config_hosts import SINGLE_HOST_KEYS
from components.config_parse import host_config_keys
from provider import VERSION

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOC_FILES = (README, *sorted((ROOT / "docs").glob("*.md")))
# The directories whose every file the layout must name (packages' __init__.py and caches aside).
LAYOUT_DIRS = ("components", "components/render", "ops", "scripts", "tools", "bench", "docs")
NOT_LISTED = {"__init__.py", "__pycache__"}


# ------------------------------------------------------------------------------ reading markdown


@dataclass(frozen=True)
class Table:
    where: str  # file:line of the header
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def column(self, title: str) -> int:
        return self.header.index(title)


def prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def _cells(line: str) -> tuple[str, ...]:
    return tuple(cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|")))


def tables(path: Path) -> list[Table]:
    found: list[Table] = []
    block: list[tuple[int, str]] = []
    for number, line in [*prose_lines(path), (0, "")]:
        if line.lstrip().startswith("|"):
            block.append((number, line))
            continue
        if len(block) >= 2 and set(block[1][1].replace("|", "").strip()) <= set("-: "):
            header = _cells(block[0][1])
            found.append(Table(f"{path.name}:{block[0][0]}", header, tuple(_cells(line) for _, line in block[2:])))
        block = []
    return found


def all_tables() -> list[Table]:
    return [table for path in DOC_FILES for table in tables(path)]


def code_names(cell: str) -> list[str]:
    """The identifiers a cell names in backticks (`lbMaxFails` / `lbFailTimeout`: both)."""
    return re.findall(r"`([A-Za-z][A-Za-z0-9]*)`", cell)


KEY_HEADER = re.compile(r"(?:`(?P<list>[A-Za-z]+)\[\]` )?key")


def key_tables() -> list[tuple[str, Table]]:
    """(scope, table): scope "" for top-level keys, "hosts[]." for the keys of a hosts entry."""
    found = []
    for table in all_tables():
        header = KEY_HEADER.fullmatch(table.header[0])
        if header:
            found.append((f"{header['list']}[]." if header["list"] else "", table))
    return found


def documented_keys() -> Counter[str]:
    return Counter(scope + key for scope, table in key_tables() for row in table.rows for key in code_names(row[0]))


def section(path: Path, title: str) -> list[str]:
    """The lines under the `## <title>` heading, up to the next heading of that level."""
    lines = path.read_text().splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


# ------------------------------------------------------------------------------ reading the code


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's type holds (list[HostConfig] | None: HostConfig)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for argument in get_args(annotation) for model in _models_in(argument)]


def _key(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    """The key a field is read from: its own validation alias, else the model's generator's."""
    if isinstance(field.validation_alias, str):
        return field.validation_alias
    generator = model.model_config.get("alias_generator")
    assert isinstance(generator, AliasGenerator) and generator.validation_alias is not None
    key = generator.validation_alias(name)
    assert isinstance(key, str)
    return key


def model_fields(model: type[BaseModel], scope: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """(scoped key, field) for every key `model` accepts: a section's keys flat (users write
    `lbPort`, not `lb.port`), an entry model's under `<key>[].`."""
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            # A section: StackConfig._into_sections fills it from flat keys.
            assert SECTIONS.get(name) is field.annotation, f"{model.__name__}.{name} is a model but no section"
            yield from model_fields(field.annotation, scope)
            continue
        key = _key(model, name, field)
        yield scope + key, field
        for entry in _models_in(field.annotation):
            yield from model_fields(entry, f"{scope}{key}[].")


def model_keys() -> set[str]:
    return {key for key, _ in model_fields(StackConfig)}


def exported_outputs() -> list[str]:
    """The names `__main__.py` passes to `pulumi.export`, conditional ones included."""
    tree = ast.parse((ROOT / "__main__.py").read_text())
    return [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "export"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "pulumi"
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ]


# ------------------------------------------------------------------------------ configuration keys


def test_the_walk_of_the_model_finds_the_keys_the_program_accepts() -> None:
    """The test's reading of the model agrees with the program's own key lists (config_keys
    refuses every other top-level key; host_config_keys is what a hosts entry takes)."""
    keys = model_keys()
    assert {key for key in keys if "[]." not in key} == set(config_keys())
    assert {key.removeprefix("hosts[].") for key in keys if key.startswith("hosts[].")} == set(host_config_keys())
    assert {key.split("[].")[0] for key in keys if "[]." in key} == {"hosts", "mqttClients", "mqttAcl"}


def test_every_config_key_is_documented_once_and_every_documented_key_exists() -> None:
    documented = documented_keys()
    accepted = model_keys()
    assert sorted(accepted - set(documented)) == [], "keys the model accepts but no key table documents"
    assert sorted(set(documented) - accepted) == [], "keys documented but not accepted by the model"
    assert sorted(key for key, count in documented.items() if count > 1) == [], "keys documented twice"


def _literal(value: Any) -> str:
    """A default as the key tables write it (`false`, `[]`, `[localhost]`, `1024 60999`)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_literal(item)}" for key, item in value.items()) + "}"
    return str(value)


# The default cell, when it is only literals (`2` / `10s`), maybe followed by a remark: `[]` (secret).
LITERAL_DEFAULTS = re.compile(r"(?P<values>`[^`]*`(?: / `[^`]*`)*)(?: \(.*\))?")


def test_documented_defaults_are_the_model_defaults() -> None:
    """Where a key table's default is a literal and the model has a value as default (not None:
    "unset", or a default derived from other keys), the two agree."""
    fields = dict(model_fields(StackConfig))
    compared = 0
    for scope, table in key_tables():
        if "default" not in table.header:
            continue
        for row in table.rows:
            cell = LITERAL_DEFAULTS.fullmatch(row[table.column("default")])
            if cell is None:
                continue
            keys = code_names(row[0])
            values = re.findall(r"`([^`]*)`", cell["values"])
            assert len(values) == len(keys), f"{table.where}: {row[0]}: one default per key"
            for key, documented in zip(keys, values, strict=True):
                field = fields.get(scope + key)
                if field is None or field.is_required():  # unknown keys: the test above says so
                    continue
                default = field.get_default(call_default_factory=True)
                if default is None:
                    continue
                assert documented == _literal(default), f"{table.where}: {scope}{key}"
                compared += 1
    assert compared > 50  # the check reads the tables it means to


def test_the_hosts_table_names_the_single_host_key_each_entry_key_replaces() -> None:
    """With `hosts` set, the single-host keys are refused and set per host instead
    (config_hosts.SINGLE_HOST_KEYS): the hosts[] table's "single-host key" column says which."""
    [(_, table)] = [(scope, table) for scope, table in key_tables() if scope == "hosts[]."]
    column = table.column("single-host key")
    replaced = {
        single: per_host
        for row in table.rows
        for per_host, single in zip(code_names(row[0]), code_names(row[column]), strict=False)
    }
    assert replaced == SINGLE_HOST_KEYS


# ------------------------------------------------------------------------------ outputs


def test_every_output_is_documented_once_and_every_documented_output_is_exported() -> None:
    [table] = [table for table in all_tables() if table.header[0] == "output"]
    documented = Counter(name for row in table.rows for name in code_names(row[0]))
    exported = exported_outputs()
    assert len(exported) >= 12
    assert sorted(set(exported) - set(documented)) == [], f"exported but not in {table.where}"
    assert sorted(set(documented) - set(exported)) == [], f"in {table.where} but not exported"
    assert sorted(name for name, count in documented.items() if count > 1) == []


# ------------------------------------------------------------------------------ layout


def layout_groups() -> dict[str, str]:
    """The README's layout block, per directory: a line starting at column 0 with `<dir>/` opens
    that directory's entry, which runs to the next line starting at column 0."""
    lines = section(README, "Layout")
    block = lines[lines.index("```") + 1 :]
    block = block[: block.index("```")]
    groups: dict[str, str] = {}
    current: list[str] = []
    for line in block:
        if line and not line[0].isspace():
            current = []
            first = line.split()[0]
            if first.endswith("/"):
                groups[first.rstrip("/")] = ""
                current = [first.rstrip("/")]
        if current:
            groups[current[0]] += line + "\n"
    return groups


def named(text: str) -> set[str]:
    return {token.rstrip(".,:;") for token in re.findall(r"[\w./-]+", text)}


@pytest.mark.parametrize("directory", LAYOUT_DIRS)
def test_the_layout_names_every_file_of_the_directory(directory: str) -> None:
    groups = layout_groups()
    assert directory in groups, f"the README's layout has no `{directory}/` entry"
    names = named(groups[directory])
    entries = sorted(
        path for path in (ROOT / directory).iterdir() if path.name not in NOT_LISTED and not path.name.startswith(".")
    )
    assert entries
    missing = [
        path.name
        for path in entries
        if path.name not in names and f"{path.name}/" not in names and f"{directory}/{path.name}" not in groups
    ]
    assert missing == [], f"files of {directory}/ the README's layout does not name"


def test_every_file_the_layout_names_exists() -> None:
    stale = [
        f"{directory}/{name}"
        for directory, text in layout_groups().items()
        for name in named(text)
        if re.fullmatch(r"[\w-]+\.(py|md)", name) and not (ROOT / directory / name).exists()
    ]
    assert stale == []


# ------------------------------------------------------------------------------ links


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: Counter[str] = Counter()
    found = set()
    for _, line in prose_lines(path):
        heading = re.match(r"#+ (.*)", line)
        if heading:
            slug = _slug(heading[1])
            found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
            seen[slug] += 1
    return found


def links(path: Path) -> Iterator[tuple[int, str]]:
    for number, line in prose_lines(path):
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
            if not re.match(r"[a-z]+:", target):
                yield number, target


def test_every_relative_link_resolves_to_a_file_and_heading() -> None:
    broken = []
    for path in DOC_FILES:
        for number, target in links(path):
            file_part, _, anchor = target.partition("#")
            destination = (path.parent / file_part).resolve() if file_part else path
            if not destination.exists() or (anchor and anchor not in anchors(destination)):
                broken.append(f"{path.relative_to(ROOT)}:{number}: {target}")
    assert broken == []


def test_the_readme_links_every_doc() -> None:
    linked = {(README.parent / target.partition("#")[0]).resolve() for _, target in links(README)}
    assert [path.name for path in DOC_FILES[1:] if path.resolve() not in linked] == []


def test_the_changelogs_newest_version_is_the_packages() -> None:
    """provider.VERSION goes into every generated SDK: a release says what it changes."""
    versions = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), flags=re.MULTILINE)
    assert versions and versions[0] == VERSION, (versions, VERSION)
