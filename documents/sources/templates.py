"""What to embed from a table row: a template such as ``{name}\n\n{description}``, parsed into
literal text and column references — never pasted into SQL — and compiled into one SQL
expression over the row, with every literal and identifier quoted by psycopg.

``{column}`` names a column exactly as it is spelled in the table (spaces, capitals and
non-ASCII letters included); ``{{`` and ``}}`` stand for literal braces. A NULL column renders
as empty text, every other value as PostgreSQL's text form of it.
"""

from dataclasses import dataclass

from psycopg import sql


class TemplateError(ValueError):
    """A template that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Column:
    name: str


Part = str | Column


def parse(template: str) -> list[Part]:
    """The template's literal text and column references, in order."""
    if not isinstance(template, str) or not template.strip():
        raise TemplateError("The template is empty: name at least one column, e.g. {title}.")
    parts: list[Part] = []
    text: list[str] = []
    position = 0
    while position < len(template):
        character = template[position]
        if character in "{}" and template[position : position + 2] == character * 2:
            text.append(character)
            position += 2
        elif character == "{":
            end = template.find("}", position + 1)
            nested = template.find("{", position + 1)
            if end == -1 or (nested != -1 and nested < end):
                raise TemplateError(
                    f"The template has a '{{' at character {position + 1} that is never closed: "
                    "write {column}, or {{ for a literal brace."
                )
            name = template[position + 1 : end]
            if not name.strip():
                raise TemplateError(
                    f"The template has an empty {{}} at character {position + 1}: put a column name in it."
                )
            if text:
                parts.append("".join(text))
                text = []
            parts.append(Column(name))
            position = end + 1
        elif character == "}":
            raise TemplateError(
                f"The template has a '}}' at character {position + 1} that closes nothing: write }}}} for a "
                "literal brace."
            )
        else:
            text.append(character)
            position += 1
    if text:
        parts.append("".join(text))
    if not any(isinstance(part, Column) for part in parts):
        raise TemplateError("The template names no column: put a column in braces, e.g. {title}.")
    return parts


def columns(parts: list[Part]) -> list[str]:
    """The columns the template reads, each once, in order of first use."""
    return list(dict.fromkeys(part.name for part in parts if isinstance(part, Column)))


def to_sql(parts: list[Part]) -> sql.Composable:
    """concat(...) of the parts over the row in scope: concat renders each value in its text
    form and takes NULL as empty, so a NULL never makes the document NULL (or the write fail)."""
    arguments = [
        sql.Identifier(part.name) if isinstance(part, Column) else sql.Literal(part) for part in parts
    ]
    return sql.SQL("concat({})").format(sql.SQL(", ").join(arguments))
