"""The deployment files, checked as their tools read them: the Kubernetes manifests against the
API schemas `kubernetes-validate` ships (strict: unknown fields are errors), the compose file by
Debian's docker-compose 1.29 `config -q` (no engine needed; scripts/docker-compose.sh installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")
KUBERNETES_VERSION = kubernetes_validate.latest_version()


def _documents(path: Path) -> list[dict[str, object]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_kubernetes_manifest_is_valid(path: Path) -> None:
    documents = _documents(path)
    assert documents, f"{path} holds no resource"
    for doc in documents:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc.get('kind')}/{doc.get('metadata')}: {exc.message}")


@pytest.mark.parametrize("kustomization", sorted(K8S.rglob("kustomization.yaml")), ids=str)
def test_kustomizations_name_existing_files(kustomization: Path) -> None:
    """Kustomization is no API resource (no schema): its references are checked instead."""
    (doc,) = _documents(kustomization)
    listed = [*doc.get("resources", []), *doc.get("patches", [])]  # type: ignore[misc]
    for entry in listed:
        name = entry["path"] if isinstance(entry, dict) else entry
        assert (kustomization.parent / name).exists(), f"{kustomization}: {name} is missing"


def test_a_broken_manifest_is_refused() -> None:
    """The check can fail: a Deployment with a misspelt field."""
    doc = _documents(K8S / "base" / "executor.yaml")[0]
    doc["spec"]["replicaz"] = 2  # type: ignore[index]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _compose_config(compose_file: Path, **env: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed: run scripts/docker-compose.sh (as root)")
    return subprocess.run(
        [exe, "--project-directory", str(ROOT), "-f", str(compose_file), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", ""), **env},
        check=False,
    )


def test_compose_file_is_valid() -> None:
    result = _compose_config(ROOT / "docker-compose.yml")
    assert result.returncode == 0, result.stderr


def test_compose_file_takes_the_example_env_files() -> None:
    result = _compose_config(
        ROOT / "docker-compose.yml",
        RB_SECRETS_ENV="deploy/compose/secrets.env.example",
        RB_INTEGRATIONS_ENV="deploy/compose/integrations.env.example",
    )
    assert result.returncode == 0, result.stderr


def test_a_broken_compose_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((ROOT / "docker-compose.yml").read_text().replace("restart: unless-stopped", "restart: 7", 1))
    result = _compose_config(broken)
    assert result.returncode != 0
