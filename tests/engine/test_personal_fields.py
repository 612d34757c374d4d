"""Which ``data`` paths an expression reads (programs/personal.py): what decides if a personal field is safe
to erase. Conservative on purpose: a mention counts, whatever the branch."""

from __future__ import annotations

import pytest

from levelup.programs.personal import path_of, reads


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("data.amount / 100", [("amount",)]),
        ('data["email"].endsWith("@acme.com")', [("email",)]),
        ("data.contact['phone'] != '' && data . kind == 'call'", [("contact", "phone"), ("kind",)]),
        ("has(data.contact)", [("contact",)]),
        ("data.name.size() > 3 || data.names.exists(n, n == 'x')", [("name",), ("names",)]),  # a call is no field
        ("size(data) > 2", [()]),  # the whole map: every field
        ("metadata.email == participant.data.email", []),  # other names, and a field of something else
        ("participant.attributes.quota", []),
    ],
)
def test_the_paths_an_expression_reads(source: str, expected: list[tuple[str, ...]]) -> None:
    assert list(reads(source)) == expected


def test_a_field_is_its_path_under_data() -> None:
    assert path_of("data.contact.phone") == ("contact", "phone")
