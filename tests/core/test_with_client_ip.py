"""`_drive.with_client_ip`: every backend face called as (token, client_ip)."""

from __future__ import annotations

from typing import Any

from bearerguard._drive import with_client_ip


class Faces:
    def positional(self, token: str, client_ip: str | None = None) -> Any:
        return ("positional", token, client_ip)

    def one(self, token: str) -> Any:
        return ("one", token)

    def keyword(self, token: str, *, client_ip: str | None = None) -> Any:
        return ("keyword", token, client_ip)

    def loose(self, token: str, **extra: Any) -> Any:
        return ("loose", token, extra)

    def other(self, token: str, realm: str | None = None) -> Any:
        return ("other", token, realm)


def test_a_face_that_takes_the_address_second_is_called_as_it_is() -> None:
    faces = Faces()
    assert with_client_ip(faces.positional) == faces.positional  # no wrapper around it
    assert with_client_ip(faces.positional)("t", "10.0.0.1") == ("positional", "t", "10.0.0.1")


def test_other_faces_get_the_address_by_keyword_or_not_at_all() -> None:
    faces = Faces()
    assert with_client_ip(faces.one)("t", "10.0.0.1") == ("one", "t")
    assert with_client_ip(faces.keyword)("t", "10.0.0.1") == ("keyword", "t", "10.0.0.1")
    assert with_client_ip(faces.loose)("t", "10.0.0.1") == ("loose", "t", {"client_ip": "10.0.0.1"})
    # A second parameter of another name never receives the address.
    assert with_client_ip(faces.other)("t", "10.0.0.1") == ("other", "t", None)
