"""skopeo as the referee of a policy's verdicts: for the requirements Debian's skopeo still
enforces (``reject``, ``insecureAcceptAnything``; ``sigstoreSigned`` always refuses there, with
sigstore switched off) and for which scope applies, `tank pull` accepts exactly what
`skopeo copy` accepts, over the same policy.json (as tank writes it back)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support.cosign import Signer
from support.referees import run, tool
from tank import pull
from tank.errors import PolicyRefused
from tank.policy import Policy
from tank.testing.images import Pusher, sample_image
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded

ACCEPT = [{"type": "insecureAcceptAnything"}]
REJECT = [{"type": "reject"}]


def policies(host: str, digest: str, key: str) -> dict[str, dict[str, Any]]:
    """Policies whose verdicts depend on the scope that applies."""
    signed = [{"type": "sigstoreSigned", "keyPath": key,
               "signedIdentity": {"type": "matchRepository"}}]

    def docker(scopes: dict[str, Any], default: Any = ACCEPT) -> dict[str, Any]:
        return {"default": default, "transports": {"docker": scopes}}

    return {
        "reject": {"default": REJECT},
        "accept": {"default": ACCEPT},
        "host accepted": docker({host: ACCEPT}, REJECT),
        "namespace rejected": docker({f"{host}/referee": REJECT}),
        "repo beats namespace": docker({f"{host}/referee": REJECT,
                                        f"{host}/referee/team/app": ACCEPT}),
        "transport default": docker({"": ACCEPT}, REJECT),
        "named beats transport default": docker({"": REJECT, f"{host}/library/sample": ACCEPT}),
        "tag scope": docker({f"{host}/library/sample:latest": REJECT}),
        "digest scope": docker({f"{host}/library/sample@{digest}": REJECT}),
        "wildcard domain": docker({"*.0.1": REJECT}),
        "other transports ignored": {"default": ACCEPT,
                                     "transports": {"dir": {"": REJECT}, "oci": {"": REJECT}}},
        "sigstore, unsigned": docker({f"{host}/referee": signed}),
        "everything but one repo": docker({f"{host}/referee/other": ACCEPT, host: REJECT}),
    }


def skopeo_accepts(ref: str, policy: Path, dest: Path) -> bool:
    done = run(tool("skopeo"), "--policy", str(policy), "copy", "--src-tls-verify=false",
               f"docker://{ref}", f"dir:{dest}")
    if done.returncode == 0:
        return True
    assert "rejected" in done.stderr or "sigstore disabled" in done.stderr, done.stderr
    return False


def tank_accepts(ref: str, policy: Path, cache: Path) -> bool:
    try:
        pull(ref, policy=policy, cache=cache)
    except PolicyRefused:
        return False
    return True


def test_tank_s_verdicts_are_skopeo_s(
    registry: LocalRegistry, seeded: Seeded, tmp_path: Path
) -> None:
    host = registry.host
    with Pusher(registry.url) as p:
        p.push_image("referee/team/app", "1", sample_image(architecture="arm64"))
        p.push_image("referee/other", "1", sample_image(architecture="arm64"))
    digest = seeded.latest.manifest_digest
    refs = [f"{host}/library/sample:latest", f"{host}/library/sample@{digest}",
            f"{host}/referee/team/app:1", f"{host}/referee/other:1"]
    key = Signer().write_public(tmp_path / "cosign.pub")
    verdicts: dict[str, list[bool]] = {}
    for n, (name, doc) in enumerate(policies(host, digest, str(key)).items()):
        path = tmp_path / f"policy-{n}.json"
        path.write_text(json.dumps(doc))
        # skopeo reads the policy as tank writes it back: the same document
        written = tmp_path / f"written-{n}.json"
        written.write_text(json.dumps(Policy.from_file(path).to_json()))
        assert json.loads(written.read_text()) == doc
        for i, ref in enumerate(refs):
            referee = skopeo_accepts(ref, written, tmp_path / f"skopeo-{n}-{i}")
            ours = tank_accepts(ref, path, tmp_path / "cache")
            assert ours == referee, f"{name}: {ref}: tank {ours}, skopeo {referee}"
            verdicts.setdefault(name, []).append(ours)
    # the cases do tell scopes apart (not all accept, not all refuse)
    assert verdicts["repo beats namespace"] == [True, True, True, False]
    assert verdicts["tag scope"] == [False, True, True, True]
    assert verdicts["digest scope"] == [True, False, True, True]
    assert verdicts["wildcard domain"] == [False] * 4
    assert verdicts["everything but one repo"] == [False, False, False, True]
