"""WWW-Authenticate parsing (RFC 7235) and the credential-origin rules (pure functions)."""

from __future__ import annotations

import pytest

from tank.auth import Challenge, parse_challenges
from tank.transport import Origin, is_loopback, may_send_credentials


def test_docker_hub_style_bearer() -> None:
    (c,) = parse_challenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    assert c == Challenge(
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/alpine:pull",
        },
    )


def test_comma_and_space_inside_quoted_values() -> None:
    (c,) = parse_challenges(
        'Bearer realm="https://r/t?a=1,b=2", scope="repository:a/b:pull,push", '
        'service="SUSE Linux Docker Registry"'
    )
    assert c.params["scope"] == "repository:a/b:pull,push"
    assert c.params["realm"] == "https://r/t?a=1,b=2"
    assert c.params["service"] == "SUSE Linux Docker Registry"


def test_several_challenges_in_one_header_and_in_several() -> None:
    cs = parse_challenges(
        ['Basic realm="Sonatype Nexus Repository Manager", Bearer realm="https://t/x",'
         'service=reg', 'NEGOTIATE']
    )
    assert [c.scheme for c in cs] == ["basic", "bearer", "negotiate"]
    assert cs[0].realm == "Sonatype Nexus Repository Manager"
    assert cs[1].params == {"realm": "https://t/x", "service": "reg"}


def test_case_insensitive_scheme_and_names_unquoted_values() -> None:
    (c,) = parse_challenges("bEaReR Realm=https://t/x , Service=reg,scope=repository:a:pull")
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://t/x", "service": "reg", "scope": "repository:a:pull"}


def test_escaped_quotes_and_error_parameter() -> None:
    (c,) = parse_challenges(
        r'Bearer realm="https://t/x",error="insufficient_scope",error_description="say \"hi\""'
    )
    assert c.params["error"] == "insufficient_scope"
    assert c.params["error_description"] == 'say "hi"'


@pytest.mark.parametrize("junk", ["", ",,,", "   ", '"', "=", 'Bearer ="x"', "Bearer realm"])
def test_junk_never_raises(junk: str) -> None:
    parse_challenges(junk)


def test_gitlab_space_separated_scopes_are_kept_whole() -> None:
    (c,) = parse_challenges(
        'Bearer realm="https://gitlab.com/jwt/auth",service="container_registry",'
        'scope="repository:a/b:pull repository:c/d:pull",error="insufficient_scope"'
    )
    assert c.params["scope"] == "repository:a/b:pull repository:c/d:pull"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://a.com/v2/", True),
        ("https://A.COM:443/v2/x", True),
        ("https://www.a.com/v2/", False),
        ("https://a.com.evil/v2/", False),
        ("https://evila.com/v2/", False),
        ("https://a.com:8443/v2/", False),
        ("http://a.com/v2/", False),  # scheme change, and clear text off this machine
    ],
)
def test_credentials_only_to_the_exact_origin(url: str, allowed: bool) -> None:
    assert may_send_credentials(url, Origin.of("https://a.com")) is allowed


def test_plain_http_credentials_only_to_loopback() -> None:
    assert may_send_credentials("http://127.0.0.1:5000/v2/", Origin.of("http://127.0.0.1:5000"))
    assert may_send_credentials("http://localhost:5000/x", Origin.of("http://localhost:5000"))
    assert not may_send_credentials("http://10.0.0.1:5000/x", Origin.of("http://10.0.0.1:5000"))
    assert not may_send_credentials("https://a.com/", None)


@pytest.mark.parametrize(
    ("host", "loop"),
    [("localhost", True), ("localhost:5000", True), ("127.0.0.1", True), ("127.9.8.7:1", True),
     ("[::1]:5000", True), ("[::1]", True), ("10.0.0.1", False), ("example.com", False),
     ("localhost.example.com", False), ("128.0.0.1", False)],
)
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop
